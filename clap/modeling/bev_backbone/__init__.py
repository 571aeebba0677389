from .build import BEV_BACKBONE_REGISTRY, build_bev_backbone
from .second_fpn import SecondFPN

__all__ = ["BEV_BACKBONE_REGISTRY", "SecondFPN", "build_bev_backbone"]
