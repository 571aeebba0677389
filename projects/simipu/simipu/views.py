"""The second point-cloud view: a random rotation / scale / mirror of each sample, re-voxelized."""

from typing import List, Sequence, Tuple

import numpy as np
import torch

from clap.data.transforms import GlobalRotScaleFlipTranslate
from clap.data.voxelize import voxelize

__all__ = ["SecondView", "draw_view_transforms", "transform_points"]


def draw_view_transforms(
    augmentation: GlobalRotScaleFlipTranslate, batch_size: int
) -> torch.Tensor:
    """One 4 x 4 view transform per sample, (B, 4, 4) float64 (view 2 = matrix @ view 1).

    Draws from torch's generator (a numpy generator is seeded from it), so runs repeat under
    `torch.manual_seed` and a resumed run (whose torch RNG state is restored) draws the same.
    """
    seed = int(torch.randint(0, 2**62, (1,)).item())
    rng = np.random.default_rng(seed)
    matrices = [augmentation.get_transform(rng).matrix for _ in range(batch_size)]
    return torch.from_numpy(np.stack(matrices))


def transform_points(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """(N, C) points with x, y, z first (meters) -> (N, C) with x, y, z mapped by the 4 x 4
    `matrix`; other channels are kept."""
    matrix = matrix.to(device=points.device, dtype=points.dtype)
    xyz = points[:, :3] @ matrix[:3, :3].T + matrix[:3, 3]
    return torch.cat([xyz, points[:, 3:]], dim=1)


class SecondView:
    """Builds view 2 of a batch: each sample's points moved by its own drawn transform, the
    points left outside `point_cloud_range` dropped, and voxelized on the input grid exactly as
    the mapper voxelizes view 1.

    Args:
        rotation_range: (min, max) rotation about +z, radians.
        scale_range: (min, max) uniform scale factor.
        flip_prob: probability of mirroring the y axis (y -> -y).
        point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max), meters.
        voxel_size: (x, y, z) meters of the input grid.
        max_points_per_voxel, max_voxels: voxelization limits (as for view 1).
    """

    def __init__(
        self, rotation_range: Sequence[float], scale_range: Sequence[float], flip_prob: float,
        point_cloud_range: Sequence[float], voxel_size: Sequence[float],
        max_points_per_voxel: int, max_voxels: int,
    ):
        self.augmentation = GlobalRotScaleFlipTranslate(
            rotation_range, scale_range, flip_x_prob=0.0, flip_y_prob=flip_prob
        )
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.voxel_size = [float(v) for v in voxel_size]
        self.max_points_per_voxel = int(max_points_per_voxel)
        self.max_voxels = int(max_voxels)

    def __call__(
        self, points: torch.Tensor, points_batch: torch.Tensor, batch_size: int
    ) -> Tuple[torch.Tensor, List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """
        Args:
            points: (N, C) view-1 points of the batch, x, y, z (meters) first.
            points_batch: (N,) sample index of each point.
            batch_size: B (at least 1).
        Returns:
            view_transforms (B, 4, 4) float64 (view 2 = matrix @ view 1);
            view_points: per sample (N_b, C) view-2 points inside the range;
            voxel_features (V, C) float32 and voxel_coords (V, 4) int32 `[batch, x, y, z]` of
            view 2, on the device of `points`.
        """
        transforms = draw_view_transforms(self.augmentation, batch_size)
        low = points.new_tensor(self.point_cloud_range[:3])
        high = points.new_tensor(self.point_cloud_range[3:])
        view_points, features, coords = [], [], []
        for index in range(batch_size):
            moved = transform_points(points[points_batch == index], transforms[index])
            moved = moved[((moved[:, :3] >= low) & (moved[:, :3] < high)).all(dim=1)]
            view_points.append(moved)
            voxel_features, voxel_coords, _ = voxelize(
                moved.detach().cpu().numpy(), self.point_cloud_range, self.voxel_size,
                self.max_points_per_voxel, self.max_voxels,
            )
            features.append(torch.from_numpy(voxel_features))
            batch_column = np.full((len(voxel_coords), 1), index, dtype=np.int32)
            coords.append(torch.from_numpy(np.concatenate([batch_column, voxel_coords], axis=1)))
        voxel_features = torch.cat(features).to(points.device)
        return transforms, view_points, voxel_features, torch.cat(coords).to(points.device)
