"""Object share of the chosen LiDAR rays (clap/evaluation/ray_choice.py, tools/ray_choice.py)
with the tiny CLAP on the real frame."""

import json
import re

import pytest
import torch
from tool_helpers import TINY_CLAP, load_tool, seeded_model

from clap.data.box_ops import points_in_boxes
from clap.data.build import build_test_loader
from clap.evaluation.ray_choice import object_share_of_rays, points_on_objects
from clap.modeling.ray_sampler import Uniform
from clap.modeling.ray_sampler.curvature import WeightedRaySampler


@pytest.fixture(scope="module")
def batches(tiny_clap):
    return list(build_test_loader(tiny_clap, tiny_clap.DATASETS.TRAIN[0]))


class _ObjectsOnly(WeightedRaySampler):
    """Weight 1 on candidate points inside a box, 0 elsewhere."""

    def point_weights(self, batch, candidates, field):
        return (candidates & points_on_objects(batch)).float()


def _sampler_like(sampler, cls, num_lidar_rays):
    return cls(num_lidar_rays=num_lidar_rays, num_pixels_per_camera=0,
               point_cloud_range=sampler.point_cloud_range, min_distance=sampler.min_distance)


def test_the_frame_has_candidate_points_in_its_boxes(tiny_clap, batches):
    (batch,) = batches
    boxes = batch["gt_boxes"][0].numpy()
    assert boxes.shape[0] > 0
    candidates = seeded_model(tiny_clap).ray_sampler.candidates(batch)
    inside = torch.from_numpy(points_in_boxes(batch["points"].numpy(), boxes).any(axis=1))
    assert torch.equal(points_on_objects(batch), inside)
    # enough object candidates for a whole ray budget drawn among them alone
    assert int((inside & candidates).sum()) > tiny_clap.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS
    assert int((~inside & candidates).sum()) > 0


def test_a_sampler_of_object_points_only_is_enriched_by_one_over_the_candidate_share(
    tiny_clap, batches
):
    model = seeded_model(tiny_clap)
    model.ray_sampler = _sampler_like(
        model.ray_sampler, _ObjectsOnly, tiny_clap.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS)
    model.ray_sampler.use_uniform = True  # forced off during the measurement
    result = object_share_of_rays(model, batches)
    (batch,) = batches
    candidates = model.ray_sampler.candidates(batch)
    expected_share = float((points_on_objects(batch) & candidates).sum() / candidates.sum())
    assert 0 < result["candidate_object_share"] < 0.5
    assert result["candidate_object_share"] == pytest.approx(expected_share)
    assert result["sampled_object_share"] == 1.0
    assert result["weight_object_share"] == pytest.approx(1.0)
    assert result["enrichment"] == pytest.approx(1.0 / expected_share)
    assert result["num_frames"] == 1
    assert result["num_candidates"] == int(candidates.sum())
    rays = tiny_clap.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS
    assert result["num_rays"] == result["num_object_rays"] == rays


def test_uniform_sampling_is_not_enriched(tiny_clap, batches):
    model = seeded_model(tiny_clap)
    model.ray_sampler = _sampler_like(model.ray_sampler, Uniform, 8192)
    result = object_share_of_rays(model, batches * 4, seed=1)  # 4 draws of the frame
    assert result["num_rays"] == 4 * 8192
    assert result["weight_object_share"] is None
    assert result["enrichment"] == pytest.approx(1.0, abs=0.1)


def test_training_mode_sampler_flag_and_rng_state_are_restored(tiny_clap, batches):
    model = seeded_model(tiny_clap).train()
    sampler = model.ray_sampler
    assert type(sampler).__name__ == "Curvature"
    sampler.use_uniform = True
    rng_state = torch.random.get_rng_state()
    result = object_share_of_rays(model, batches)
    assert model.training
    assert model.ray_sampler is sampler and sampler.use_uniform is True
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    # the curvature weights were used (the uniform draw has no weights)
    assert result["weight_object_share"] is not None
    assert 0 <= result["weight_object_share"] <= 1
    model.eval()
    sampler.use_uniform = False
    object_share_of_rays(model, batches)
    assert not model.training and sampler.use_uniform is False


def test_the_same_seed_picks_the_same_rays(tiny_clap, batches):
    model = seeded_model(tiny_clap)
    first, second = (object_share_of_rays(model, batches, seed=2) for _ in range(2))
    assert first == second


def test_a_model_that_is_not_clap_is_refused(batches):
    with pytest.raises(TypeError, match="CLAP model"):
        object_share_of_rays(torch.nn.Linear(2, 2), batches)


def test_cli_writes_the_shares_of_the_loaded_weights(
    tiny_clap, tiny_clap_overrides, batches, tmp_path
):
    model = seeded_model(tiny_clap, 1)
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    output = tmp_path / "choice" / "ray_choice.json"
    result = load_tool("ray_choice").main([
        "--config-file", str(TINY_CLAP), "--weights", str(weights),
        "--dataset", tiny_clap.DATASETS.TRAIN[0], "--max-frames", "1", "--seed", "3",
        "--json", str(output),
    ] + tiny_clap_overrides)
    written = json.loads(output.read_text())
    assert written == result
    assert written["weights"] == str(weights)
    assert written["config_file"] == str(TINY_CLAP)
    assert written["dataset"] == tiny_clap.DATASETS.TRAIN[0]
    assert written["opts"] == tiny_clap_overrides
    assert written["seed"] == 3
    assert written["num_frames"] == 1
    expected = object_share_of_rays(model, batches, seed=3)
    assert written["sampled_object_share"] == pytest.approx(expected["sampled_object_share"])
    assert written["weight_object_share"] == pytest.approx(expected["weight_object_share"])


def test_cli_names_missing_weights_and_missing_test_set(tiny_clap_overrides, tmp_path):
    tool = load_tool("ray_choice")
    missing = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        tool.main(["--config-file", str(TINY_CLAP), "--weights", str(missing),
                   "--dataset", "nuscenes_v1.0-mini_mini_train"] + tiny_clap_overrides)
    with pytest.raises(ValueError, match="DATASETS.TEST"):
        tool.main(["--config-file", str(TINY_CLAP), "--weights", str(missing)]
                  + tiny_clap_overrides)
