"""The detection configs take every encoder weight of the CPU pre-training configs."""

import os

import pytest
import torch

from clap.config import get_cfg
from clap.modeling import build_model, load_pretrained_encoders
from clap.modeling.meta_arch.pretrained import ENCODER_PREFIXES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(config_file, *overrides):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, config_file))
    cfg.merge_from_list(list(overrides))
    torch.manual_seed(0)
    return build_model(cfg)


def encoder_keys(model):
    return {k for k in model.state_dict() if k.startswith(ENCODER_PREFIXES)}


@pytest.fixture(scope="module")
def detector():
    return build("configs/synthetic/detection_cpu.yaml")


@pytest.mark.parametrize("pretrain_config", [
    "configs/synthetic/clap_cpu.yaml",
    "configs/synthetic/ablations/joint_uniform.yaml",
])
def test_clap_checkpoint_fills_every_detector_encoder_key(detector, pretrain_config, tmp_path):
    clap = build(pretrain_config)
    path = tmp_path / "model_final.pth"
    torch.save({"model": clap.state_dict(), "iteration": 0}, path)

    report = load_pretrained_encoders(detector, str(path))

    expected = encoder_keys(detector)
    assert {key.split(".")[0] + "." for key in expected} == set(ENCODER_PREFIXES)
    assert report.missing == [] and report.mismatched == {} and report.unexpected == []
    assert set(report.loaded) == expected
    detector_state = detector.state_dict()
    for key, value in clap.state_dict().items():
        if key in expected:
            assert torch.equal(detector_state[key], value), key


def test_comparison_detector_predicts_on_1m_cells_with_the_same_encoders(detector):
    fine = build("configs/synthetic/detection_cpu_1m.yaml")
    assert fine.det_head.cell_size == (1.0, 1.0)
    assert detector.det_head.cell_size == (2.0, 2.0)
    fine_state, state = fine.state_dict(), detector.state_dict()
    assert encoder_keys(fine) == encoder_keys(detector)
    assert all(fine_state[k].shape == state[k].shape for k in encoder_keys(detector))
