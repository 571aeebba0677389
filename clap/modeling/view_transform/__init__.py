from .build import VIEW_TRANSFORM_REGISTRY, build_view_transform
from .voxel_projection import (
    VoxelProjectionLift,
    bilinear_taps,
    depth_bin_index,
    project_points,
    sample_volume_features,
)

__all__ = [
    "VIEW_TRANSFORM_REGISTRY", "VoxelProjectionLift", "bilinear_taps", "build_view_transform",
    "depth_bin_index", "project_points", "sample_volume_features",
]
