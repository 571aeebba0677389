"""UniPAD-style single-modal rendering baselines on clap's CLAP meta-architecture.

The models themselves are clap's (CLAP with one modality); this package holds the config hook
and the merge of a LiDAR-only and a camera-only checkpoint into one fusion initialisation.
"""

from .config import add_single_modal_config
from .merge import (
    CAMERA_PREFIXES,
    DETECTOR_HEAD_PREFIXES,
    LIDAR_PREFIXES,
    MergeReport,
    check_against_model,
    load_model_state,
    merge_encoder_states,
    merge_single_modal_checkpoints,
    save_merged_checkpoint,
)

__all__ = [
    "CAMERA_PREFIXES",
    "DETECTOR_HEAD_PREFIXES",
    "LIDAR_PREFIXES",
    "MergeReport",
    "add_single_modal_config",
    "check_against_model",
    "load_model_state",
    "merge_encoder_states",
    "merge_single_modal_checkpoints",
    "save_merged_checkpoint",
]
