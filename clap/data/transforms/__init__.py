from .image import ColorJitter, ImageTransform, PhotometricTransform, ResizeCropFlip
from .point_cloud import (
    GlobalRotScaleFlipTranslate,
    PointCloudTransform,
    boxes_in_range_mask,
    points_in_range_mask,
)

__all__ = [
    "ColorJitter",
    "ImageTransform",
    "PhotometricTransform",
    "ResizeCropFlip",
    "GlobalRotScaleFlipTranslate",
    "PointCloudTransform",
    "boxes_in_range_mask",
    "points_in_range_mask",
]
