"""Kernel offsets, the shared weight layout, and pure-torch neighbour (kernel) maps.

Weight layout (both backends): a sparse conv weight is `(K, C_in, C_out)` with
`K = kx * ky * kz` kernel offsets. Offset index `k = (dz * ky + dy) * kx + dx` for the kernel
position `(dx, dy, dz)`, each in `[0, k_axis)`: x varies fastest (the order torchsparse and
MinkowskiEngine use for odd kernels). An output cell `o` (per axis) reads the input cell
`i = o * stride - padding + d`; with `padding = k_axis // 2` and stride 1 the offsets are centred.
`sparse_weight_to_dense` turns such a weight into the `torch.nn.functional.conv3d` weight on
volumes laid out (B, C, Z, Y, X).
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

__all__ = [
    "KernelMap", "build_kernel_map", "kernel_offsets", "sparse_weight_to_dense",
    "strided_output_coords", "strided_output_shape",
]


def kernel_offsets(kernel_size: Sequence[int], device=None) -> torch.Tensor:
    """Kernel positions (K, 3) as (dx, dy, dz) in `[0, k_axis)`, in weight order (x fastest)."""
    kx, ky, kz = kernel_size
    zz, yy, xx = torch.meshgrid(
        torch.arange(kz, device=device), torch.arange(ky, device=device),
        torch.arange(kx, device=device), indexing="ij",
    )
    return torch.stack([xx, yy, zz], dim=-1).reshape(-1, 3)


def sparse_weight_to_dense(weight: torch.Tensor, kernel_size: Sequence[int]) -> torch.Tensor:
    """(K, C_in, C_out) sparse weight -> (C_out, C_in, kz, ky, kx) `conv3d` weight.

    For a transposed conv (`conv_transpose3d` wants (C_in, C_out, kz, ky, kx)), swap the first
    two dimensions of the result.
    """
    kx, ky, kz = kernel_size
    c_in, c_out = weight.shape[1:]
    return weight.reshape(kz, ky, kx, c_in, c_out).permute(4, 3, 0, 1, 2)


def strided_output_shape(
    spatial_shape: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
    padding: Sequence[int],
) -> Tuple[int, int, int]:
    """Cells (X, Y, Z) of a strided conv's output grid, as for a dense conv."""
    return tuple(
        (n + 2 * p - k) // s + 1
        for n, k, s, p in zip(spatial_shape, kernel_size, stride, padding)
    )


def _pack(batch, x, y, z, shape):
    """Unique int64 key of cell (batch, x, y, z) on a grid of `shape` (X, Y, Z); broadcasts."""
    _, y_n, z_n = shape
    return ((batch * shape[0] + x) * y_n + y) * z_n + z


def _axis_candidates(coords_axis, kernel, stride, padding, extent):
    """Per axis: output index (k, N) reached from each input through each kernel position."""
    numerator = coords_axis[None, :] + padding - torch.arange(
        kernel, device=coords_axis.device
    )[:, None]
    out = torch.div(numerator, stride, rounding_mode="floor")
    valid = (numerator - out * stride == 0) & (out >= 0) & (out < extent)
    return out, valid


def strided_output_coords(
    coords: torch.Tensor, spatial_shape: Sequence[int], kernel_size: Sequence[int],
    stride: Sequence[int], padding: Sequence[int],
) -> Tuple[torch.Tensor, Tuple[int, int, int]]:
    """Active cells of a generalised strided conv and its output grid shape.

    An output cell `o` is active when at least one active input cell lies in its window, i.e.
    `o * stride - padding + d` is active for some kernel position d, and `o` is inside the
    output grid. Returns coords (M, 4) `[batch, x, y, z]` sorted by their packed key, and the
    output shape (X, Y, Z).
    """
    out_shape = strided_output_shape(spatial_shape, kernel_size, stride, padding)
    if coords.shape[0] == 0:
        return coords.new_zeros((0, 4)), out_shape
    b = coords[:, 0]
    per_axis = [
        _axis_candidates(coords[:, 1 + a], kernel_size[a], stride[a], padding[a], out_shape[a])
        for a in range(3)
    ]
    (ox, vx), (oy, vy), (oz, vz) = per_axis
    keys = _pack(b, ox[None, None], oy[None, :, None], oz[:, None, None], out_shape)
    valid = vx[None, None] & vy[None, :, None] & vz[:, None, None]
    keys = torch.unique(keys[valid])
    z = keys % out_shape[2]
    rest = keys // out_shape[2]
    y = rest % out_shape[1]
    rest = rest // out_shape[1]
    x = rest % out_shape[0]
    batch = rest // out_shape[0]
    return torch.stack([batch, x, y, z], dim=1), out_shape


