"""Pieces shared by the ray samplers: candidates, exact-budget draws, weight maps."""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from clap.config import configurable
from clap.modeling.render_head.rays import lidar_ray_candidates, project_points

__all__ = [
    "RaySamplerBase",
    "candidate_rows",
    "draw",
    "uniform_indices",
    "image_size_of",
    "uniform_sample",
    "weighted_lidar_rays",
    "weighted_pixels",
    "point_weight_maps",
    "gaussian_blur",
]


class RaySamplerBase:
    """Budgets and LiDAR-ray candidates shared by every ray sampler.

    A subclass adds its own keyword arguments and passes the rest (`**base`) on to this
    constructor, and extends `from_config` with `{**super().from_config(cfg), ...}`.

    Args:
        num_lidar_rays: N_L, LiDAR rays per sample (0: none).
        num_pixels_per_camera: N_C, pixels per camera (0: none).
        point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max) meters, the scene box;
            only points inside it are candidates. None: no limit.
        min_distance: only points farther than this (meters, horizontally) from the sensor are
            candidates.
    """

    @configurable
    def __init__(
        self,
        *,
        num_lidar_rays: int,
        num_pixels_per_camera: int,
        point_cloud_range: Optional[Tuple[float, ...]] = None,
        min_distance: float = 0.0,
    ):
        if num_lidar_rays < 0 or num_pixels_per_camera < 0:
            raise ValueError(
                "MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS and NUM_PIXELS_PER_CAMERA must be >= 0, got "
                f"{num_lidar_rays} and {num_pixels_per_camera}"
            )
        self.num_lidar_rays = num_lidar_rays
        self.num_pixels_per_camera = num_pixels_per_camera
        self.point_cloud_range = point_cloud_range
        self.min_distance = min_distance

    @classmethod
    def from_config(cls, cfg) -> dict:
        """The constructor arguments of `RaySamplerBase` from a config."""
        sampler = cfg.MODEL.RAY_SAMPLER
        return {
            "num_lidar_rays": sampler.NUM_LIDAR_RAYS,
            "num_pixels_per_camera": sampler.NUM_PIXELS_PER_CAMERA,
            "point_cloud_range": tuple(cfg.INPUT.POINT_CLOUD_RANGE),
            "min_distance": sampler.MIN_DISTANCE,
        }

    def candidates(self, batch: dict) -> torch.Tensor:
        """(N,) bool: the points LiDAR rays may be cast through (`lidar_ray_candidates`)."""
        return lidar_ray_candidates(batch, self.point_cloud_range, self.min_distance)


def candidate_rows(
    batch: dict, candidates: torch.Tensor, max_per_sample: int = 0, required: bool = True
) -> List[torch.Tensor]:
    """Per sample, the rows of `batch["points"]` where `candidates` (N,) is True.

    Args:
        max_per_sample: > 0: at most this many rows per sample, a uniformly drawn subset (in
            random order); 0: all of them (in order).
        required: raise a ValueError naming the sample when one has no candidate (no exact ray
            budget is possible); False: give it an empty tensor.
    """
    rows = []
    for sample in range(int(batch["batch_size"])):
        sample_rows = ((batch["points_batch"] == sample) & candidates).nonzero(as_tuple=True)[0]
        if sample_rows.numel() == 0 and required:
            raise ValueError(
                f"sample {sample} of the batch has no LiDAR point to cast rays through (key-frame "
                "points, time lag 0, inside INPUT.POINT_CLOUD_RANGE and farther than "
                "MODEL.RAY_SAMPLER.MIN_DISTANCE from the sensor)"
            )
        if max_per_sample > 0:
            subset = torch.randperm(sample_rows.numel(), device=sample_rows.device)
            sample_rows = sample_rows[subset[:max_per_sample]]
        rows.append(sample_rows)
    return rows


def uniform_indices(size: int, num: int, device) -> torch.Tensor:
    """`num` indices in [0, size): distinct when size >= num, else drawn with replacement."""
    if size <= 0:
        raise ValueError(f"cannot draw {num} indices from an empty set")
    if size >= num:
        return torch.randperm(size, device=device)[:num]
    return torch.randint(size, (num,), device=device)


def draw(weights: torch.Tensor, num: int) -> torch.Tensor:
    """Draw exactly `num` indices into `weights` (M,) with probability proportional to weight.

    Without replacement when at least `num` weights are positive, with replacement otherwise;
    uniformly (`uniform_indices`) when no weight is positive and finite.
    """
    weights = torch.nan_to_num(weights.detach().float(), nan=0.0, posinf=0.0).clamp_min(0.0)
    positive = int((weights > 0).sum())
    if positive == 0:
        return uniform_indices(weights.shape[0], num, weights.device)
    return torch.multinomial(weights, num, replacement=positive < num)


