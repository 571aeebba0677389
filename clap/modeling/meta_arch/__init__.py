from .build import META_ARCH_REGISTRY, build_model
from .clap import CLAP

__all__ = ["CLAP", "META_ARCH_REGISTRY", "build_model"]
