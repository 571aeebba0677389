import pytest
from tool_helpers import frame_overrides, load_tool, tiny_clap_cfg


def _cfg(tmp_path, *overrides):
    return tiny_clap_cfg(frame_overrides(tmp_path / "cache") + list(overrides))


def test_heavier_masking_pairs_fewer_cells(tmp_path):
    tool = load_tool("count_paired_cells")
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
        load_tool("count_paired_cells").count_paired_cells(cfg, 1)
