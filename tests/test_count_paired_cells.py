import importlib.util
from pathlib import Path

import pytest

from clap.config import get_cfg

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "clap_tiny.yaml"
FRAME_ROOT = ROOT / "tests" / "data" / "nuscenes_frame"


def _tool():
    spec = importlib.util.spec_from_file_location(
        "count_paired_cells", ROOT / "tools" / "count_paired_cells.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cfg(tmp_path, *overrides):
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY))
    cfg.merge_from_list(["DATASETS.ROOT", str(FRAME_ROOT), "DATASETS.CACHE_DIR",
                         str(tmp_path / "cache")] + list(overrides))
    return cfg


def test_heavier_masking_pairs_fewer_cells(tmp_path):
    tool = _tool()
    light = tool.count_paired_cells(_cfg(tmp_path, "MODEL.LIDAR_BACKBONE.MASK_RATIO", "0.0",
                                         "MODEL.IMAGE_BACKBONE.MASK_RATIO", "0.0"), 1)[0]
    heavy = tool.count_paired_cells(_cfg(tmp_path, "MODEL.LIDAR_BACKBONE.MASK_RATIO", "0.9",
                                         "MODEL.IMAGE_BACKBONE.MASK_RATIO", "0.9"), 1)[0]
    for frame in (light, heavy):
        assert frame["paired"] <= min(frame["lidar_observed"], frame["camera_observed"])
        assert frame["cells"] > frame["camera_observed"]
    assert 0 < heavy["paired"] < light["paired"]
    assert heavy["lidar_observed"] < light["lidar_observed"]


def test_a_config_without_prototype_head_is_refused(tmp_path):
    cfg = _cfg(tmp_path, "MODEL.PROTOTYPE_HEAD.LOSS_WEIGHT", "0.0")
    with pytest.raises(ValueError, match="pairs no cells"):
        _tool().count_paired_cells(cfg, 1)
