"""Shared set-up of the SimIPU tests: paths, a small config, the real frame as a batch."""

import os

import torch
from simipu import add_simipu_config

from clap.config import get_cfg
from clap.data import DatasetCatalog
from clap.data.collate import collate_batch
from clap.data.datasets import register_nuscenes
from clap.data.mapper import build_mapper

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_ROOT = os.path.dirname(os.path.dirname(PROJECT_ROOT))
FRAME_ROOT = os.path.join(REPO_ROOT, "tests", "data", "nuscenes_frame")
CPU_CONFIG = os.path.join(PROJECT_ROOT, "configs", "synthetic", "simipu_cpu.yaml")
FRAME_DATASET = "nuscenes_v1.0-mini_mini_train"

# The CPU config shrunk further for tests: a +-16 m crop, 32x96 images, 128 points per view.
SMALL_OVERRIDES = [
    "INPUT.POINT_CLOUD_RANGE", [-16.0, -16.0, -3.0, 16.0, 16.0, 1.0],
    "INPUT.IMAGE_SIZE", [32, 96],
    "MODEL.VOLUME_STRIDE", [2, 2, 2],
    "MODEL.LIDAR_BACKBONE.STAGE_CHANNELS", [8, 16],
    "MODEL.LIDAR_BACKBONE.NUM_BLOCKS", [1, 1],
    "MODEL.LIDAR_BACKBONE.OUT_CHANNELS", 16,
    "MODEL.SIMIPU.NUM_POINTS", 128,
    "MODEL.SIMIPU.POINT_SAMPLING", "random",
    "MODEL.SIMIPU.PROJ_HIDDEN_DIM", 64,
    "MODEL.SIMIPU.PROJ_DIM", 32,
]


def small_cfg(cache_dir, *overrides):
    """The project's CPU config on the real frame with SMALL_OVERRIDES, then `overrides`
    (KEY, VALUE, ...)."""
    cfg = get_cfg()
    add_simipu_config(cfg)
    cfg.merge_from_file(CPU_CONFIG)
    cfg.merge_from_list(["DATASETS.ROOT", FRAME_ROOT, "DATASETS.CACHE_DIR", str(cache_dir)])
    cfg.merge_from_list(SMALL_OVERRIDES + list(overrides))
    return cfg


def frame_batch(cfg, seed=0):
    """The real frame through clap's registration, training mapper and collate."""
    register_nuscenes(FRAME_DATASET, FRAME_ROOT, "v1.0-mini", "mini_train",
                      cfg.DATASETS.CACHE_DIR)
    dataset_dicts = DatasetCatalog.get(FRAME_DATASET)
    assert len(dataset_dicts) == 1
    torch.manual_seed(seed)
    return collate_batch([build_mapper(cfg, is_train=True)(dataset_dicts[0])])
