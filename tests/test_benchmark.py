"""The benchmark module: per-component attribution, and a short run of the tiny CLAP."""

import math
from pathlib import Path

import torch
from torch import nn

from clap.benchmark import (
    CLAP_COMPONENTS,
    ComponentProfiler,
    benchmark_ray_samplers,
    benchmark_training,
    format_ray_samplers_table,
    format_training_table,
)
from clap.config import get_cfg

TINY = Path(__file__).resolve().parent / "configs" / "clap_tiny.yaml"
FRAME_ROOT = Path(__file__).resolve().parent / "data" / "nuscenes_frame"


class _TwoStages(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(4, 3)
        self.second = nn.Linear(3, 2)

    def forward(self, x):
        hidden = torch.relu(self.first(x))
        return self.second(hidden).square().sum()


def test_backward_nodes_belong_to_the_component_that_created_them():
    model = _TwoStages()
    components = {"first": [(model.first, "forward")], "second": [(model.second, "forward")]}
    owners = {"first": model.first, "second": model.second}
    with ComponentProfiler(components, owners) as profiler:
        profiler.start_step()
        loss = model(torch.randn(5, 4, requires_grad=True))
        grouped = profiler.node_components(loss)
        assert profiler.attach(loss) == sum(len(names) for names in grouped.values())
        loss.backward()
        times = profiler.step_times()
    # Each linear: its own ops and both its parameters' accumulation. Relu, the loss and the
    # input's gradient belong to no component.
    linear = ["AddmmBackward0", "TBackward0"] + ["torch::autograd::AccumulateGrad"] * 2
    assert sorted(grouped["first"]) == linear
    assert sorted(grouped["second"]) == linear
    assert sorted(grouped["other"]) == [
        "PowBackward0", "ReluBackward0", "SumBackward0", "torch::autograd::AccumulateGrad"
    ]
    assert all(times["backward"][name] > 0 for name in ("first", "second"))
    assert all(times["forward"][name] > 0 for name in ("first", "second"))
    # The wrappers are gone once the profiler is left.
    assert "forward" not in vars(model.first)


def test_two_iterations_of_the_tiny_clap_on_the_real_frame(tmp_path):
    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY))
    cfg.merge_from_list(
        ["DATASETS.ROOT", str(FRAME_ROOT), "DATASETS.CACHE_DIR", str(tmp_path / "cache")]
    )
    result = benchmark_training(cfg, num_iterations=2, num_warmup=0)
    run = result["runs"]["main"]
    for phase in ("forward", "backward", "forward_cpu", "backward_cpu"):
        assert set(run["components"][phase]) == set(CLAP_COMPONENTS) | {"other"}
    for name in CLAP_COMPONENTS:
        assert run["components"]["forward"][name] > 0, name
        if name != "ray_sampling":  # the sampler's choice carries no gradient
            assert run["components"]["backward"][name] > 0, name
    assert run["components"]["backward"]["ray_sampling"] == 0
    for key in ("data", "forward_total", "backward_total", "optimizer", "iteration"):
        assert run[key] > 0, key
    assert run["iteration"] >= run["forward_total"] + run["backward_total"]
    samples_per_ray = cfg.MODEL.RENDER_HEAD.NUM_UNIFORM_SAMPLES
    samples_per_ray += cfg.MODEL.RENDER_HEAD.NUM_IMPORTANCE_SAMPLES
    assert result["config"]["samples_per_ray"] == samples_per_ray
    sampler = cfg.MODEL.RAY_SAMPLER
    assert run["rays"] == sampler.NUM_LIDAR_RAYS + 6 * sampler.NUM_PIXELS_PER_CAMERA
    assert run["ray_samples_per_second"] > 0 and math.isfinite(run["ray_samples_per_second"])
    assert 0 < result["memory"]["peak_rss_mb"] <= result["memory"]["max_rss_mb"] + 1
    table = format_training_table(result)
    assert all(name in table for name in CLAP_COMPONENTS)


def test_baseline_and_uniform_runs_alternate_in_one_process(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY))
    cfg.merge_from_list(
        ["DATASETS.ROOT", str(FRAME_ROOT), "DATASETS.CACHE_DIR", str(tmp_path / "cache"),
         "DATALOADER.NUM_WORKERS", 0, "MODEL.CPU_AUTOCAST_DTYPE", "bfloat16"]
    )
    baseline = cfg.clone()
    baseline.MODEL.CPU_AUTOCAST_DTYPE = ""
    result = benchmark_training(
        cfg, num_iterations=1, num_warmup=0, compare_uniform=True, baseline_cfg=baseline
    )
    assert list(result["runs"]) == ["main", "uniform", "baseline", "baseline uniform"]
    for key in ("curvature_overhead", "baseline_curvature_overhead"):
        assert math.isfinite(result[key]["cpu"]), key
    assert result["speedup"]["cpu"] > 0
    runs = result["runs"]
    assert runs["uniform"]["components"]["forward"]["ray_sampling"] < runs["main"][
        "components"]["forward"]["ray_sampling"]
    table = format_training_table(result)
    assert "baseline uniform" in table and "baseline / main iteration" in table


def test_ray_samplers_render_the_same_budget_side_by_side(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY))
    cfg.merge_from_list(
        ["DATASETS.ROOT", str(FRAME_ROOT), "DATASETS.CACHE_DIR", str(tmp_path / "cache")]
    )
    result = benchmark_ray_samplers(cfg, ["Curvature", "DepthAware"], num_iterations=1)
    sampler = cfg.MODEL.RAY_SAMPLER
    assert [row["sampler"] for row in result["rows"]] == ["Curvature", "DepthAware"]
    for row in result["rows"]:
        assert row["lidar_rays"] == sampler.NUM_LIDAR_RAYS
        assert row["pixels"] == 6 * sampler.NUM_PIXELS_PER_CAMERA
        assert row["step_seconds"] == row["sample_seconds"] + row["render_seconds"]
        assert row["render_seconds"] > 0 and row["step_peak_memory_mb"] >= 0
    curvature, depth_aware = result["rows"]
    # Differentiating the field at the candidates is what curvature sampling adds.
    assert curvature["sample_cpu_seconds"] > depth_aware["sample_cpu_seconds"]
    assert result["num_candidates"] > 0
    assert "Curvature / DepthAware" in format_ray_samplers_table(result)
