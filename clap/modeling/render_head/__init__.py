from .build import RENDER_HEAD_REGISTRY, build_render_head

__all__ = ["RENDER_HEAD_REGISTRY", "build_render_head"]
