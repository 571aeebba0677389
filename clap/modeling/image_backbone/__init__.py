from .build import IMAGE_BACKBONE_REGISTRY, build_image_backbone

__all__ = ["IMAGE_BACKBONE_REGISTRY", "build_image_backbone"]
