"""Shared set-up for the data tests: the real nuScenes frame, copies of it, small configs."""

import shutil
from pathlib import Path

from clap.config.config import get_cfg

FRAME_ROOT = Path(__file__).resolve().parent / "data" / "nuscenes_frame"
FRAME_VERSION = "v1.0-mini"
FRAME_SAMPLE_TOKEN = "ca9a282c9e77460f8360f564131a8af5"


def copy_frame(destination: Path) -> Path:
    """A writable copy of the frame (tables and sensor files) at `destination`."""
    shutil.copytree(FRAME_ROOT, destination)
    return destination


def small_cfg(root, cache_dir, **overrides):
    """The default config on `root` with small images and voxel counts; KEY=VALUE overrides
    use '__' for '.' (e.g. INPUT__NUM_SWEEPS=0)."""
    cfg = get_cfg()
    cfg.DATASETS.ROOT = str(root)
    cfg.DATASETS.VERSION = FRAME_VERSION
    cfg.DATASETS.CACHE_DIR = str(cache_dir)
    cfg.INPUT.IMAGE_SIZE = [128, 224]
    cfg.INPUT.VOXEL_SIZE = [0.6, 0.6, 0.4]
    cfg.INPUT.MAX_VOXELS_TRAIN = 20000
    cfg.INPUT.MAX_VOXELS_TEST = 20000
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split("__")
        for parent in parents:
            node = getattr(node, parent)
        setattr(node, leaf, value)
    return cfg
