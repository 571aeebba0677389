"""The methods a comparison ranks, the protocols it judges them by, and what each method runs
(tools/compare_methods.py, docs/comparison.md)."""

import os
from typing import List

# the repository: every stage's script and config path is relative to it
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METHODS = (
    "scratch",
    "lidar_only",
    "camera_only",
    "unipad_merge",
    "unipad",
    "simipu",
    "clap_uniform",
    "clap_curvature",
    "clap",
)
# Variants of full CLAP (configs/<scale>/ablations): rows of the table only when named in
# --methods.
CLAP_VARIANTS = ("clap_nk128", "clap_nk1024", "clap_gram_literal", "clap_temperature1")
# Controls: rows that take a method's labelled training without its pre-training, to tell the
# two apart; rows of the table only when named in --methods.
CONTROLS = ("unipad_scratch",)
ALL_METHODS = METHODS + CLAP_VARIANTS + CONTROLS
METHOD_TITLES = {
    "scratch": "From scratch",
    "lidar_only": "LiDAR-only rendering",
    "camera_only": "Camera-only rendering",
    "unipad_merge": "UniPAD merge of the pre-trained encoders",
    "unipad": "UniPAD recipe (fine-tuned single-modal detectors merged)",
    "simipu": "SimIPU",
    "clap_uniform": "CLAP joint, uniform sampling, no prototypes",
    "clap_curvature": "CLAP joint, curvature sampling, no prototypes",
    "clap": "CLAP (curvature + prototypes)",
    "clap_nk128": "CLAP, N_K = 128 prototypes",
    "clap_nk1024": "CLAP, N_K = 1024 prototypes",
    "clap_gram_literal": "CLAP, the paper's literal Gram term (mean off-diagonal)",
    "clap_temperature1": "CLAP, the paper's assignment temperature 1.0",
    "unipad_scratch": "UniPAD recipe from random encoders (control, no pre-training)",
}
PROTOCOLS = ("finetune", "probe")
PROTOCOL_TITLES = {
    "finetune": "Fine-tuning (whole detector from the pre-trained encoders)",
    "probe": "Probe (frozen LiDAR and image backbones, cached features; lift, fusion, BEV "
             "backbone and head trained)",
}
# The probe judges methods whose pre-training trains both frozen backbones. A single-modal
# pre-training would be judged on a frozen random backbone of the other modality, and the
# UniPAD recipe's encoders have been fine-tuned on labels before the probe.
PROBE_METHODS = ("scratch", "unipad_merge", "simipu", "clap_uniform", "clap_curvature",
                 "clap") + CLAP_VARIANTS
# Pre-trainings a merge is made of.
MERGE_SOURCES = {"unipad_merge": ("lidar_only", "camera_only")}
# The single-modal pre-trainings the UniPAD recipe fine-tunes, with the detector's modality.
UNIPAD_STAGES = (("lidar_only", "lidar"), ("camera_only", "camera"))
# Methods that run the UniPAD recipe's stages: from those pre-trainings, or from random encoders.
UNIPAD_RECIPES = ("unipad", "unipad_scratch")

CLAP_TRAIN_NET = "tools/train_net.py"
PROBE_TRAIN_NET = "projects/probe/train_net.py"
SINGLE_MODAL_TRAIN_NET = "projects/single_modal/train_net.py"
SIMIPU_TRAIN_NET = "projects/simipu/train_net.py"
MERGE_TOOL = "projects/single_modal/tools/merge_weights.py"
GENERATOR = "tools/make_synthetic_nuscenes.py"


def pretrainings_of(method: str) -> List[str]:
    """The pre-training runs a method's cells need."""
    if method in ("scratch", "unipad_scratch"):
        return []
    if method in MERGE_SOURCES:
        return list(MERGE_SOURCES[method])
    if method == "unipad":
        return [source for source, _ in UNIPAD_STAGES]
    return [method]

