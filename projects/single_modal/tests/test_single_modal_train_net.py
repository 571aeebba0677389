"""projects/single_modal/train_net.py on the real frame, both baselines, and the merge of the
two checkpoints it writes."""

import importlib.util
import json
import os

import pytest
import torch
from single_modal import merge_single_modal_checkpoints
from single_modal_test_helpers import (
    CPU_CONFIGS,
    FRAME_ROOT,
    PROJECT_ROOT,
    TINY_OVERRIDES,
    TINY_RAYS,
)

from clap.engine import default_argument_parser

EXPECTED_LOSSES = {"lidar": {"loss_range"}, "camera": {"loss_rgb", "loss_camera_range"}}


def load_train_net():
    spec = importlib.util.spec_from_file_location(
        "single_modal_train_net", os.path.join(PROJECT_ROOT, "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("restore_loggers")
def test_train_net_trains_both_baselines_and_their_checkpoints_merge(tmp_path):
    train_net = load_train_net()
    finals = {}
    for modality in ("lidar", "camera"):
        output_dir = tmp_path / modality
        args = default_argument_parser().parse_args(
            ["--config-file", CPU_CONFIGS[modality], "DATASETS.ROOT", FRAME_ROOT,
             "DATASETS.CACHE_DIR", str(tmp_path / "cache"), "OUTPUT_DIR", str(output_dir),
             "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_ITER", "2", "SOLVER.LOG_PERIOD", "1",
             "VIS_PERIOD", "0", "INPUT.IMAGE_SIZE", "[32, 96]"]
            + [str(v) for v in TINY_OVERRIDES + TINY_RAYS[modality]]
        )
        train_net.main(args)
        lines = (output_dir / "metrics.json").read_text().splitlines()
        metrics = [json.loads(line) for line in lines]
        assert [m["iteration"] for m in metrics] == [0, 1]
        for m in metrics:
            assert EXPECTED_LOSSES[modality] <= set(m)
            assert all(m[k] > 0 for k in EXPECTED_LOSSES[modality])
        finals[modality] = str(output_dir / "model_final.pth")
        checkpoint = torch.load(finals[modality], weights_only=True)
        assert checkpoint["iteration"] == 1

    merged, report = merge_single_modal_checkpoints(finals["lidar"], finals["camera"])
    assert {k.split(".")[0] for k in merged} == {
        "lidar_backbone", "image_backbone", "view_transform"}
    assert report.taken["lidar_backbone"][0] == finals["lidar"]
    assert report.taken["image_backbone"][0] == finals["camera"]
    lidar_state = torch.load(finals["lidar"], weights_only=True)["model"]
    for key in (k for k in merged if k.startswith("lidar_backbone.")):
        assert torch.equal(merged[key], lidar_state[key])


def test_train_net_has_nothing_to_evaluate(tmp_path):
    args = default_argument_parser().parse_args(
        ["--config-file", CPU_CONFIGS["lidar"], "--eval-only", "OUTPUT_DIR", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="nothing to evaluate"):
        load_train_net().main(args)
    assert not (tmp_path / "out").exists()
