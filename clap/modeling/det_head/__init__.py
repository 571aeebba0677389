from .build import DET_HEAD_REGISTRY, build_det_head

__all__ = ["DET_HEAD_REGISTRY", "build_det_head"]
