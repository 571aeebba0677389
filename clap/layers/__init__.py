from .conv3d import Conv3d, conv3d
from .shape_spec import ShapeSpec
from .volume import VolumeGrid

__all__ = ["Conv3d", "ShapeSpec", "VolumeGrid", "conv3d"]
