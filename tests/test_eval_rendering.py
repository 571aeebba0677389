"""Held-out rendering evaluation (clap/evaluation/rendering.py, tools/eval_rendering.py) with the
tiny CLAP on the real frame."""

import json
import math
import re

import pytest
import torch
from tool_helpers import TINY_CLAP, load_tool, seeded_model

from clap.data.build import build_test_loader
from clap.evaluation.rendering import evaluate_rendering

LIDAR_RAYS = 64
PIXELS_PER_CAMERA = 8


def _evaluate(model, cfg):
    loader = build_test_loader(cfg, cfg.DATASETS.TRAIN[0])
    return evaluate_rendering(model, loader, LIDAR_RAYS, PIXELS_PER_CAMERA, seed=3)


def test_models_with_different_weights_are_evaluated_on_the_same_rays(tiny_clap):
    results, sampled = [], []
    for model_seed in (0, 1):
        model = seeded_model(tiny_clap, model_seed)
        results.append(_evaluate(model, tiny_clap))
        sampled.append(model.last_step["sampled"])
    first, second = sampled
    assert first["lidar_ray_index"].shape == (1, LIDAR_RAYS)
    assert first["pixel_uv"].shape[2] == PIXELS_PER_CAMERA
    assert torch.equal(first["lidar_ray_index"], second["lidar_ray_index"])
    assert torch.equal(first["pixel_uv"], second["pixel_uv"])
    assert results[0]["range_l1_m"] != results[1]["range_l1_m"]
    assert results[0]["rgb_l1"] != results[1]["rgb_l1"]
    for result in results:
        assert math.isfinite(result["range_l1_m"]) and math.isfinite(result["rgb_l1"])
        assert 0 < result["num_lidar_rays"] <= LIDAR_RAYS
        assert 0 < result["num_pixels"]
        assert result["num_frames"] == 1


def test_sampler_training_mode_and_rng_state_are_restored(tiny_clap):
    model = seeded_model(tiny_clap, 0).train()
    sampler = model.ray_sampler
    rng_state = torch.get_rng_state()
    _evaluate(model, tiny_clap)
    assert model.ray_sampler is sampler
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng_state)


def test_cli_writes_the_metrics_of_the_loaded_weights(tiny_clap, tiny_clap_overrides, tmp_path):
    model = seeded_model(tiny_clap, 1)
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    output = tmp_path / "eval" / "rendering.json"
    result = load_tool("eval_rendering").main([
        "--config-file", str(TINY_CLAP), "--weights", str(weights),
        "--dataset", tiny_clap.DATASETS.TRAIN[0], "--rays", str(LIDAR_RAYS),
        "--pixels", str(PIXELS_PER_CAMERA), "--seed", "3", "--json", str(output),
    ] + tiny_clap_overrides)
    written = json.loads(output.read_text())
    assert written == result
    assert written["weights"] == str(weights)
    assert written["dataset"] == tiny_clap.DATASETS.TRAIN[0]
    assert written["range_l1_m"] == pytest.approx(_evaluate(model, tiny_clap)["range_l1_m"])


def test_cli_names_missing_weights_and_missing_test_set(tiny_clap_overrides, tmp_path):
    tool = load_tool("eval_rendering")
    missing = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        tool.main(["--config-file", str(TINY_CLAP), "--weights", str(missing),
                   "--dataset", "nuscenes_v1.0-mini_mini_train"] + tiny_clap_overrides)
    with pytest.raises(ValueError, match="DATASETS.TEST"):
        tool.main(["--config-file", str(TINY_CLAP), "--weights", str(missing)]
                  + tiny_clap_overrides)
