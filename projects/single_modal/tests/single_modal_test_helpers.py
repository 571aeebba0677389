"""Shared set-up of the single-modal tests: paths, tiny configs, the real frame as a batch."""

import os

import torch
from single_modal import add_single_modal_config

from clap.config import get_cfg
from clap.data import DatasetCatalog
from clap.data.collate import collate_batch
from clap.data.datasets import register_nuscenes
from clap.data.mapper import build_mapper

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(os.path.dirname(PROJECT_ROOT))
FRAME_ROOT = os.path.join(REPO_ROOT, "tests", "data", "nuscenes_frame")
FRAME_DATASET = "nuscenes_v1.0-mini_mini_train"
CPU_CONFIGS = {
    modality: os.path.join(PROJECT_ROOT, "configs", "synthetic", f"{modality}_only_cpu.yaml")
    for modality in ("lidar", "camera")
}
PAPER_CONFIGS = {
    modality: os.path.join(PROJECT_ROOT, "configs", "nuscenes", f"{modality}_only.yaml")
    for modality in ("lidar", "camera")
}
CLAP_CPU_CONFIG = os.path.join(REPO_ROOT, "configs", "synthetic", "clap_cpu.yaml")
CLAP_PAPER_CONFIG = os.path.join(REPO_ROOT, "configs", "nuscenes", "clap.yaml")

# The CPU configs shrunk to the sizes of tests/configs/clap_tiny.yaml: a +-24 m box of 0.375 m
# voxels, 64 x 176 images, small encoders, 12 + 4 samples per ray.
TINY_OVERRIDES = [
    "INPUT.POINT_CLOUD_RANGE", [-24.0, -24.0, -3.0, 24.0, 24.0, 3.0],
    "INPUT.VOXEL_SIZE", [0.375, 0.375, 0.375],
    "INPUT.IMAGE_SIZE", [64, 176],
    "INPUT.MAX_VOXELS_TRAIN", 8000,
    "MODEL.VOLUME_STRIDE", [8, 8, 4],
    "MODEL.LIDAR_BACKBONE.OUT_CHANNELS", 16,
    "MODEL.LIDAR_BACKBONE.STAGE_CHANNELS", [8, 8, 16, 16],
    "MODEL.LIDAR_BACKBONE.STEM_CHANNELS", 8,
    "MODEL.IMAGE_BACKBONE.FPN.OUT_CHANNELS", 16,
    "MODEL.VIEW_TRANSFORM.OUT_CHANNELS", 8,
    "MODEL.RENDER_HEAD.FIELD_CONV_CHANNELS", 8,
    "MODEL.RENDER_HEAD.NUM_UNIFORM_SAMPLES", 12,
    "MODEL.RENDER_HEAD.NUM_IMPORTANCE_SAMPLES", 4,
]
# Rays per step of the tiny models: LiDAR rays of the LiDAR-only model, pixels per camera of
# the camera-only model.
TINY_RAYS = {
    "lidar": ["MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS", 128],
    "camera": ["MODEL.RAY_SAMPLER.NUM_PIXELS_PER_CAMERA", 16],
}


def tiny_cfg(modality, cache_dir, *overrides):
    """The `modality` ("lidar" / "camera") CPU config on the real frame at tiny sizes, then
    `overrides` (KEY, VALUE, ...)."""
    cfg = get_cfg()
    add_single_modal_config(cfg)
    cfg.merge_from_file(CPU_CONFIGS[modality])
    cfg.merge_from_list(["DATASETS.ROOT", FRAME_ROOT, "DATASETS.CACHE_DIR", str(cache_dir)])
    cfg.merge_from_list(TINY_OVERRIDES + TINY_RAYS[modality] + list(overrides))
    return cfg


def frame_batch(cfg, seed=0):
    """The real frame through clap's registration, training mapper and collate."""
    register_nuscenes(FRAME_DATASET, FRAME_ROOT, "v1.0-mini", "mini_train",
                      cfg.DATASETS.CACHE_DIR)
    dataset_dicts = DatasetCatalog.get(FRAME_DATASET)
    assert len(dataset_dicts) == 1
    torch.manual_seed(seed)
    return collate_batch([build_mapper(cfg, is_train=True)(dataset_dicts[0])])
