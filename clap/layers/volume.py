"""The shared 3D grid: where the LiDAR, camera and fused volumes live in the LiDAR frame."""

from dataclasses import dataclass
from typing import Tuple

import torch


@dataclass(frozen=True)
class VolumeGrid:
    """Input voxel grid and the dense volume derived from it by a fixed stride.

    Args:
        point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max), meters, LiDAR frame.
        voxel_size: input voxel size (x, y, z), meters.
        volume_stride: down-sampling (x, y, z) from input voxels to the dense volume.
    """

    point_cloud_range: Tuple[float, float, float, float, float, float]
    voxel_size: Tuple[float, float, float]
    volume_stride: Tuple[int, int, int]

    @classmethod
    def from_config(cls, cfg) -> "VolumeGrid":
        return cls(
            point_cloud_range=tuple(float(v) for v in cfg.INPUT.POINT_CLOUD_RANGE),
            voxel_size=tuple(float(v) for v in cfg.INPUT.VOXEL_SIZE),
            volume_stride=tuple(int(v) for v in cfg.MODEL.VOLUME_STRIDE),
        )

    def __post_init__(self):
        if len(self.point_cloud_range) != 6 or len(self.voxel_size) != 3:
            raise ValueError("point_cloud_range needs 6 values and voxel_size 3")
        for axis, extent, stride in zip("xyz", self.input_grid_size, self.volume_stride):
            if extent % stride != 0:
                raise ValueError(
                    f"input grid size along {axis} ({extent} voxels) is not divisible by "
                    f"MODEL.VOLUME_STRIDE {stride}; change INPUT.POINT_CLOUD_RANGE or VOXEL_SIZE"
                )

    @property
    def input_grid_size(self) -> Tuple[int, int, int]:
        """Number of input voxels (X, Y, Z)."""
        lo, hi = self.point_cloud_range[:3], self.point_cloud_range[3:]
        return tuple(int(round((b - a) / s)) for a, b, s in zip(lo, hi, self.voxel_size))

    @property
    def volume_shape(self) -> Tuple[int, int, int]:
        """Dense volume shape (Z, Y, X)."""
        x, y, z = (n // s for n, s in zip(self.input_grid_size, self.volume_stride))
        return (z, y, x)

    @property
    def volume_voxel_size(self) -> Tuple[float, float, float]:
        """Size (x, y, z) of one dense-volume cell, meters."""
        return tuple(v * s for v, s in zip(self.voxel_size, self.volume_stride))

    def volume_centers(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """Centres of the dense-volume cells, (Z, Y, X, 3) as (x, y, z) meters."""
        z_n, y_n, x_n = self.volume_shape
        axes = []
        for n, lo, size in zip((x_n, y_n, z_n), self.point_cloud_range[:3], self.volume_voxel_size):
            axes.append(lo + (torch.arange(n, device=device, dtype=dtype) + 0.5) * size)
        zz, yy, xx = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        return torch.stack([xx, yy, zz], dim=-1)

    def points_to_volume_index(self, points_xyz: torch.Tensor) -> torch.Tensor:
        """Integer dense-volume cell (x, y, z) of each point, (N, 3) long; may be out of range."""
        lo = points_xyz.new_tensor(self.point_cloud_range[:3])
        size = points_xyz.new_tensor(self.volume_voxel_size)
        return torch.floor((points_xyz[:, :3] - lo) / size).long()
