"""CenterPoint-style training targets on a bird's-eye-view grid.

Every ground-truth box becomes a 2D Gaussian on its class heatmap, centred on the cell that
holds the box centre, and a regression target at that cell. The grid is axis-aligned in the
LiDAR frame: cell (iy, ix) covers x in [x_min + ix * cell_x, x_min + (ix + 1) * cell_x) and
likewise in y.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch

# Channels of the dense regression map, in order. Offsets are in cells, the rest in the units of
# the box format of docs/data.md (meters, radians, m/s); sizes are regressed as logarithms.
REGRESSION_CHANNELS = (
    "offset_x", "offset_y", "z", "log_length", "log_width", "log_height",
    "sin_yaw", "cos_yaw", "vx", "vy",
)


def gaussian_radius(length_cells: torch.Tensor, width_cells: torch.Tensor,
                    min_overlap: float) -> torch.Tensor:
    """CenterPoint's heatmap radius (in cells) for boxes of the given BEV size (in cells).

    The radius is the smallest of the three corner-shift radii of CornerNet that keep an IoU of at
    least `min_overlap` with the true box, in the form CenterPoint uses (each root halved, not
    divided by 2a, which gives larger radii than the exact bound).

    Args:
        length_cells, width_cells: (M,) box size along x and y of the grid, in cells.
        min_overlap: IoU the shifted boxes must keep (CenterPoint: 0.1).
    Returns:
        (M,) float radius in cells.
    """
    size_sum = length_cells + width_cells
    area = length_cells * width_cells

    b1 = size_sum
    c1 = area * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2

    b2 = 2 * size_sum
    c2 = (1 - min_overlap) * area
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2

    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * size_sum
    c3 = (min_overlap - 1) * area
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def draw_gaussian(heatmap: torch.Tensor, center_x: int, center_y: int, radius: int) -> None:
    """Raise `heatmap` (Y, X) in place to a Gaussian peak of 1 at cell (center_y, center_x).

    The Gaussian spans (2 * radius + 1) cells with sigma = (2 * radius + 1) / 6 cells; where it
    overlaps earlier peaks the maximum is kept. Cells outside the map are clipped.
    """
    height, width = heatmap.shape
    sigma = (2 * radius + 1) / 6.0
    offsets = torch.arange(-radius, radius + 1, dtype=heatmap.dtype, device=heatmap.device)
    profile = torch.exp(-(offsets ** 2) / (2 * sigma ** 2))
    gaussian = profile[:, None] * profile[None, :]

    y0, y1 = max(center_y - radius, 0), min(center_y + radius + 1, height)
    x0, x1 = max(center_x - radius, 0), min(center_x + radius + 1, width)
    patch = gaussian[y0 - (center_y - radius):y1 - (center_y - radius),
                     x0 - (center_x - radius):x1 - (center_x - radius)]
    torch.maximum(heatmap[y0:y1, x0:x1], patch, out=heatmap[y0:y1, x0:x1])


@dataclass
class CenterTargets:
    """Targets of one batch.

    Attributes:
        heatmap: (B, num_classes, Y, X) float in [0, 1]; exactly 1 at object centre cells.
        batch_index: (K,) long, sample of each of the K assigned objects.
        cell_index: (K,) long, flat centre cell `iy * X + ix` of each object.
        regression: (K, 10) float, see REGRESSION_CHANNELS.
        regression_mask: (K, 10) float, 0 where a target is unknown (a non-finite velocity).
        labels: (K,) long, class index of each object.
    """

    heatmap: torch.Tensor
    batch_index: torch.Tensor
    cell_index: torch.Tensor
    regression: torch.Tensor
    regression_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def num_objects(self) -> int:
        return int(self.batch_index.numel())


def assign_center_targets(
    gt_boxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    *,
    num_classes: int,
    grid_origin: Tuple[float, float],
    cell_size: Tuple[float, float],
    grid_shape: Tuple[int, int],
    min_overlap: float,
    min_radius: int,
) -> CenterTargets:
    """Encode ground-truth boxes into heatmap and regression targets.

    Args:
        gt_boxes: per sample (M_i, 9) boxes (x, y, z, l, w, h, yaw, vx, vy), LiDAR frame.
        gt_labels: per sample (M_i,) class indices.
        num_classes: number of heatmaps.
        grid_origin: (x_min, y_min) of the grid, meters.
        cell_size: (cell_x, cell_y), meters.
        grid_shape: (Y, X) cells.
        min_overlap, min_radius: Gaussian radius settings (CenterPoint: 0.1 and 2 cells).
    Boxes whose centre lies outside the grid, whose label is not in [0, num_classes) or whose
    geometry (x .. yaw) is not finite are not assigned. A non-finite velocity (unknown, e.g. an
    annotation without neighbours in time) is kept out of the regression loss by
    `regression_mask`.
    """
    height, width = grid_shape
    device = gt_boxes[0].device if len(gt_boxes) else torch.device("cpu")
    heatmap = torch.zeros(len(gt_boxes), num_classes, height, width, device=device)
    batch_index: List[torch.Tensor] = []
    cell_index: List[torch.Tensor] = []
    regression: List[torch.Tensor] = []
    regression_mask: List[torch.Tensor] = []
    labels: List[torch.Tensor] = []
    for sample_idx, (boxes, classes) in enumerate(zip(gt_boxes, gt_labels)):
        boxes = boxes.to(device=device, dtype=torch.float32).reshape(-1, 9)
        classes = classes.to(device=device, dtype=torch.long).reshape(-1)
        if boxes.shape[0] != classes.shape[0]:
            raise ValueError(
                f"gt_boxes[{sample_idx}] has {boxes.shape[0]} boxes but gt_labels[{sample_idx}] "
                f"has {classes.shape[0]} labels"
            )
        grid_x = (boxes[:, 0] - grid_origin[0]) / cell_size[0]
        grid_y = (boxes[:, 1] - grid_origin[1]) / cell_size[1]
        cell_x = torch.floor(grid_x).long()
        cell_y = torch.floor(grid_y).long()
        keep = (
            (cell_x >= 0) & (cell_x < width) & (cell_y >= 0) & (cell_y < height)
            & (classes >= 0) & (classes < num_classes)
            & (boxes[:, 3:6] > 0).all(dim=1) & torch.isfinite(boxes[:, :7]).all(dim=1)
        )
        boxes, classes = boxes[keep], classes[keep]
        grid_x, grid_y, cell_x, cell_y = grid_x[keep], grid_y[keep], cell_x[keep], cell_y[keep]

        radii = gaussian_radius(boxes[:, 3] / cell_size[0], boxes[:, 4] / cell_size[1],
                                min_overlap)
        radii = torch.clamp(radii.floor().long(), min=min_radius)
        for cls, cx, cy, radius in zip(classes.tolist(), cell_x.tolist(), cell_y.tolist(),
                                       radii.tolist()):
            draw_gaussian(heatmap[sample_idx, cls], cx, cy, radius)

        yaw = boxes[:, 6]
        velocity_known = torch.isfinite(boxes[:, 7:9])
        velocity = torch.where(velocity_known, boxes[:, 7:9], torch.zeros_like(boxes[:, 7:9]))
        regression.append(torch.cat([
            torch.stack([grid_x - cell_x, grid_y - cell_y, boxes[:, 2]], dim=1),
            torch.log(boxes[:, 3:6]),
            torch.stack([torch.sin(yaw), torch.cos(yaw)], dim=1),
            velocity,
        ], dim=1))
        mask = torch.ones_like(regression[-1])
        mask[:, 8:10] = velocity_known.float()
        regression_mask.append(mask)
        batch_index.append(torch.full_like(cell_x, sample_idx))
        cell_index.append(cell_y * width + cell_x)
        labels.append(classes)

    def cat(parts, columns=None):
        if parts:
            return torch.cat(parts)
        shape = (0,) if columns is None else (0, columns)
        return torch.zeros(shape, device=device, dtype=torch.long if columns is None else
                           torch.float32)

    return CenterTargets(
        heatmap=heatmap,
        batch_index=cat(batch_index),
        cell_index=cat(cell_index),
        regression=cat(regression, len(REGRESSION_CHANNELS)),
        regression_mask=cat(regression_mask, len(REGRESSION_CHANNELS)),
        labels=cat(labels),
    )
