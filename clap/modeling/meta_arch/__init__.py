from .build import META_ARCH_REGISTRY, build_model
from .clap import CLAP
from .detection import BACKBONE_PREFIXES, DetectionModel
from .pretrained import ENCODER_PREFIXES, PretrainedLoadReport, load_pretrained_encoders

__all__ = [
    "BACKBONE_PREFIXES", "CLAP", "ENCODER_PREFIXES", "META_ARCH_REGISTRY", "DetectionModel",
    "PretrainedLoadReport", "build_model", "load_pretrained_encoders",
]
