from .build import RENDER_HEAD_REGISTRY, build_render_head
from .neus import NeuSRenderHead
from .rays import build_rays, camera_rays, lidar_rays

__all__ = [
    "RENDER_HEAD_REGISTRY", "build_render_head", "NeuSRenderHead", "build_rays", "camera_rays",
    "lidar_rays",
]
