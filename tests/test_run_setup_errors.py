"""What a user trips on when starting a run: missing data, nothing to evaluate, where caches go,
which cameras load."""

import logging
import os

import pytest

from clap.config import get_cfg
from clap.data import DatasetCatalog, get_dataset_dicts
from clap.data.datasets.nuscenes import (
    CACHE_FOLDER,
    CAMERA_CHANNELS,
    cache_dir_from_config,
    load_nuscenes_dicts,
    register_from_config,
)
from clap.data.mapper import build_mapper
from clap.engine import default_argument_parser
from tests.nuscenes_frame_helpers import FRAME_ROOT, FRAME_VERSION, small_cfg
from tests.tiny_model import load_train_net_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "configs", "tiny.yaml")


def test_missing_data_root_says_how_to_generate_the_synthetic_world(tmp_path):
    cfg = get_cfg()
    cfg.DATASETS.ROOT = str(tmp_path / "synthetic_nuscenes")
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    with pytest.raises(FileNotFoundError) as error:
        register_from_config(cfg)
    message = str(error.value)
    assert "DATASETS.ROOT" in message and "make data" in message
    assert f"tools/make_synthetic_nuscenes.py --out {cfg.DATASETS.ROOT}" in message


def test_eval_only_without_test_sets_is_an_error(tmp_path):
    train_net = load_train_net_module()
    args = default_argument_parser().parse_args(
        ["--config-file", TINY, "--eval-only", "OUTPUT_DIR", str(tmp_path / "out")]
    )
    with pytest.raises(ValueError, match="DATASETS.TEST is empty"):
        train_net.main(args)


def test_cache_dir_defaults_under_the_data_root_else_the_output_folder(tmp_path, monkeypatch):
    cfg = get_cfg()
    cfg.DATASETS.ROOT = str(tmp_path / "data")
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    os.makedirs(cfg.DATASETS.ROOT)
    assert cfg.DATASETS.CACHE_DIR == ""
    assert cache_dir_from_config(cfg) == os.path.join(cfg.DATASETS.ROOT, CACHE_FOLDER)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only data root
    assert cache_dir_from_config(cfg) == os.path.join(cfg.OUTPUT_DIR, CACHE_FOLDER)
    cfg.DATASETS.CACHE_DIR = str(tmp_path / "explicit")
    assert cache_dir_from_config(cfg) == cfg.DATASETS.CACHE_DIR


def test_data_set_size_is_logged_once(caplog):
    name = "size_logged_once_probe"
    DatasetCatalog.register(name, lambda: [{"index": 0}, {"index": 1}])
    try:
        with caplog.at_level(logging.INFO, logger="clap.data.build"):
            get_dataset_dicts(name)
            get_dataset_dicts([name])
        lines = [r.getMessage() for r in caplog.records if name in r.getMessage()]
        assert lines == [f"Data set '{name}': 2 samples"]
    finally:
        DatasetCatalog.remove(name)


def test_empty_camera_list_loads_every_camera_of_the_sample(tmp_path):
    """A rig needs no INPUT.CAMERAS override: by default every camera of the data loads."""
    cache_dir = tmp_path / "cache"
    (frame,) = load_nuscenes_dicts(str(FRAME_ROOT), FRAME_VERSION, "all", str(cache_dir))
    cfg = small_cfg(FRAME_ROOT, cache_dir, INPUT__IMAGE_SIZE=[16, 32])
    assert cfg.INPUT.CAMERAS == []  # the default
    mapper = build_mapper(cfg, is_train=False)
    assert mapper.camera_names(frame) == list(CAMERA_CHANNELS)  # the frame has all six
    sample = mapper(frame)
    assert sample["images"].shape == (len(frame["cameras"]), 3, 16, 32)
    assert sample["lidar2img"].shape == (len(frame["cameras"]), 4, 4)
    # A model without the camera modality loads no images.
    cfg.MODEL.MODALITIES = ["lidar"]
    assert build_mapper(cfg, is_train=False)(frame)["images"].shape[0] == 0
