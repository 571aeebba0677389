"""The render head alone against the number of LiDAR rays (`benchmark_ray_scaling`)."""

import logging
import time
from typing import Dict, Optional, Sequence

import torch

from .memory import PeakMemory, return_large_blocks_on_free
from .render_setup import render_head_inputs
from .timing import median, synchronize

__all__ = ["benchmark_ray_scaling"]

logger = logging.getLogger(__name__)

def benchmark_ray_scaling(
    cfg,
    ray_counts: Sequence[int] = (1024, 2048, 4096, 8192, 16384, 32768),
    num_iterations: int = 3,
    all_points: bool = True,
    budget: Optional[int] = None,
) -> Dict[str, object]:
    """Render-head forward + backward time and peak memory against the number of LiDAR rays.

    The render head is built from `cfg` (MODEL.RENDER_HEAD: samples per ray, MLPs) on the
    config's volume grid. Its field volume F~ (B = 1, MODEL.RENDER_HEAD.FIELD_CONV_CHANNELS
    channels, or MODEL.FUSION.OUT_CHANNELS without f_3D) is a random leaf tensor that requires
    gradients, so the timing covers ray sampling along the rays, trilinear interpolation, the
    SDF MLP, NeuS weights, the losses and their backward down to the volume, but no encoder.
    On CPU the process's allocator is switched to unmapping every block of 128 KiB or more when
    it is freed (glibc `mallopt`), so that the resident size measures the memory tensors hold;
    the timings include the page faults that costs (as with large blocks by default).
    The rays go through the LiDAR points of the first sample of DATASETS.TRAIN (candidates of
    the ray samplers: key-frame points inside the range, farther than
    MODEL.RAY_SAMPLER.MIN_DISTANCE), drawn uniformly (with replacement beyond the candidates).

    Args:
        ray_counts: LiDAR ray counts to measure.
        num_iterations: timed repetitions per count (median; one untimed warm-up first, one
            more step for the memory).
        all_points: also render every candidate point once.
        budget: the sampled budget the all-points row is compared with (default
            MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS).

    Returns:
        dict with `rows` (per count: `rays`, `samples_per_ray`, `seconds`, `cpu_seconds`,
        `peak_memory_mb` (increase over the state before the step: CPU resident set or CUDA
        allocated), `ray_samples_per_second`), `num_candidates`, and with `all_points`,
        `all_points_vs_budget` {"time": ratio, "memory": ratio} of the all-points row to the row
        of `budget` rays.
    """
    from clap.modeling.render_head.rays import lidar_ray_candidates, lidar_rays

    device = torch.device(cfg.MODEL.DEVICE)
    if device.type == "cpu":
        return_large_blocks_on_free()
    head, volume, batch = render_head_inputs(cfg, device)
    candidates = lidar_ray_candidates(
        batch, tuple(cfg.INPUT.POINT_CLOUD_RANGE), cfg.MODEL.RAY_SAMPLER.MIN_DISTANCE
    )
    rows_available = candidates.nonzero(as_tuple=True)[0]
    num_candidates = int(rows_available.numel())
    if num_candidates == 0:
        raise ValueError("the first training sample has no LiDAR point to cast rays through")
    samples_per_ray = head.num_uniform_samples + head.num_importance_samples
    budget = cfg.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS if budget is None else budget

    counts = [(int(n), f"{int(n)}") for n in ray_counts]
    if all_points:
        counts.append((num_candidates, "all points"))
    if budget not in [n for n, _ in counts]:
        counts.append((budget, f"{budget}"))

    def render_step(index: torch.Tensor) -> None:
        rays = {"lidar": lidar_rays(batch, index.view(1, -1))}
        outputs = head.render(volume, rays)
        loss = sum(v for k, v in outputs.items() if k.startswith("loss_"))
        volume.grad = None
        head.zero_grad(set_to_none=True)
        loss.backward()
        synchronize(device)

    generator = torch.Generator().manual_seed(0)  # which rays of each count
    rows = []
    for count, label in counts:
        if count == num_candidates and label == "all points":
            index = rows_available
        elif count <= num_candidates:
            index = rows_available[torch.randperm(num_candidates, generator=generator)[:count]]
        else:
            index = rows_available[torch.randint(num_candidates, (count,), generator=generator)]
        index = index.to(device)
        render_step(index)  # warm-up
        seconds, cpu_seconds = [], []
        for _ in range(num_iterations):
            start, cpu_start = time.perf_counter(), time.process_time()
            render_step(index)
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
        # Memory in a step of its own: PeakMemory first hands freed memory back to the system,
        # which would make the timed steps pay for fresh pages.
        with PeakMemory(device) as memory:
            render_step(index)
        row = {
            "label": label,
            "rays": count,
            "samples_per_ray": samples_per_ray,
            "seconds": median(seconds),
            "cpu_seconds": median(cpu_seconds),
            "peak_memory_mb": memory.increase_bytes / 2**20,
        }
        row["ray_samples_per_second"] = count * samples_per_ray / row["seconds"]
        rows.append(row)
        logger.info(f"ray scaling: {label} rays, {row['seconds']:.3f} s")
    result: Dict[str, object] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "volume_shape": list(volume.shape[1:]),
        "num_candidates": num_candidates,
        "budget": budget,
        "rows": rows,
    }
    if all_points:
        everything = next(r for r in rows if r["label"] == "all points")
        reference = next(r for r in rows if r["rays"] == budget and r["label"] != "all points")
        result["all_points_vs_budget"] = {
            "time": everything["seconds"] / reference["seconds"],
            "cpu_time": everything["cpu_seconds"] / reference["cpu_seconds"],
            "memory": everything["peak_memory_mb"] / max(reference["peak_memory_mb"], 1e-9),
        }
    return result
