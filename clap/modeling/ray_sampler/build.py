from fvcore.common.registry import Registry

RAY_SAMPLER_REGISTRY = Registry("RAY_SAMPLER")
RAY_SAMPLER_REGISTRY.__doc__ = """
Registry for ray samplers: which LiDAR rays and camera pixels are rendered in a step.
(Not to be confused with data-loader samplers.)

A registered class is called as `cls(cfg)` and returns an object with
`sample(batch: dict, field=None) -> dict` giving, per sample, exactly `num_lidar_rays` LiDAR
ray indices and `num_pixels_per_camera` pixels per camera; `field` is an optional callable
(points (N, 3) meters -> SDF (N,)) that curvature-based samplers differentiate.
"""


def build_ray_sampler(cfg):
    """Build `cfg.MODEL.RAY_SAMPLER.NAME`."""
    return RAY_SAMPLER_REGISTRY.get(cfg.MODEL.RAY_SAMPLER.NAME)(cfg)
