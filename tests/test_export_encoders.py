"""tools/export_encoders.py: encoder weights out of a pre-training checkpoint."""

import importlib.util
from pathlib import Path

import pytest
import torch

from clap.config import get_cfg
from clap.modeling import build_model
from clap.modeling.meta_arch.pretrained import load_pretrained_encoders

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "clap_tiny.yaml"


def _tool():
    path = ROOT / "tools" / "export_encoders.py"
    spec = importlib.util.spec_from_file_location("export_encoders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_keeps_every_encoder_tensor_and_nothing_else(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY))
    clap_model = build_model(cfg)
    torch.save({"model": clap_model.state_dict(), "iteration": 3}, tmp_path / "model_final.pth")

    counts = _tool().export_encoders(str(tmp_path / "model_final.pth"), str(tmp_path / "enc.pth"))
    exported = torch.load(tmp_path / "enc.pth", weights_only=True)["model"]
    assert set(counts) == {"lidar_backbone", "image_backbone", "view_transform", "fusion"}
    expected = {
        k: v for k, v in clap_model.state_dict().items()
        if k.split(".")[0] in counts
    }
    assert exported.keys() == expected.keys()
    assert all(torch.equal(exported[k], expected[k]) for k in expected)
    assert not any(k.startswith(("render_head.", "prototype_head.")) for k in exported)

    cfg.MODEL.META_ARCHITECTURE = "DetectionModel"
    detector = build_model(cfg)
    report = load_pretrained_encoders(detector, str(tmp_path / "enc.pth"))
    assert not report.missing and not report.mismatched


def test_export_names_a_checkpoint_without_encoders(tmp_path):
    torch.save({"model": {"render_head.weight": torch.zeros(1)}}, tmp_path / "x.pth")
    with pytest.raises(KeyError, match="x.pth holds no encoder weights"):
        _tool().export_encoders(str(tmp_path / "x.pth"), str(tmp_path / "out.pth"))
