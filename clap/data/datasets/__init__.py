from .nuscenes import (
    CATEGORY_TO_DETECTION_CLASS,
    DETECTION_CLASSES,
    load_nuscenes_dicts,
    register_all_nuscenes,
    register_from_config,
    register_nuscenes,
    select_fraction,
)

__all__ = [
    "CATEGORY_TO_DETECTION_CLASS",
    "DETECTION_CLASSES",
    "load_nuscenes_dicts",
    "register_all_nuscenes",
    "register_from_config",
    "register_nuscenes",
    "select_fraction",
]
