from .build import FUSION_REGISTRY, build_fusion
from .concat_conv import ConcatConvFusion, PassThroughFusion

__all__ = ["ConcatConvFusion", "FUSION_REGISTRY", "PassThroughFusion", "build_fusion"]
