"""Uniform ray sampling."""

from typing import Optional, Tuple

from clap.config import configurable

from .build import RAY_SAMPLER_REGISTRY
from .common import RaySamplerBase, uniform_sample

__all__ = ["Uniform"]


@RAY_SAMPLER_REGISTRY.register()
class Uniform(RaySamplerBase):
    """N_L LiDAR rays uniformly among each sample's candidate points, N_C pixels uniformly over
    each image (distinct whenever there are enough). See `RaySamplerBase` for the arguments."""

    @configurable
    def __init__(
        self,
        *,
        num_lidar_rays: int,
        num_pixels_per_camera: int,
        point_cloud_range: Optional[Tuple[float, ...]] = None,
        min_distance: float = 0.0,
    ):
        super().__init__(
            num_lidar_rays=num_lidar_rays,
            num_pixels_per_camera=num_pixels_per_camera,
            point_cloud_range=point_cloud_range,
            min_distance=min_distance,
        )

    @classmethod
    def from_config(cls, cfg):
        return cls.base_config(cfg)

    def sample(self, batch: dict, field=None) -> dict:
        """See `RAY_SAMPLER_REGISTRY`; `field` is not used."""
        return uniform_sample(
            batch, self.candidates(batch), self.num_lidar_rays, self.num_pixels_per_camera
        )
