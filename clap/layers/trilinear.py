"""Twice-differentiable trilinear sampling of a dense volume, in plain torch.

The neural field differentiates its samples twice: its normal is dSDF/dp (computed with
`create_graph=True`), and the losses on that normal (colour, eikonal) and the curvature sampler
(d normal / dp) differentiate once more. `torch.nn.functional.grid_sample` (5-D, bilinear,
`align_corners=True`) has that double backward in recent torch (2.13: it matches this sampler
to 1e-13 in float64, values and both derivatives; 2.4 has none), but this sampler is kept
because it is faster where the project uses it (CPU, one thread; docs/performance.md):

- with the normal's double backward (every training step that renders camera rays, whose colour
  reads the normal): 1.4x faster on the CPU config's volume, 2 to 2.5x on the paper's;
- on the paper-scale volume (32 channels, 180 x 180 x 5) in every case, forward only included;
- `smooth=True` (smoothstep blend) and `batch_index` (points of several samples mixed in one
  flat tensor) have no `grid_sample` counterpart.

`grid_sample` is faster only for a forward, or a first-order backward to the points, on small
volumes (the CPU config's 16 x 32 x 32 x 6: 9 against 13 ms forward); the render head does not
run that case in training.

Here the 8 corner values are gathered with one vectorised `index_select` and blended with
weights that are polynomials of the point coordinates, so autograd provides every derivative
w.r.t. both the points and the volume. The blend is a closed set of three autograd functions
(blend, gather-dot, scatter) that work a corner at a time, so the gathered (P, 8, C) corners are
never stored.

Conventions (those of `grid_sample(..., mode="bilinear", align_corners=True)`): points are given
as normalised (x, y, z) in [-1, 1], where -1 / +1 are the centres of the first / last cells along
each axis of a (B, C, Z, Y, X) volume.
"""

from typing import Optional

import torch

from .volume import VolumeGrid

__all__ = ["trilinear_sample", "normalize_points"]

_PADDING_MODES = ("border", "zeros")