@dataclass
class KernelMap:
    """Which input cell feeds which output cell through which kernel offset.

    Pairs are grouped by offset in weight order: the first `offset_counts[0]` entries of
    `in_indices` / `out_indices` use offset 0, and so on. For a submanifold conv the centre
    offset pairs every cell with itself; it is left out of the pairs and named by
    `identity_offset` (applied as a plain matmul).
    """

    in_coords: torch.Tensor
    out_coords: torch.Tensor
    out_spatial_shape: Tuple[int, int, int]
    in_indices: torch.Tensor
    out_indices: torch.Tensor
    offset_counts: List[int]
    identity_offset: Optional[int]

    @property
    def num_in(self) -> int:
        return self.in_coords.shape[0]

    @property
    def num_out(self) -> int:
        return self.out_coords.shape[0]

    @property
    def num_pairs(self) -> int:
        return self.in_indices.shape[0]


def build_kernel_map(
    in_coords: torch.Tensor, in_spatial_shape: Sequence[int], out_coords: torch.Tensor,
    out_spatial_shape: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
    padding: Sequence[int], submanifold: bool = False,
) -> KernelMap:
    """Neighbour pairs of a conv from `in_coords` to `out_coords` (both (N, 4) long).

    For every output cell o and kernel position d the input cell `o * stride - padding + d` is
    looked up among the input cells: all queries are hashed to int64 keys at once and found by
    binary search in the sorted input keys. `submanifold=True` (stride 1, centred padding, same
    coordinates in and out) drops the centre offset and records it as `identity_offset`.
    """
    kernel_volume = kernel_size[0] * kernel_size[1] * kernel_size[2]
    identity_offset = kernel_volume // 2 if submanifold else None
    empty = in_coords.new_zeros(0)
    if in_coords.shape[0] == 0 or out_coords.shape[0] == 0:
        return KernelMap(
            in_coords, out_coords, tuple(out_spatial_shape), empty, empty, [0] * kernel_volume,
            identity_offset,
        )
    in_keys = _pack(*in_coords.unbind(1), in_spatial_shape)
    sorted_keys, order = torch.sort(in_keys)

    b = out_coords[:, 0]
    queries, valids = [], []
    for a in range(3):
        q = out_coords[:, 1 + a][None, :] * stride[a] - padding[a] + torch.arange(
            kernel_size[a], device=out_coords.device
        )[:, None]
        queries.append(q)
        valids.append((q >= 0) & (q < in_spatial_shape[a]))
    qx, qy, qz = queries
    vx, vy, vz = valids
    keys = _pack(b, qx[None, None], qy[None, :, None], qz[:, None, None], in_spatial_shape)
    valid = vx[None, None] & vy[None, :, None] & vz[:, None, None]
    keys = keys.reshape(kernel_volume, -1)
    valid = valid.reshape(kernel_volume, -1)
    if submanifold:
        valid[identity_offset] = False

    position = torch.searchsorted(sorted_keys, keys).clamp_(max=sorted_keys.shape[0] - 1)
    found = valid & (sorted_keys[position] == keys)
    offset_index, out_indices = found.nonzero(as_tuple=True)
    in_indices = order[position[offset_index, out_indices]]
    offset_counts = found.sum(dim=1).tolist()
    return KernelMap(
        in_coords, out_coords, tuple(out_spatial_shape), in_indices, out_indices, offset_counts,
        identity_offset,
    )
