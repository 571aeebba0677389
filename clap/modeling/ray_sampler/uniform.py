"""Uniform ray sampling."""

from .build import RAY_SAMPLER_REGISTRY
from .common import RaySamplerBase, uniform_sample

__all__ = ["Uniform"]


@RAY_SAMPLER_REGISTRY.register()
class Uniform(RaySamplerBase):
    """N_L LiDAR rays uniformly among each sample's candidate points, N_C pixels uniformly over
    each image (distinct whenever there are enough). See `RaySamplerBase` for the arguments."""

    def sample(self, batch: dict, field=None) -> dict:
        """See `RAY_SAMPLER_REGISTRY`; `field` is not used."""
        return uniform_sample(
            batch, self.candidates(batch), self.num_lidar_rays, self.num_pixels_per_camera
        )