def trilinear_sample(
    volume: torch.Tensor,
    points: torch.Tensor,
    batch_index: Optional[torch.Tensor] = None,
    smooth: bool = False,
    padding_mode: str = "border",
) -> torch.Tensor:
    """Trilinearly interpolate `volume` at `points`.

    Args:
        volume: (B, C, Z, Y, X) feature volume.
        points: (..., 3) normalised (x, y, z) coordinates, [-1, 1] spanning the cell centres
            (grid_sample's `align_corners=True`). Without `batch_index`, the first dimension of
            `points` is the batch: (B, ..., 3).
        batch_index: optional long tensor of shape `points.shape[:-1]`: the volume each point
            reads from. Lets points of different samples be mixed in one flat tensor.
        smooth: blend with the smoothstep 3f^2 - 2f^3 of the in-cell offset f instead of f. The
            interpolant is then C1 across cell faces, so its second derivative w.r.t. the point
            is non-zero inside a cell (plain trilinear is linear along each axis). The values
            then differ from grid_sample.
        padding_mode: "border" (default): coordinates outside [-1, 1] are clamped to the edge
            cells, like grid_sample's "border" (the gradient w.r.t. such a coordinate is zero);
            "zeros": corners outside the volume contribute zero, like grid_sample's "zeros".

    Returns:
        (..., C) features, one row per point (channels last).
    """
    if volume.dim() != 5:
        raise ValueError(f"volume must be (B, C, Z, Y, X), got shape {tuple(volume.shape)}")
    if points.shape[-1] != 3:
        raise ValueError(f"points must end with 3 coordinates (x, y, z), got {tuple(points.shape)}")
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
    batch_size, channels, size_z, size_y, size_x = volume.shape
    lead_shape = points.shape[:-1]
    if batch_index is None:
        if points.dim() < 2 or points.shape[0] != batch_size:
            raise ValueError(
                f"points {tuple(points.shape)} must start with the batch size {batch_size} "
                "when no batch_index is given"
            )
        batch_index = torch.arange(batch_size, device=points.device).view(
            (batch_size,) + (1,) * (points.dim() - 2)
        ).expand(lead_shape)
    elif batch_index.shape != lead_shape:
        raise ValueError(
            f"batch_index shape {tuple(batch_index.shape)} != points shape {tuple(lead_shape)}"
        )

    flat_points = points.reshape(-1, 3)
    flat_batch = batch_index.reshape(-1).to(torch.long)
    sizes = (size_x, size_y, size_z)

    # Per axis: the two corner indices (P, 2) and their blending weights (P, 2).
    corner_index, corner_weight = [], []
    for axis, size in enumerate(sizes):
        coord = (flat_points[:, axis] + 1.0) * (0.5 * (size - 1))
        if padding_mode == "border":
            coord = coord.clamp(0.0, float(size - 1))
        lower = torch.floor(coord.detach())
        offset = coord - lower
        if smooth:
            offset = offset * offset * (3.0 - 2.0 * offset)
        lower = lower.long()
        index = torch.stack([lower, lower + 1], dim=-1)
        weight = torch.stack([1.0 - offset, offset], dim=-1)
        if padding_mode == "zeros":
            inside = (index >= 0) & (index < size)
            weight = weight * inside.to(weight.dtype)
        corner_index.append(index.clamp(0, size - 1))
        corner_weight.append(weight)
    (ix, iy, iz), (wx, wy, wz) = corner_index, corner_weight

    # Linear row of each of the 8 corners in the channels-last volume, (8, P), corner order
    # (z, y, x), and their weights (P, 8) in the same order.
    cells_per_volume = size_z * size_y * size_x
    ix, iy, iz = ix.t(), iy.t(), iz.t()
    rows = (
        (flat_batch * size_z + iz[:, None, None, :]) * size_y + iy[None, :, None, :]
    ) * size_x + ix[None, None, :, :]
    weights = wz[:, :, None, None] * wy[:, None, :, None] * wx[:, None, None, :]
    num_points = flat_points.shape[0]

    # Channels-last rows; `contiguous` matters: for B = 1 the reshape is a strided view, and
    # gathering rows of it is several times slower.
    table = volume.permute(0, 2, 3, 4, 1).reshape(batch_size * cells_per_volume, channels)
    table = table.contiguous()
    weights = weights.reshape(num_points, 8).to(table.dtype)
    features = _Blend.apply(table, weights, rows.reshape(8, num_points))
    return features.view(*lead_shape, channels)


