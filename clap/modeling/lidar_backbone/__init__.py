from .build import LIDAR_BACKBONE_REGISTRY, build_lidar_backbone

__all__ = ["LIDAR_BACKBONE_REGISTRY", "build_lidar_backbone"]