def image_size_of(batch: dict) -> Optional[Tuple[int, int]]:
    """(H, W) of the batch's images, None when the batch has no images."""
    images = batch.get("images")
    if images is None:
        return None
    return int(images.shape[-2]), int(images.shape[-1])


def _pixel_uv(flat_index: torch.Tensor, width: int) -> torch.Tensor:
    """Flat pixel indices v * W + u -> (..., 2) long (u, v)."""
    return torch.stack([flat_index % width, flat_index // width], dim=-1)


def uniform_sample(
    batch: dict, candidates: torch.Tensor, num_lidar_rays: int, num_pixels_per_camera: int
) -> dict:
    """Uniform choice: `num_lidar_rays` candidate points per sample, `num_pixels_per_camera`
    pixels per camera (distinct when there are enough).

    Returns the sampler output (see `RAY_SAMPLER_REGISTRY`) without weights.
    """
    lidar_ray_index = None
    if num_lidar_rays > 0:
        rows = candidate_rows(batch, candidates)
        lidar_ray_index = torch.stack(
            [r[uniform_indices(r.numel(), num_lidar_rays, r.device)] for r in rows]
        )
    pixel_uv = None
    image_size = image_size_of(batch)
    if num_pixels_per_camera > 0 and image_size is not None:
        height, width = image_size
        batch_size, num_cameras = batch["images"].shape[:2]
        device = batch["images"].device
        flat = [
            uniform_indices(height * width, num_pixels_per_camera, device)
            for _ in range(batch_size * num_cameras)
        ]
        pixel_uv = _pixel_uv(torch.stack(flat), width).view(
            batch_size, num_cameras, num_pixels_per_camera, 2
        )
    return {
        "lidar_ray_index": lidar_ray_index,
        "pixel_uv": pixel_uv,
        "candidates": candidates,
        "point_weights": None,
        "pixel_weights": None,
    }


def weighted_lidar_rays(
    batch: dict, candidates: torch.Tensor, point_weights: torch.Tensor, num: int
) -> torch.Tensor:
    """(B, num) candidate rows of `batch["points"]` drawn per sample in proportion to
    `point_weights` (N,)."""
    rows = candidate_rows(batch, candidates)
    return torch.stack([r[draw(point_weights[r], num)] for r in rows])


def weighted_pixels(pixel_weights: torch.Tensor, num: int) -> torch.Tensor:
    """(B, N_cam, num, 2) pixels (u, v) drawn per camera from (B, N_cam, H, W) weight maps."""
    batch_size, num_cameras, _, width = pixel_weights.shape
    flat = pixel_weights.flatten(2)
    chosen = [draw(flat[b, c], num) for b in range(batch_size) for c in range(num_cameras)]
    return _pixel_uv(torch.stack(chosen), width).view(batch_size, num_cameras, num, 2)


def gaussian_blur(maps: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (..., H, W) maps (zero padding, same size); the kernel is
    normalised, so away from the borders the total weight is kept."""
    if kernel_size % 2 != 1:
        raise ValueError(f"MODEL.RAY_SAMPLER.BLUR_KERNEL must be odd, got {kernel_size}")
    if kernel_size == 1 or sigma <= 0:
        return maps
    offsets = torch.arange(kernel_size, device=maps.device, dtype=maps.dtype) - kernel_size // 2
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    lead, (height, width) = maps.shape[:-2], maps.shape[-2:]
    flat = maps.reshape(-1, 1, height, width)
    pad = kernel_size // 2
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1), padding=(0, pad))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1), padding=(pad, 0))
    return flat.view(*lead, height, width)


def point_weight_maps(
    batch: dict, point_weights: torch.Tensor, blur_kernel: int, blur_sigma: float
) -> torch.Tensor:
    """Project per-point weights into every image and blur them.

    Each point with a positive weight adds it to the pixel it projects into (in front of the
    camera and inside the image), then every map is Gaussian-blurred.

    Args:
        batch: a batch with `points`, `points_batch`, `lidar2img`, `images`.
        point_weights: (N,) non-negative weight per row of `batch["points"]`.

    Returns:
        (B, N_cam, H, W) pixel weight maps.
    """
    height, width = image_size_of(batch)
    batch_size, num_cameras = batch["images"].shape[:2]
    maps = point_weights.new_zeros(batch_size, num_cameras * height * width)
    for sample in range(batch_size):
        rows = ((batch["points_batch"] == sample) & (point_weights > 0)).nonzero(as_tuple=True)[0]
        uv, _, visible = project_points(
            batch["points"][rows, :3], batch["lidar2img"][sample], (height, width)
        )
        camera, point = visible.nonzero(as_tuple=True)
        pixel = torch.round(uv[camera, point]).long()
        flat = (camera * height + pixel[:, 1]) * width + pixel[:, 0]
        maps[sample].index_add_(0, flat, point_weights[rows[point]])
    maps = maps.view(batch_size, num_cameras, height, width)
    return gaussian_blur(maps, blur_kernel, blur_sigma)