# The blend out[p] = sum_k weights[p, k] * table[rows[k, p]] is bilinear in (table, weights), and
# so are its derivatives: the gradient w.r.t. the weights is a gather-and-dot (`_Dot`), the one
# w.r.t. the table a scatter (`_Scatter`), and the derivatives of those are the three ops again.
# Written as three autograd functions whose backward calls the others, the blend is
# differentiable any number of times and saves only (table, weights, rows). Each op loops over
# the 8 corners, so no (P, 8, C) tensor of gathered corners is ever made: the transient memory
# is one (P, C) term, and gathering and blending a corner at a time is also faster on CPU than
# one batched matmul of 1 x 8 by 8 x C per point.
def _blend(table: torch.Tensor, weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(P, C): sum over the 8 corners k of weights[:, k] * table[rows[k]]."""
    out = None
    for k in range(8):
        term = table.index_select(0, rows[k]) * weights[:, k : k + 1]
        out = term if out is None else out.add_(term)
    return out


def _dot(table: torch.Tensor, vectors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(P, 8): the dot product of table[rows[k]] and vectors, per corner k."""
    return torch.stack(
        [(table.index_select(0, rows[k]) * vectors).sum(dim=-1) for k in range(8)], dim=1
    )


def _scatter(weights, vectors, rows, num_rows: int) -> torch.Tensor:
    """(num_rows, C): row r receives weights[p, k] * vectors[p] for every (k, p) with
    rows[k, p] == r."""
    out = vectors.new_zeros(num_rows, vectors.shape[1])
    for k in range(8):
        out.index_add_(0, rows[k], vectors * weights[:, k : k + 1])
    return out


class _Blend(torch.autograd.Function):
    """(table (N, C), weights (P, 8), rows (8, P)) -> (P, C), see `_blend`."""

    @staticmethod
    def forward(ctx, table, weights, rows):
        ctx.save_for_backward(table, weights, rows)
        with torch.autocast(table.device.type, enabled=False):
            return _blend(table, weights, rows)

    @staticmethod
    def backward(ctx, grad):
        table, weights, rows = ctx.saved_tensors
        grad = grad.to(table.dtype)
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_table = _Scatter.apply(weights, grad, rows, table.shape[0])
        if ctx.needs_input_grad[1]:
            grad_weights = _Dot.apply(table, grad, rows)
        return grad_table, grad_weights, None


class _Dot(torch.autograd.Function):
    """(table (N, C), vectors (P, C), rows (8, P)) -> (P, 8), see `_dot`."""

    @staticmethod
    def forward(ctx, table, vectors, rows):
        ctx.save_for_backward(table, vectors, rows)
        with torch.autocast(table.device.type, enabled=False):
            return _dot(table, vectors, rows)

    @staticmethod
    def backward(ctx, grad):
        table, vectors, rows = ctx.saved_tensors
        grad = grad.to(table.dtype)
        grad_table = grad_vectors = None
        if ctx.needs_input_grad[0]:
            grad_table = _Scatter.apply(grad, vectors, rows, table.shape[0])
        if ctx.needs_input_grad[1]:
            grad_vectors = _Blend.apply(table, grad, rows)
        return grad_table, grad_vectors, None


class _Scatter(torch.autograd.Function):
    """(weights (P, 8), vectors (P, C), rows (8, P), N) -> (N, C), see `_scatter`."""

    @staticmethod
    def forward(ctx, weights, vectors, rows, num_rows: int):
        ctx.save_for_backward(weights, vectors, rows)
        with torch.autocast(vectors.device.type, enabled=False):
            return _scatter(weights, vectors, rows, num_rows)

    @staticmethod
    def backward(ctx, grad):
        weights, vectors, rows = ctx.saved_tensors
        grad = grad.to(vectors.dtype)
        grad_weights = grad_vectors = None
        if ctx.needs_input_grad[0]:
            grad_weights = _Dot.apply(grad, vectors, rows)
        if ctx.needs_input_grad[1]:
            grad_vectors = _Blend.apply(grad, weights, rows)
        return grad_weights, grad_vectors, None, None


def normalize_points(points_xyz: torch.Tensor, volume_grid: VolumeGrid) -> torch.Tensor:
    """Map metric LiDAR-frame points to the normalised coordinates of `trilinear_sample`.

    Args:
        points_xyz: (..., 3) points (x, y, z), meters, in the frame of `volume_grid`.
        volume_grid: the grid of the dense volume (cell centres at lo + (i + 0.5) * cell size).

    Returns:
        (..., 3) normalised (x, y, z): -1 / +1 at the centres of the first / last cells, so
        points inside the point-cloud range lie in [-1 - 1/(n-1), 1 + 1/(n-1)] along an axis of
        n cells (the outer half cells; `padding_mode="border"` handles them).
    """
    lo = points_xyz.new_tensor(volume_grid.point_cloud_range[:3])
    cell = points_xyz.new_tensor(volume_grid.volume_voxel_size)
    z_n, y_n, x_n = volume_grid.volume_shape
    cells = points_xyz.new_tensor([x_n, y_n, z_n])
    first_center = lo + 0.5 * cell
    span = ((cells - 1.0) * cell).clamp_min(1e-12)
    return (points_xyz - first_center) / span * 2.0 - 1.0
