from .box_utils import circle_nms, transform_boxes
from .build import DET_HEAD_REGISTRY, build_det_head
from .center_head import CenterHead
from .targets import REGRESSION_CHANNELS, CenterTargets, assign_center_targets, gaussian_radius

__all__ = [
    "DET_HEAD_REGISTRY", "REGRESSION_CHANNELS", "CenterHead", "CenterTargets",
    "assign_center_targets", "build_det_head", "circle_nms", "gaussian_radius", "transform_boxes",
]
