from .build import FUSION_REGISTRY, build_fusion

__all__ = ["FUSION_REGISTRY", "build_fusion"]
