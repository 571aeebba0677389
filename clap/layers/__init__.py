from .autocast import cpu_autocast, parse_cpu_autocast_dtype, to_float32
from .conv3d import Conv3d, conv3d
from .shape_spec import ShapeSpec
from .volume import VolumeGrid

__all__ = [
    "Conv3d",
    "ShapeSpec",
    "VolumeGrid",
    "conv3d",
    "cpu_autocast",
    "parse_cpu_autocast_dtype",
    "to_float32",
]
