"""Merging a LiDAR-only and a camera-only checkpoint into one fusion initialisation."""

import importlib.util
import os

import pytest
import torch
from single_modal import (
    check_against_model,
    load_model_state,
    merge_encoder_states,
    merge_single_modal_checkpoints,
)
from single_modal_test_helpers import CLAP_CPU_CONFIG, PROJECT_ROOT, TINY_OVERRIDES, tiny_cfg

import clap.modeling  # noqa: F401
from clap.checkpoint import ClapCheckpointer
from clap.config import get_cfg
from clap.modeling import build_model

ENCODERS = {"lidar": ("lidar_backbone",), "camera": ("image_backbone", "view_transform")}


def load_tool():
    spec = importlib.util.spec_from_file_location(
        "merge_weights", os.path.join(PROJECT_ROOT, "tools", "merge_weights.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fusion_cfg(*overrides):
    """clap's CPU-scale fusion CLAP at the tiny test sizes."""
    cfg = get_cfg()
    cfg.merge_from_file(CLAP_CPU_CONFIG)
    cfg.merge_from_list(TINY_OVERRIDES + list(overrides))
    return cfg


def under(state, prefixes):
    return {k for k in state if k.split(".")[0] in prefixes}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A LiDAR-only checkpoint ({"model": state}) and a camera-only one (a bare state dict),
    written with torch.save from tiny models of the single-modal configs."""
    folder = tmp_path_factory.mktemp("single_modal_merge")
    torch.manual_seed(0)
    states = {m: build_model(tiny_cfg(m, folder / "cache")).state_dict() for m in ENCODERS}
    paths = {m: str(folder / f"{m}_only.pth") for m in ENCODERS}
    torch.save({"model": states["lidar"], "iteration": 49}, paths["lidar"])
    torch.save(states["camera"], paths["camera"])
    return states, paths


def test_merge_tool_takes_exactly_the_encoders_a_fusion_model_needs(tmp_path, checkpoints,
                                                                     capsys):
    states, paths = checkpoints
    output = tmp_path / "out" / "merged.pth"
    load_tool().main(
        ["--lidar", paths["lidar"], "--camera", paths["camera"], "--output", str(output),
         "--config-file", CLAP_CPU_CONFIG] + [str(v) for v in TINY_OVERRIDES])
    printed = capsys.readouterr().out

    merged = torch.load(output, weights_only=True)["model"]
    lidar_keys = under(states["lidar"], ENCODERS["lidar"])
    camera_keys = under(states["camera"], ENCODERS["camera"])
    assert lidar_keys and camera_keys
    assert set(merged) == lidar_keys | camera_keys
    for modality, keys in (("lidar", lidar_keys), ("camera", camera_keys)):
        for key in keys:
            assert torch.equal(merged[key], states[modality][key]), key

    # every encoder tensor of a fresh fusion CLAP is matched, with its shape
    torch.manual_seed(1)
    fusion_model = build_model(fusion_cfg())
    result = check_against_model(merged, fusion_model.state_dict())
    assert result["missing"] == result["unexpected"] == result["shape_mismatch"] == []
    assert {"fusion", "render_head", "prototype_head"} <= set(result["model_keeps"])
    # clap's checkpointer loads it; the encoders take the merged tensors, the fusion keeps its own
    fusion_before = {k: v.clone() for k, v in fusion_model.fusion.state_dict().items()}
    ClapCheckpointer(fusion_model).load(str(output), checkpointables=[])
    loaded = fusion_model.state_dict()
    for key, value in merged.items():
        assert torch.equal(loaded[key], value), key
    for key, value in fusion_model.fusion.state_dict().items():
        assert torch.equal(value, fusion_before[key]), key

    # the report says what came from where and what was left out
    assert f"lidar_backbone.* ({len(lidar_keys)} tensors) from {paths['lidar']}" in printed
    assert f"from {paths['camera']}" in printed and "view_transform.*" in printed
    left_out = printed.split("Left out:")[1]
    assert "render_head" in left_out and "fusion.*" in left_out
    assert "All encoder tensors of the model" in printed


def test_merge_report_lists_what_each_checkpoint_keeps_back(checkpoints):
    states, paths = checkpoints
    _, report = merge_single_modal_checkpoints(paths["lidar"], paths["camera"])
    assert report.taken == {
        "lidar_backbone": (paths["lidar"], len(under(states["lidar"], ("lidar_backbone",)))),
        "image_backbone": (paths["camera"], len(under(states["camera"], ("image_backbone",)))),
        "view_transform": (paths["camera"], len(under(states["camera"], ("view_transform",)))),
    }
    # PassThroughFusion has no weights: the render heads are all that is left behind
    assert set(report.left_out[paths["lidar"]]) == {"render_head"}
    assert set(report.left_out[paths["camera"]]) == {"render_head"}
    assert report.not_provided == ("fusion",)


def test_merge_refuses_checkpoints_without_the_expected_encoder(tmp_path, checkpoints, capsys):
    states, paths = checkpoints
    output = tmp_path / "merged.pth"
    tool = load_tool()
    # swapped inputs: the camera-only file has no LiDAR encoder
    with pytest.raises(SystemExit) as raised:
        tool.main(["--lidar", paths["camera"], "--camera", paths["lidar"],
                   "--output", str(output)])
    message = str(raised.value)
    assert paths["camera"] in message and "lidar_backbone.*" in message
    assert not output.exists()
    # a camera-only checkpoint without its lift
    no_lift = {k: v for k, v in states["camera"].items() if not k.startswith("view_transform.")}
    with pytest.raises(ValueError, match="camera.pth has no view_transform"):
        merge_encoder_states(states["lidar"], no_lift, "lidar.pth", "camera.pth")


def test_merge_refuses_overlapping_encoders(tmp_path, checkpoints):
    states, _ = checkpoints
    fusion_state = build_model(fusion_cfg()).state_dict()
    with pytest.raises(ValueError, match="fusion.pth also holds image_backbone"):
        merge_encoder_states(fusion_state, states["camera"], "fusion.pth", "camera.pth")
    with pytest.raises(ValueError, match="fusion.pth also holds lidar_backbone"):
        merge_encoder_states(states["lidar"], fusion_state, "lidar.pth", "fusion.pth")


def test_load_model_state_names_the_file_it_cannot_use(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_model_state(str(missing))
    not_weights = tmp_path / "metrics.pth"
    torch.save({"iteration": 3, "loss": [0.5]}, not_weights)
    with pytest.raises(ValueError, match="metrics.pth: expected a checkpoint"):
        load_model_state(str(not_weights))


def test_merge_of_fine_tuned_detectors_takes_the_lidar_head_too(tmp_path):
    """UniPAD's fusion recipe: two single-modal detectors; the LiDAR one also gives its BEV
    backbone and head, the fusion keeps the fusion detector's initialisation."""
    lidar = {"lidar_backbone.w": torch.ones(2), "fusion.w": torch.ones(3),
             "bev_backbone.w": torch.full((4,), 2.0), "det_head.b": torch.full((1,), 3.0)}
    camera = {"image_backbone.w": torch.zeros(2), "view_transform.w": torch.zeros(1),
              "fusion.w": torch.zeros(3), "bev_backbone.w": torch.zeros(4),
              "det_head.b": torch.zeros(1)}
    paths = {"lidar": str(tmp_path / "lidar.pth"), "camera": str(tmp_path / "camera.pth")}
    torch.save({"model": lidar}, paths["lidar"])
    torch.save({"model": camera}, paths["camera"])
    output = str(tmp_path / "merged.pth")
    load_tool().main(["--lidar", paths["lidar"], "--camera", paths["camera"], "--output", output,
                      "--with-lidar-head"])
    merged = load_model_state(output)
    assert set(merged) == {"lidar_backbone.w", "bev_backbone.w", "det_head.b",
                           "image_backbone.w", "view_transform.w"}
    assert torch.equal(merged["bev_backbone.w"], lidar["bev_backbone.w"])
    assert torch.equal(merged["det_head.b"], lidar["det_head.b"])
    assert torch.equal(merged["image_backbone.w"], camera["image_backbone.w"])

    plain, _ = merge_encoder_states(lidar, camera)  # the pre-trained merge: encoders only
    assert set(plain) == {"lidar_backbone.w", "image_backbone.w", "view_transform.w"}
