"""Ray samplers side by side at one ray budget, with the render head they feed
(`benchmark_ray_samplers`)."""

import time
from typing import Dict, Sequence

import torch

from .memory import PeakMemory, return_large_blocks_on_free
from .render_setup import render_head_inputs
from .timing import median, synchronize

__all__ = ["benchmark_ray_samplers"]


def benchmark_ray_samplers(
    cfg,
    sampler_names: Sequence[str] = ("Curvature", "DepthAware"),
    num_iterations: int = 3,
) -> Dict[str, object]:
    """Time and peak memory of choosing the rays (each sampler of `sampler_names`) and of
    rendering them, at the config's budget (MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS LiDAR rays and
    NUM_PIXELS_PER_CAMERA pixels per camera for every sampler).

    The render head is built from `cfg` on the config's volume grid, its field volume a random
    leaf tensor that requires gradients (as in `benchmark_ray_scaling`), and the batch is the
    first sample of DATASETS.TRAIN, so the samplers differ only in which rays they pick and what
    picking costs: a curvature sampler differentiates the field twice at its candidate points
    (MODEL.RAY_SAMPLER.CURVATURE_MAX_POINTS of them, 0 = every candidate), the depth-aware one
    projects the points. Curvature samplers sample by curvature (no warm-up). The samplers'
    steps interleave (one round of every sampler per iteration, the first round untimed); then,
    on CPU, freed blocks of 128 KiB or more are handed back to the system (so that the resident
    size measures what tensors hold) and one more step of each measures the memory.

    Args:
        sampler_names: names in RAY_SAMPLER_REGISTRY, each run with the config's other
            MODEL.RAY_SAMPLER keys.
        num_iterations: timed steps per sampler (median; one untimed warm-up first, one more
            step for the memory).

    Returns:
        dict with `rows` (per sampler: `sampler`, `lidar_rays`, `pixels` (rendered per step),
        `sample_seconds` (choosing the rays), `render_seconds` (rendering them, forward +
        backward), `step_seconds` (both), their `*_cpu_seconds`, `sample_peak_memory_mb` and
        `step_peak_memory_mb` (increase over the state before: CPU resident set or CUDA
        allocated)), `volume_shape` (C, Z, Y, X), `num_candidates` and the run's facts.
    """
    from clap.modeling.ray_sampler import build_ray_sampler
    from clap.modeling.render_head.rays import build_rays

    device = torch.device(cfg.MODEL.DEVICE)
    head, volume, batch = render_head_inputs(cfg, device)
    field = head.field_function(volume)

    def sample(sampler) -> dict:
        sampled = sampler.sample(batch, field)
        synchronize(device)
        return sampled

    def render(sampled: dict) -> None:
        outputs = head.render(volume, build_rays(batch, sampled))
        loss = sum(v for k, v in outputs.items() if k.startswith("loss_"))
        volume.grad = None
        head.zero_grad(set_to_none=True)
        loss.backward()
        synchronize(device)

    def timed(function, *args):
        start, cpu_start = time.perf_counter(), time.process_time()
        value = function(*args)
        return value, time.perf_counter() - start, time.process_time() - cpu_start

    samplers = {}
    for name in sampler_names:
        cfg_sampler = cfg.clone()
        cfg_sampler.defrost()
        cfg_sampler.MODEL.RAY_SAMPLER.NAME = name
        samplers[name] = build_ray_sampler(cfg_sampler)
        if hasattr(samplers[name], "use_uniform"):
            samplers[name].use_uniform = False

    times = {name: {key: [] for key in ("sample", "render", "sample_cpu", "render_cpu")}
             for name in samplers}
    last = {}
    for _ in range(num_iterations + 1):  # the first round is the warm-up
        for name, sampler in samplers.items():  # interleaved: load changes hit every sampler
            sampled, sample_seconds, sample_cpu_seconds = timed(sample, sampler)
            _, render_seconds, render_cpu_seconds = timed(render, sampled)
            if name in last:
                times[name]["sample"].append(sample_seconds)
                times[name]["sample_cpu"].append(sample_cpu_seconds)
                times[name]["render"].append(render_seconds)
                times[name]["render_cpu"].append(render_cpu_seconds)
            last[name] = sampled
    rows = []
    for name in samplers:
        lidar_index, pixel_uv = last[name]["lidar_ray_index"], last[name]["pixel_uv"]
        row = {
            "sampler": name,
            "lidar_rays": 0 if lidar_index is None else int(lidar_index.numel()),
            "pixels": 0 if pixel_uv is None else int(pixel_uv.shape[:3].numel()),
            "sample_seconds": median(times[name]["sample"]),
            "render_seconds": median(times[name]["render"]),
            "sample_cpu_seconds": median(times[name]["sample_cpu"]),
            "render_cpu_seconds": median(times[name]["render_cpu"]),
        }
        row["step_seconds"] = row["sample_seconds"] + row["render_seconds"]
        row["step_cpu_seconds"] = row["sample_cpu_seconds"] + row["render_cpu_seconds"]
        rows.append(row)
    del last
    # Memory after every timing: handing freed blocks back makes later steps pay page faults.
    if device.type == "cpu":
        return_large_blocks_on_free()
    for row, sampler in zip(rows, samplers.values()):
        with PeakMemory(device) as sample_memory:
            sample(sampler)
        with PeakMemory(device) as step_memory:
            render(sample(sampler))
        row["sample_peak_memory_mb"] = sample_memory.increase_bytes / 2**20
        row["step_peak_memory_mb"] = step_memory.increase_bytes / 2**20
    num_candidates = int(next(iter(samplers.values())).candidates(batch).sum())
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "volume_shape": list(volume.shape[1:]),
        "num_candidates": num_candidates,
        "curvature_max_points": cfg.MODEL.RAY_SAMPLER.CURVATURE_MAX_POINTS,
        "rows": rows,
    }
