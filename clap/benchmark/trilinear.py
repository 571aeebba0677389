"""The trilinear sampler against grid_sample (`benchmark_trilinear`)."""

import time
from typing import Dict, List, Sequence, Tuple

import torch

from .timing import median, synchronize

__all__ = ["benchmark_trilinear"]

def benchmark_trilinear(
    volume_shape: Sequence[int] = (1, 32, 5, 180, 180),
    num_points: int = 8192 * 96,
    num_iterations: int = 5,
    device: str = "cpu",
) -> Dict[str, object]:
    """`clap.layers.trilinear.trilinear_sample` against `grid_sample` at equal size.

    Both interpolate a random (B, C, Z, Y, X) volume at `num_points` random points (uniform in
    [-1.1, 1.1]^3, border padding, align_corners=True) and back-propagate a random weighting of
    the features to the volume and the points. A third case times what the render head does on
    camera rays: the trilinear field's normal by `autograd.grad(create_graph=True)` and a loss
    on it back to the volume (grid_sample cannot do this). The cases alternate within each of
    `num_iterations` rounds (after one warm-up round); medians are reported.

    Returns:
        dict: `volume_shape`, `num_points`, per case ("grid_sample", "trilinear",
        "trilinear_double_backward") {"seconds", "cpu_seconds"} (calling thread), and
        `ratio` / `cpu_ratio` of trilinear to grid_sample forward + backward.
    """
    import torch.nn.functional as F

    from clap.layers.trilinear import trilinear_sample

    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(tuple(volume_shape), generator=generator).to(device)
    batch = volume.shape[0]
    points = (torch.rand(batch, num_points, 3, generator=generator) * 2.2 - 1.1).to(device)
    weighting = torch.randn(batch, num_points, volume.shape[1], generator=generator).to(device)

    def grid_sample_step():
        v, p = volume.clone().requires_grad_(True), points.clone().requires_grad_(True)
        grid = p.view(batch, num_points, 1, 1, 3)
        out = F.grid_sample(v, grid, mode="bilinear", padding_mode="border", align_corners=True)
        features = out.view(batch, volume.shape[1], num_points).transpose(1, 2)
        (features * weighting).sum().backward()

    def trilinear_step():
        v, p = volume.clone().requires_grad_(True), points.clone().requires_grad_(True)
        (trilinear_sample(v, p) * weighting).sum().backward()

    def double_backward_step():
        v, p = volume.clone().requires_grad_(True), points.clone().requires_grad_(True)
        value = (trilinear_sample(v, p) * weighting).sum(-1)
        (normal,) = torch.autograd.grad(value.sum(), p, create_graph=True)
        (normal.square().sum() + value.sum()).backward()

    cases = {
        "grid_sample": grid_sample_step,
        "trilinear": trilinear_step,
        "trilinear_double_backward": double_backward_step,
    }
    times: Dict[str, List[Tuple[float, float]]] = {name: [] for name in cases}
    for round_index in range(num_iterations + 1):
        for name, step in cases.items():
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.thread_time()
            step()
            synchronize(device)
            if round_index > 0:
                times[name].append((time.perf_counter() - start, time.thread_time() - cpu_start))
    result: Dict[str, object] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "volume_shape": list(volume_shape),
        "num_points": num_points,
    }
    for name, samples in times.items():
        result[name] = {
            "seconds": median([wall for wall, _ in samples]),
            "cpu_seconds": median([cpu for _, cpu in samples]),
        }
    result["ratio"] = result["trilinear"]["seconds"] / result["grid_sample"]["seconds"]
    result["cpu_ratio"] = result["trilinear"]["cpu_seconds"] / result["grid_sample"]["cpu_seconds"]
    return result
