from .build import PROTOTYPE_HEAD_REGISTRY, build_prototype_head

__all__ = ["PROTOTYPE_HEAD_REGISTRY", "build_prototype_head"]
