"""Which LiDAR rays a CLAP model's ray sampler picks: how often they end on an annotated object
compared with uniform sampling (docs/rendering.md, "Which rays curvature sampling picks").

Curvature sampling is meant to spend the render budget where the surface bends; objects (cars,
pedestrians, ...) bend more than the road and walls. `object_share_of_rays` runs the model's own
sampler on every frame of a test set and counts the chosen rays whose LiDAR point lies inside a
ground-truth box, against the share of such points among all the candidates.
"""

import math
from typing import Iterable, Optional

import numpy as np
import torch

from clap.benchmark.timing import to_device
from clap.data.box_ops import points_in_boxes
from clap.modeling.meta_arch.clap import CLAP

from .rendering import _SEED_STRIDE

__all__ = ["object_share_of_rays", "points_on_objects"]


def points_on_objects(batch: dict) -> torch.Tensor:
    """(N,) bool over the rows of `batch["points"]`: the point lies inside (faces included) one
    of its own sample's `batch["gt_boxes"]` (docs/data.md; both in the augmented LiDAR frame)."""
    if "gt_boxes" not in batch:
        raise ValueError("the batch has no gt_boxes: object shares need annotated frames")
    points, sample_of_point = batch["points"], batch["points_batch"]
    on_object = np.zeros(points.shape[0], dtype=bool)
    for sample, boxes in enumerate(batch["gt_boxes"]):
        rows = (sample_of_point == sample).nonzero(as_tuple=True)[0]
        boxes = boxes.detach().cpu().numpy().reshape(-1, 9)
        if rows.numel() == 0 or boxes.shape[0] == 0:
            continue
        inside = points_in_boxes(points[rows, :3].detach().cpu().numpy(), boxes).any(axis=1)
        on_object[rows.cpu().numpy()] = inside
    return torch.from_numpy(on_object).to(points.device)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def object_share_of_rays(
    model: CLAP, data_loader: Iterable[dict], max_batches: int = 0, seed: int = 0
) -> dict:
    """How much more often than uniform sampling the model's ray sampler picks LiDAR rays whose
    point lies on an annotated object.

    For every batch the encoders run without gradients, in eval mode (no masking), giving the
    field volume `render_head.prepare_volume(fused)`; the model's own sampler then chooses the
    LiDAR rays with `render_head.field_function(field_volume)` as its field, with gradients
    enabled (the curvature sampler differentiates the field w.r.t. the points; the field reads
    a detached volume, so nothing reaches the weights). A sampler with a `use_uniform` flag (the
    weighted samplers' warm-up) has it forced to False: the weighted choice is measured however
    far the checkpoint's warm-up got. Batch b is drawn with the torch RNG seeded with
    `seed * 100003 + b` right before the draw (as in `evaluate_rendering`). The training mode,
    the sampler's flag and the caller's RNG state are restored afterwards. Nothing is rendered.

    A point is on an object when it lies inside one of its frame's `gt_boxes` (M, 9) (x, y, z
    centre, l, w, h in meters, yaw, vx, vy, LiDAR frame; `points_in_boxes`, faces inside). The
    candidates are `sampler.candidates(batch)` (key-frame points inside
    INPUT.POINT_CLOUD_RANGE, farther than MODEL.RAY_SAMPLER.MIN_DISTANCE from the sensor), the
    rows of `batch["points"]` the sampler may cast rays through.

    Every frame gets the same number N_L of rays (`lidar_ray_index` (B, N_L)), so the shares are
    per-frame shares averaged over the frames, which keeps the three comparable:

    - `candidate_object_share`: the fraction of a frame's candidate points that are on objects,
      the share a uniform choice of rays hits on average,
    - `sampled_object_share`: the fraction of the chosen rays (`lidar_ray_index`) whose point is
      on an object,
    - `enrichment`: sampled / candidate share (1: no better than uniform; > 1: objects are
      favoured),
    - `weight_object_share`: the fraction of a frame's `point_weights` mass on object points, the
      share one ray drawn from the weights hits (a frame whose weights are all 0 is drawn
      uniformly and counts with its candidate share); None when the sampler returns no weights,
    - `num_frames`, `num_candidates` (candidate points), `num_object_candidates`, `num_rays`
      (chosen rays, N_L per frame), `num_object_rays`: counts over all frames.
    A share over nothing (no frame, no ray) is NaN.

    Args:
        model: a CLAP model (`clap.modeling.meta_arch.clap.CLAP`) with its ray sampler.
        data_loader: batches as in docs/data.md with `gt_boxes`, e.g.
            `build_test_loader(cfg, name)`; moved to the model's device.
        max_batches: > 0: only the first this many batches.
        seed: picks the rays.

    Raises:
        TypeError: `model` is not a CLAP model.
    """
    if not isinstance(model, CLAP):
        raise TypeError(f"object_share_of_rays needs a CLAP model, got {type(model).__name__}")
    device = next(model.parameters()).device
    sampler = model.ray_sampler
    has_flag = hasattr(sampler, "use_uniform")
    flag = sampler.use_uniform if has_flag else None
    was_training = model.training
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    candidate_share_sum = sampled_share_sum = weight_share_sum = 0.0
    num_frames = num_weighted_frames = 0
    num_candidates = num_object_candidates = num_rays = num_object_rays = 0
    model.eval()
    if has_flag:
        sampler.use_uniform = False
    try:
        for batch_index, batch in enumerate(data_loader):
            if 0 < max_batches <= batch_index:
                break
            batch = to_device(batch, device)
            with torch.no_grad():
                volumes = model.encode(batch)
                field_volume = model.render_head.prepare_volume(volumes["fused"])
            field = model.render_head.field_function(field_volume)
            torch.manual_seed(seed * _SEED_STRIDE + batch_index)
            with torch.enable_grad():
                sampled = sampler.sample(batch, field)
            candidates = sampler.candidates(batch)
            on_object = points_on_objects(batch)
            ray_index = sampled["lidar_ray_index"]
            weights: Optional[torch.Tensor] = sampled.get("point_weights")
            for sample in range(int(batch["batch_size"])):
                rows = ((batch["points_batch"] == sample) & candidates).nonzero(as_tuple=True)[0]
                frame_candidates = rows.numel()
                frame_objects = int(on_object[rows].sum())
                candidate_share = _ratio(frame_objects, frame_candidates)
                candidate_share_sum += candidate_share
                num_candidates += frame_candidates
                num_object_candidates += frame_objects
                if ray_index is not None:
                    rays_on_object = int(on_object[ray_index[sample]].sum())
                    sampled_share_sum += _ratio(rays_on_object, ray_index.shape[1])
                    num_rays += ray_index.shape[1]
                    num_object_rays += rays_on_object
                if weights is not None:
                    mass = float(weights[rows].double().sum())
                    object_mass = float(weights[rows][on_object[rows]].double().sum())
                    weight_share_sum += object_mass / mass if mass > 0 else candidate_share
                    num_weighted_frames += 1
                num_frames += 1
    finally:
        model.train(was_training)
        if has_flag:
            sampler.use_uniform = flag
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
    candidate_share = _ratio(candidate_share_sum, num_frames)
    sampled_share = _ratio(sampled_share_sum, num_frames) if num_rays else math.nan
    return {
        "candidate_object_share": candidate_share,
        "sampled_object_share": sampled_share,
        "enrichment": _ratio(sampled_share, candidate_share),
        "weight_object_share": (
            weight_share_sum / num_weighted_frames if num_weighted_frames else None
        ),
        "num_frames": num_frames,
        "num_candidates": num_candidates,
        "num_object_candidates": num_object_candidates,
        "num_rays": num_rays,
        "num_object_rays": num_object_rays,
    }
