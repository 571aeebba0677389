"""Geometric curvature sampling: weights from the measured point cloud, usable from step 0."""

from typing import Callable, Optional

import numpy as np
import torch
from scipy.spatial import cKDTree

from clap.config import configurable

from .build import RAY_SAMPLER_REGISTRY
from .common import candidate_rows
from .curvature import WeightedRaySampler

__all__ = ["surface_variation", "GeometricCurvature"]


def surface_variation(points: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """Surface variation lambda_min / (lambda_1 + lambda_2 + lambda_3) of local neighbourhoods.

    The eigenvalues are those of the covariance of the k nearest neighbours (among `points`,
    the query itself included when it belongs to them) of each query: 0 on a plane or a line,
    up to 1/3 for an isotropic blob (corners, edges, vegetation, small objects).

    Args:
        points: (N, 3) the cloud, meters.
        queries: (M, 3) where to evaluate, meters.
        k: neighbours (clipped to N).

    Returns:
        (M,) surface variation in [0, 1/3], on the device of `queries`.
    """
    if points.shape[0] == 0 or queries.shape[0] == 0:
        return queries.new_zeros(queries.shape[0])
    k = max(1, min(int(k), points.shape[0]))
    cloud = points.detach().to("cpu", torch.float64).numpy()
    query = queries.detach().to("cpu", torch.float64).numpy()
    _, neighbours = cKDTree(cloud).query(query, k=k)
    neighbours = np.asarray(neighbours).reshape(query.shape[0], k)
    local = torch.from_numpy(cloud[neighbours])  # (M, k, 3)
    centred = local - local.mean(dim=1, keepdim=True)
    covariance = centred.transpose(1, 2) @ centred / k
    eigenvalues = torch.linalg.eigvalsh(covariance).clamp_min(0.0)  # ascending
    variation = eigenvalues[:, 0] / eigenvalues.sum(dim=1).clamp_min(1e-12)
    return variation.to(device=queries.device, dtype=queries.dtype)


@RAY_SAMPLER_REGISTRY.register()
class GeometricCurvature(WeightedRaySampler):
    """Curvature sampling on the measured geometry instead of the neural field.

    Weight of a candidate point: the surface variation of its `knn` nearest neighbours among all
    points of its sample (sweeps included), see `surface_variation`. Needs no trained field, so
    it has no warm-up; pixels come from the blurred projections like `Curvature`.

    Args (besides those of `WeightedRaySampler`):
        knn: neighbours of the local PCA.
    """

    @configurable
    def __init__(self, *, knn: int = 32, **weighted):
        super().__init__(warmup_epochs=0, **weighted)
        if knn < 3:
            raise ValueError(f"MODEL.RAY_SAMPLER.KNN must be at least 3, got {knn}")
        self.knn = knn

    @classmethod
    def from_config(cls, cfg):
        return {**super().from_config(cfg), "knn": cfg.MODEL.RAY_SAMPLER.KNN}

    def point_weights(
        self, batch: dict, candidates: torch.Tensor, field: Optional[Callable] = None
    ) -> torch.Tensor:
        """(N,) surface variation of each candidate point (0 for the other rows)."""
        points = batch["points"]
        weights = points.new_zeros(points.shape[0])
        for sample, rows in enumerate(candidate_rows(batch, candidates, required=False)):
            cloud = points[batch["points_batch"] == sample, :3]
            weights[rows] = surface_variation(cloud, points[rows, :3], self.knn)
        return weights
