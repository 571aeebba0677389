"""Mapped samples -> one batch (the table in docs/data.md)."""

from typing import Dict, List, Sequence

import torch

__all__ = ["collate_batch"]

# Per-sample tensors of equal shape, stacked along a new batch axis (their dtype is kept).
_STACKED = (
    "lidar2img",
    "lidar2cam",
    "intrinsics",
    "image_aug_matrix",
    "aug_matrix",
    "lidar2ego",
    "ego2global",
)


def collate_batch(samples: Sequence[Dict[str, object]]) -> Dict[str, object]:
    """Batch the outputs of `NuScenesMapper`.

    Points and voxels of all samples are concatenated: `points_batch` (N,) int64 gives each
    point's sample index and `voxel_coords` becomes (V, 4) int32 `[batch, x, y, z]`. Images become
    (B, N_cam, 3, H, W) float32 in 0-255; calibrations are stacked; boxes and labels stay lists.
    A sample without points contributes no rows.
    """
    if not samples:
        raise ValueError("collate_batch needs at least one sample")
    sizes = {tuple(s["image_size"]) for s in samples}
    if len(sizes) != 1:
        tokens = [s["sample_token"] for s in samples]
        raise ValueError(f"Samples {tokens} have different image sizes {sorted(sizes)}")

    points: List[torch.Tensor] = []
    points_batch: List[torch.Tensor] = []
    voxel_coords: List[torch.Tensor] = []
    for index, sample in enumerate(samples):
        points.append(sample["points"])
        points_batch.append(torch.full((len(sample["points"]),), index, dtype=torch.int64))
        coords = sample["voxel_coords"].to(torch.int32)
        batch_column = torch.full((len(coords), 1), index, dtype=torch.int32)
        voxel_coords.append(torch.cat([batch_column, coords], dim=1))

    batch = {
        "points": torch.cat(points).to(torch.float32),
        "points_batch": torch.cat(points_batch),
        "voxel_features": torch.cat([s["voxel_features"] for s in samples]).to(torch.float32),
        "voxel_coords": torch.cat(voxel_coords),
        "voxel_num_points": torch.cat([s["voxel_num_points"] for s in samples]),
        "images": torch.stack([s["images"] for s in samples]).to(torch.float32),
        "image_size": sizes.pop(),
        "gt_boxes": [s["gt_boxes"] for s in samples],
        "gt_labels": [s["gt_labels"] for s in samples],
        "sample_token": [s["sample_token"] for s in samples],
        "batch_size": len(samples),
    }
    for key in _STACKED:
        batch[key] = torch.stack([s[key] for s in samples])
    return batch
