"""Models: registries and their components. Importing this package registers every component."""

from .bev_backbone import BEV_BACKBONE_REGISTRY, build_bev_backbone
from .det_head import DET_HEAD_REGISTRY, build_det_head
from .fusion import FUSION_REGISTRY, build_fusion
from .image_backbone import IMAGE_BACKBONE_REGISTRY, build_image_backbone
from .lidar_backbone import LIDAR_BACKBONE_REGISTRY, build_lidar_backbone
from .meta_arch import META_ARCH_REGISTRY, build_model
from .meta_arch.pretrained import load_pretrained_encoders
from .prototype_head import PROTOTYPE_HEAD_REGISTRY, build_prototype_head
from .ray_sampler import RAY_SAMPLER_REGISTRY, build_ray_sampler
from .render_head import RENDER_HEAD_REGISTRY, build_render_head
from .view_transform import VIEW_TRANSFORM_REGISTRY, build_view_transform

__all__ = [
    "BEV_BACKBONE_REGISTRY", "build_bev_backbone", "load_pretrained_encoders",
    "DET_HEAD_REGISTRY", "FUSION_REGISTRY", "IMAGE_BACKBONE_REGISTRY", "LIDAR_BACKBONE_REGISTRY",
    "META_ARCH_REGISTRY", "PROTOTYPE_HEAD_REGISTRY", "RAY_SAMPLER_REGISTRY", "RENDER_HEAD_REGISTRY",
    "VIEW_TRANSFORM_REGISTRY", "build_det_head", "build_fusion", "build_image_backbone",
    "build_lidar_backbone", "build_model", "build_prototype_head", "build_ray_sampler",
    "build_render_head", "build_view_transform",
]
