from .build import VIEW_TRANSFORM_REGISTRY, build_view_transform

__all__ = ["VIEW_TRANSFORM_REGISTRY", "build_view_transform"]
