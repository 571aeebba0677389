"""projects/simipu/train_net.py on the real frame, and the encoder weights it produces."""

import importlib.util
import json
import os

import pytest
import torch
from simipu_test_helpers import CPU_CONFIG, FRAME_ROOT, PROJECT_ROOT, SMALL_OVERRIDES

import clap.modeling  # noqa: F401
from clap.checkpoint.clap_checkpoint import export_submodules
from clap.engine import default_argument_parser
from clap.modeling import build_image_backbone, build_lidar_backbone


def load_train_net():
    spec = importlib.util.spec_from_file_location(
        "simipu_train_net", os.path.join(PROJECT_ROOT, "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("restore_loggers")
def test_train_net_trains_and_writes_encoders_that_load_into_fresh_clap_encoders(tmp_path):
    train_net = load_train_net()
    output_dir = tmp_path / "output"
    args = default_argument_parser().parse_args(
        ["--config-file", CPU_CONFIG, "DATASETS.ROOT", FRAME_ROOT,
         "DATASETS.CACHE_DIR", str(tmp_path / "cache"), "OUTPUT_DIR", str(output_dir),
         "SOLVER.MAX_ITER", "2", "SOLVER.LOG_PERIOD", "1", "MODEL.SIMIPU.OPTIMIZER_SPLIT", "True"]
        + [str(v) for v in SMALL_OVERRIDES]
    )
    train_net.main(args)

    metrics = [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [0, 1]
    assert all(m["loss_intra"] > 0 and m["loss_inter"] > 0 for m in metrics)
    checkpoint = torch.load(output_dir / "model_final.pth", weights_only=True)
    algorithms = {g["algorithm"] for g in checkpoint["trainer"]["optimizer"]["param_groups"]}
    assert algorithms == {"adamw", "sgd"}

    # the encoders under the prefixes a detector loads them by
    cfg = train_net.setup(args)
    for prefix, build in (("lidar_backbone", build_lidar_backbone),
                          ("image_backbone", build_image_backbone)):
        exported = export_submodules(checkpoint["model"], [prefix])
        weights = {k[len(prefix) + 1:]: v for k, v in exported.items()}
        fresh = build(cfg)
        assert set(weights) == set(fresh.state_dict())
        fresh.load_state_dict(weights, strict=True)
        for name, value in fresh.state_dict().items():
            assert torch.equal(value, checkpoint["model"][f"{prefix}.{name}"])
