from .autocast import channels_last_weights, cpu_autocast, parse_cpu_autocast_dtype, to_float32
from .conv3d import Conv3d, conv3d
from .shape_spec import ShapeSpec
from .volume import VolumeGrid

__all__ = [
    "Conv3d",
    "ShapeSpec",
    "VolumeGrid",
    "channels_last_weights",
    "conv3d",
    "cpu_autocast",
    "parse_cpu_autocast_dtype",
    "to_float32",
]
