"""Curvature sampling (CLAP): render where the field's surface bends."""

from abc import ABC, abstractmethod
from typing import Callable, Optional

import torch

from clap.config import configurable

from .build import RAY_SAMPLER_REGISTRY
from .common import (
    RaySamplerBase,
    candidate_rows,
    image_size_of,
    point_weight_maps,
    uniform_sample,
    weighted_lidar_rays,
    weighted_pixels,
)

__all__ = ["field_curvature", "WeightedRaySampler", "Curvature"]

_REDUCTIONS = ("norm", "mean")


def _tangent_basis(unit_normal: torch.Tensor):
    """Two unit vectors (N, 3) that complete the unit normals (N, 3) to an orthonormal basis."""
    axis = torch.zeros_like(unit_normal)
    # the coordinate axis least parallel to the normal: x, unless the normal is mostly along x
    along_x = unit_normal[:, 0].abs() > 0.9
    axis[:, 0] = (~along_x).to(axis.dtype)
    axis[:, 1] = along_x.to(axis.dtype)
    first = torch.linalg.cross(axis, unit_normal, dim=-1)
    first = first / first.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return first, torch.linalg.cross(unit_normal, first, dim=-1)


def field_curvature(
    field: Callable,
    points: torch.Tensor,
    batch_index: torch.Tensor,
    reduction: str = "norm",
    chunk_size: int = 65536,
) -> torch.Tensor:
    """Curvature of an SDF field's level sets at points, detached.

    With the normal n = dSDF/dp and the unit normal n~ = n / |n|, the curvature is the Jacobian
    J = d n~ / dp (3 x 3 per point, J[k, j] = d n~_k / d p_j; for an exact SDF its eigenvalues
    are the two principal curvatures and 0). It is reduced per point to:

    - "norm": the Frobenius norm |J| (= sqrt(k1^2 + k2^2) for an exact SDF),
    - "mean": |mean of J's diagonal| = |trace J| / 3 (= |k1 + k2| / 3, the mean curvature).

    Both are invariant to rotations of the frame. Only the points are differentiated: no
    gradient reaches the field's parameters or its volume.

    Computation: J = P H / |n| with the Hessian H = dn/dp and the projection P = I - n~ n~^T on
    the tangent plane. For an orthonormal basis (t1, t2) of that plane, |J|^2 = (|H t1|^2 +
    |H t2|^2) / |n|^2 and trace J = (t1 . H t1 + t2 . H t2) / |n| (H and P are symmetric, and
    P n~ = 0), so two Hessian-vector products (a double backward each, along the tangents held
    constant) give both reductions; differentiating the three components of n~ would take three.

    Args:
        field: callable (points (M, 3) meters, batch_index (M,)) -> SDF (M,), twice
            differentiable w.r.t. the points.
        points: (N, 3) points, meters.
        batch_index: (N,) sample of each point.
        reduction: "norm" or "mean".
        chunk_size: points differentiated at once.

    Returns:
        (N,) non-negative weights, 1 / (the field's length unit per meter) (zero where the
        normal vanishes).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"MODEL.RAY_SAMPLER.CURVATURE_REDUCTION must be one of {_REDUCTIONS}, "
            f"got {reduction!r}"
        )
    weights = []
    for start in range(0, points.shape[0], chunk_size):
        with torch.enable_grad():
            chunk = points[start : start + chunk_size].detach().requires_grad_(True)
            sdf = field(chunk, batch_index[start : start + chunk_size])
            (normal,) = torch.autograd.grad(sdf.sum(), chunk, create_graph=True)
            length = normal.detach().norm(dim=-1)
            tangents = _tangent_basis(normal.detach() / length[:, None].clamp_min(1e-12))
            products = [torch.zeros_like(chunk)] * 2
            if normal.requires_grad:  # else the normal is constant: no curvature
                products = [
                    torch.autograd.grad(
                        (normal * t).sum(), chunk, retain_graph=k == 0, allow_unused=True
                    )[0]
                    for k, t in enumerate(tangents)
                ]
                products = [torch.zeros_like(chunk) if h is None else h for h in products]
        products = [h.detach() for h in products]
        if reduction == "norm":
            weight = (products[0].square().sum(-1) + products[1].square().sum(-1)).sqrt()
        else:
            weight = sum((t * h).sum(-1) for t, h in zip(tangents, products)).abs() / 3.0
        weight = weight / length
        weights.append(torch.nan_to_num(weight, nan=0.0, posinf=0.0))
    if not weights:
        return points.new_zeros(0)
    return torch.cat(weights)


class WeightedRaySampler(RaySamplerBase, ABC):
    """Draws LiDAR rays in proportion to per-point weights, and pixels from the blurred
    projections of those weights into each image.

    Subclasses define `point_weights(batch, candidates, field) -> (N,)`. While `use_uniform`
    is True (a warm-up hook sets it, see `warmup_epochs`) the sampler draws exactly like
    `Uniform`.

    Args (besides those of `RaySamplerBase`):
        blur_kernel, blur_sigma: Gaussian blur of the projected weights (pixels).
        warmup_epochs: epochs of uniform sampling a warm-up hook should apply.
    """

    def __init__(
        self, *, blur_kernel: int = 9, blur_sigma: float = 2.0, warmup_epochs: int = 0, **base
    ):
        super().__init__(**base)
        if blur_kernel < 1 or blur_kernel % 2 != 1:
            raise ValueError(f"MODEL.RAY_SAMPLER.BLUR_KERNEL must be odd, got {blur_kernel}")
        self.blur_kernel = blur_kernel
        self.blur_sigma = blur_sigma
        self.warmup_epochs = warmup_epochs
        self.use_uniform = False

    @classmethod
    def from_config(cls, cfg) -> dict:
        """Constructor arguments shared by the weighted samplers."""
        sampler = cfg.MODEL.RAY_SAMPLER
        return {
            **super().from_config(cfg),
            "blur_kernel": sampler.BLUR_KERNEL,
            "blur_sigma": sampler.BLUR_SIGMA,
        }

    @abstractmethod
    def point_weights(
        self, batch: dict, candidates: torch.Tensor, field: Optional[Callable]
    ) -> torch.Tensor:
        """(N,) non-negative weight per row of `batch["points"]`, 0 where not `candidates`."""

    def sample(self, batch: dict, field: Optional[Callable] = None) -> dict:
        """See `RAY_SAMPLER_REGISTRY`."""
        candidates = self.candidates(batch)
        if self.use_uniform:
            return uniform_sample(
                batch, candidates, self.num_lidar_rays, self.num_pixels_per_camera
            )
        weights = self.point_weights(batch, candidates, field).detach()
        result = {
            "lidar_ray_index": None,
            "pixel_uv": None,
            "candidates": candidates,
            "point_weights": weights,
            "pixel_weights": None,
        }
        if self.num_lidar_rays > 0:
            result["lidar_ray_index"] = weighted_lidar_rays(
                batch, candidates, weights, self.num_lidar_rays
            )
        if self.num_pixels_per_camera > 0 and image_size_of(batch) is not None:
            maps = point_weight_maps(batch, weights, self.blur_kernel, self.blur_sigma)
            result["pixel_weights"] = maps
            result["pixel_uv"] = weighted_pixels(maps, self.num_pixels_per_camera)
        return result


@RAY_SAMPLER_REGISTRY.register()
class Curvature(WeightedRaySampler):
    """CLAP's curvature sampling: weights from the curvature of the neural field's normals at
    the observed candidate LiDAR points, see `field_curvature`. Needs `field`; samples
    uniformly during the warm-up (`use_uniform`, the first `warmup_epochs` epochs).

    Args (besides those of `WeightedRaySampler`):
        reduction: "norm" or "mean", see `field_curvature`.
        chunk_size: points differentiated at once.
        max_points_per_sample: > 0: differentiate the field at most at this many candidate
            points per sample, a uniformly drawn subset (the others get weight 0, so rays are
            drawn in proportion to curvature within the subset); 0: at every candidate. It must
            be 0 or at least `num_lidar_rays`.
    """

    @configurable
    def __init__(
        self,
        *,
        reduction: str = "norm",
        chunk_size: int = 65536,
        max_points_per_sample: int = 0,
        warmup_epochs: int = 4,
        **weighted,
    ):
        super().__init__(warmup_epochs=warmup_epochs, **weighted)
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"MODEL.RAY_SAMPLER.CURVATURE_REDUCTION must be one of {_REDUCTIONS}, "
                f"got {reduction!r}"
            )
        if max_points_per_sample < 0 or 0 < max_points_per_sample < self.num_lidar_rays:
            raise ValueError(
                "MODEL.RAY_SAMPLER.CURVATURE_MAX_POINTS must be 0 or at least NUM_LIDAR_RAYS "
                f"({self.num_lidar_rays}), got {max_points_per_sample}"
            )
        self.reduction = reduction
        self.chunk_size = chunk_size
        self.max_points_per_sample = max_points_per_sample

    @classmethod
    def from_config(cls, cfg):
        sampler = cfg.MODEL.RAY_SAMPLER
        return {
            **super().from_config(cfg),
            "reduction": sampler.CURVATURE_REDUCTION,
            "chunk_size": sampler.CURVATURE_CHUNK_SIZE,
            "max_points_per_sample": sampler.CURVATURE_MAX_POINTS,
            "warmup_epochs": sampler.WARMUP_EPOCHS,
        }

    def point_weights(
        self, batch: dict, candidates: torch.Tensor, field: Optional[Callable]
    ) -> torch.Tensor:
        """(N,) curvature weight of each candidate point (0 for the other rows)."""
        if field is None:
            raise ValueError(
                "the Curvature ray sampler needs `field` (points (N, 3) m, batch_index (N,)) -> "
                "SDF (N,), e.g. NeuSRenderHead.field_function(field_volume), once "
                "`use_uniform` is off"
            )
        points = batch["points"]
        rows = torch.cat(
            candidate_rows(batch, candidates, self.max_points_per_sample, required=False)
        )
        weights = points.new_zeros(points.shape[0])
        weights[rows] = field_curvature(
            field,
            points[rows, :3],
            batch["points_batch"][rows].long(),
            self.reduction,
            self.chunk_size,
        ).to(weights.dtype)
        return weights
