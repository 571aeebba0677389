"""Operations on boxes in the format of docs/data.md: (M, 9) x, y, z, l, w, h, yaw, vx, vy."""

import numpy as np
import torch


def transform_boxes(boxes: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a 4 x 4 similarity transform (rotation about z, uniform scale, mirror, translation).

    This is the family of the global point-cloud augmentations (`aug_matrix` of a batch): box
    centres map as points, sizes scale by |det(A)|^(1/3) of the linear part A, the heading
    direction (cos yaw, sin yaw, 0) and the velocity (vx, vy, 0) map by A (so a mirror turns
    yaw into its reflection and keeps `l` along the heading). A tilt of z is not represented by
    the box format; only its effect on the heading's xy direction is kept.

    Args:
        boxes: (M, 9) float, meters / radians / m/s.
        matrix: (4, 4) float.
    Returns:
        (M, 9) boxes in the target frame, same dtype as `boxes`.
    """
    matrix = matrix.to(device=boxes.device, dtype=torch.float64)
    work = boxes.to(torch.float64)
    linear, translation = matrix[:3, :3], matrix[:3, 3]
    scale = torch.abs(torch.linalg.det(linear)) ** (1.0 / 3.0)

    centers = work[:, :3] @ linear.T + translation
    yaw = work[:, 6]
    heading = torch.stack([torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw)], dim=1)
    heading = heading @ linear.T
    velocity = torch.cat([work[:, 7:9], torch.zeros_like(yaw)[:, None]], dim=1) @ linear.T

    out = torch.cat([
        centers,
        work[:, 3:6] * scale,
        torch.atan2(heading[:, 1], heading[:, 0])[:, None],
        velocity[:, :2],
    ], dim=1)
    return out.to(boxes.dtype)


def circle_nms(centers: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
               radius_per_class: torch.Tensor) -> torch.Tensor:
    """Greedy non-maximum suppression by BEV centre distance, within each class.

    Going through the boxes by decreasing score, a box is kept unless a kept box of the same
    class lies within that class's radius (centre distance in the xy plane <= radius).

    Args:
        centers: (M, 2) box centres (x, y), meters.
        scores: (M,) scores.
        labels: (M,) long class indices.
        radius_per_class: (num_classes,) suppression radius of each class, meters.
    Returns:
        (K,) long indices into the inputs of the kept boxes, by decreasing score.
    """
    if scores.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    order = torch.argsort(scores, descending=True)
    centers, labels = centers[order], labels[order]
    radius = radius_per_class.to(centers)[labels]
    distance = torch.cdist(centers[None].double(), centers[None].double())[0]
    conflicts = (distance <= radius[:, None].double()) & (labels[:, None] == labels[None, :])
    conflicts = conflicts.cpu().numpy()

    suppressed = np.zeros(len(order), dtype=bool)
    kept = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(i)
        suppressed |= conflicts[i]
    return order[torch.as_tensor(kept, dtype=torch.long, device=order.device)]
