"""Held-out rendering error of a CLAP model on uniformly drawn rays (docs/rendering.md).

Pre-trainings that chose their rays differently (uniform, curvature, depth-aware sampling) are
compared on the same rays: each batch's rays are drawn uniformly from a torch RNG seeded with
the batch index and `seed`, independently of the model.
"""

import math
from typing import Iterable

import torch

from clap.benchmark.timing import to_device
from clap.modeling.meta_arch.clap import CLAP
from clap.modeling.ray_sampler import Uniform
from clap.modeling.render_head.rays import build_rays

__all__ = ["evaluate_rendering"]

# Batch b is drawn with the seed `seed * _SEED_STRIDE + b`.
_SEED_STRIDE = 100003


class _SeededUniform(Uniform):
    """`Uniform` that seeds the torch RNG with `seed` right before each draw.

    The rays then depend only on the batch, the candidate rule and the seed: whatever the model
    ran before the sampler (its encoders, any random operation in them) does not reach the draw.
    """

    seed = 0

    def sample(self, batch: dict, field=None) -> dict:
        torch.manual_seed(self.seed)
        return super().sample(batch, field)


def evaluate_rendering(
    model: CLAP,
    data_loader: Iterable[dict],
    num_lidar_rays: int,
    num_pixels_per_camera: int,
    seed: int = 0,
    max_batches: int = 0,
) -> dict:
    """Render uniformly drawn LiDAR rays and pixels of every batch and measure the errors.

    The model runs in eval mode (no masking, rays sampled at fixed depths) without gradients
    (the render head takes the normals of the colour MLP itself); its ray sampler is replaced
    by a uniform one with the given budgets and the candidate rule (INPUT.POINT_CLOUD_RANGE,
    MODEL.RAY_SAMPLER.MIN_DISTANCE) of its own sampler. Batch b's rays are drawn with the torch
    RNG seeded with `seed * 100003 + b` right before the draw, so every model built from the
    same config sees the same rays of the same data. The sampler, the training mode and the
    caller's RNG state are restored afterwards; `model.last_step` holds the last batch.

    Args:
        model: a CLAP model (`clap.modeling.meta_arch.clap.CLAP`).
        data_loader: batches as in docs/data.md, e.g. `build_test_loader(cfg, name)`; moved to
            the model's device.
        num_lidar_rays: N_L, LiDAR rays per frame (0: none).
        num_pixels_per_camera: N_C, pixels per camera image (0: none).
        seed: picks the rays; models are comparable at equal seeds.
        max_batches: > 0: only the first this many batches.

    Returns:
        dict with
        - `range_l1_m`: mean |rendered range - measured range| (meters) over the LiDAR rays the
          render head could render (`lidar_valid`: the measured point inside the scene box),
        - `rgb_l1`: mean |rendered colour - pixel colour| over RGB channels in [0, 1] and the
          pixels whose ray crosses the scene box (`camera_valid`),
        - `num_lidar_rays`, `num_pixels`: the rays and pixels these means are taken over,
        - `num_frames`: frames evaluated.
        A mean over no ray (no LiDAR rays, or a head without colour MLP) is NaN.
    """
    if not isinstance(model, CLAP):
        raise TypeError(f"evaluate_rendering needs a CLAP model, got {type(model).__name__}")
    device = next(model.parameters()).device
    original_sampler = model.ray_sampler
    sampler = _SeededUniform(
        num_lidar_rays=num_lidar_rays,
        num_pixels_per_camera=num_pixels_per_camera,
        point_cloud_range=original_sampler.point_cloud_range,
        min_distance=original_sampler.min_distance,
    )
    was_training = model.training
    range_error_sum = rgb_error_sum = 0.0
    num_valid_rays = num_valid_pixels = num_frames = 0
    model.ray_sampler = sampler
    model.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for batch_index, batch in enumerate(data_loader):
                if 0 < max_batches <= batch_index:
                    break
                batch = to_device(batch, device)
                sampler.seed = seed * _SEED_STRIDE + batch_index
                with torch.no_grad():
                    model(batch)
                    rendered = model.last_step["rendered"]
                    rays = build_rays(batch, model.last_step["sampled"])
                if "lidar" in rays:
                    valid = rendered["lidar_valid"]
                    error = rendered["lidar_rendered_range"] - rays["lidar"]["target_range"]
                    range_error_sum += float(error[valid].abs().double().sum())
                    num_valid_rays += int(valid.sum())
                if "camera" in rays and "camera_rendered_rgb" in rendered:
                    valid = rendered["camera_valid"]
                    error = rendered["camera_rendered_rgb"] - rays["camera"]["target_rgb"]
                    rgb_error_sum += float(error[valid].abs().double().mean(dim=-1).sum())
                    num_valid_pixels += int(valid.sum())
                num_frames += int(batch["batch_size"])
    finally:
        model.ray_sampler = original_sampler
        model.train(was_training)
    return {
        "range_l1_m": range_error_sum / num_valid_rays if num_valid_rays else math.nan,
        "rgb_l1": rgb_error_sum / num_valid_pixels if num_valid_pixels else math.nan,
        "num_lidar_rays": num_valid_rays,
        "num_pixels": num_valid_pixels,
        "num_frames": num_frames,
    }
