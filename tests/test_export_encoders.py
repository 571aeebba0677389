"""tools/export_encoders.py: encoder weights out of a pre-training checkpoint."""

import pytest
import torch
from tool_helpers import TINY_CLAP, load_tool

from clap.config import get_cfg
from clap.modeling import build_model
from clap.modeling.meta_arch.pretrained import load_pretrained_encoders


def export_encoders(source: str, target: str):
    return load_tool("export_encoders").export_encoders(source, target)


def test_export_keeps_every_encoder_tensor_and_nothing_else(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY_CLAP))
    clap_model = build_model(cfg)
    torch.save({"model": clap_model.state_dict(), "iteration": 3}, tmp_path / "model_final.pth")

    counts = export_encoders(str(tmp_path / "model_final.pth"), str(tmp_path / "enc.pth"))
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
        export_encoders(str(tmp_path / "x.pth"), str(tmp_path / "out.pth"))
