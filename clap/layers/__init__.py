from .shape_spec import ShapeSpec
from .volume import VolumeGrid

__all__ = ["ShapeSpec", "VolumeGrid"]
