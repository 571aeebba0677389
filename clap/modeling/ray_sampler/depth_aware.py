"""UniPAD's depth-aware pixel sampling: pixels where LiDAR points project, a pixel grid for the
rest."""

import math

import torch

from clap.config import configurable
from clap.modeling.render_head.rays import project_points

from .build import RAY_SAMPLER_REGISTRY
from .common import (
    RaySamplerBase,
    candidate_rows,
    image_size_of,
    uniform_indices,
    uniform_sample,
)

__all__ = ["DepthAware"]


@RAY_SAMPLER_REGISTRY.register()
class DepthAware(RaySamplerBase):
    """Pixels at projected LiDAR points, filled up from a regular pixel grid (UniPAD).

    Per camera: the pixels where candidate points (key-frame points farther than `min_distance`
    from the sensor, UniPAD: 3 m) land in the image; N_C of them are drawn without replacement.
    When fewer exist, all are taken and the rest comes from a grid of stride `grid_stride`
    pixels below the top `sky_fraction` of the image (without replacement while the grid is
    large enough). LiDAR rays are drawn uniformly. UniPAD uses N_C = 512.

    Args (besides those of `RaySamplerBase`, with `min_distance` 3 m by default):
        grid_stride: pixels between fill-grid pixels.
        sky_fraction: top fraction of the image rows left out of the fill grid.
    """

    @configurable
    def __init__(
        self, *, min_distance: float = 3.0, grid_stride: int = 4, sky_fraction: float = 0.4, **base
    ):
        super().__init__(min_distance=min_distance, **base)
        if grid_stride < 1 or not 0.0 <= sky_fraction < 1.0:
            raise ValueError(
                "DEPTH_AWARE_GRID_STRIDE must be >= 1 and DEPTH_AWARE_SKY_FRACTION in [0, 1), "
                f"got {grid_stride} and {sky_fraction}"
            )
        self.grid_stride = grid_stride
        self.sky_fraction = sky_fraction

    @classmethod
    def from_config(cls, cfg):
        sampler = cfg.MODEL.RAY_SAMPLER
        return {
            **super().from_config(cfg),
            "grid_stride": sampler.DEPTH_AWARE_GRID_STRIDE,
            "sky_fraction": sampler.DEPTH_AWARE_SKY_FRACTION,
        }

    def _grid_pixels(self, height: int, width: int, device) -> torch.Tensor:
        """(G, 2) long (u, v) of the fill grid."""
        rows = torch.arange(math.ceil(self.sky_fraction * height), height, self.grid_stride)
        columns = torch.arange(0, width, self.grid_stride)
        v, u = torch.meshgrid(rows, columns, indexing="ij")
        return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1).to(device)

    def sample(self, batch: dict, field=None) -> dict:
        """See `RAY_SAMPLER_REGISTRY`; `field` is not used."""
        candidates = self.candidates(batch)
        result = uniform_sample(batch, candidates, self.num_lidar_rays, 0)
        image_size = image_size_of(batch)
        num = self.num_pixels_per_camera
        if num <= 0 or image_size is None:
            return result
        height, width = image_size
        device = batch["images"].device
        grid = self._grid_pixels(height, width, device)
        per_sample = []
        for sample, rows in enumerate(candidate_rows(batch, candidates)):
            points = batch["points"][rows, :3]
            uv, _, visible = project_points(points, batch["lidar2img"][sample], image_size)
            per_camera = []
            for camera in range(visible.shape[0]):
                pixels = torch.round(uv[camera, visible[camera]]).long()
                if pixels.shape[0] >= num:
                    pixels = pixels[uniform_indices(pixels.shape[0], num, device)]
                missing = num - pixels.shape[0]
                if missing > 0:
                    fill = grid[uniform_indices(grid.shape[0], missing, device)]
                    pixels = torch.cat([pixels, fill], dim=0)
                per_camera.append(pixels)
            per_sample.append(torch.stack(per_camera))
        result["pixel_uv"] = torch.stack(per_sample)
        return result
