from .build import VIEW_TRANSFORM_REGISTRY, build_view_transform
from .voxel_projection import (
    VoxelProjectionLift,
    project_points,
    sample_depth_probability,
    sample_feature_map,
    sample_volume_features,
)

__all__ = [
    "VIEW_TRANSFORM_REGISTRY", "VoxelProjectionLift", "build_view_transform", "project_points",
    "sample_depth_probability", "sample_feature_map", "sample_volume_features",
]
