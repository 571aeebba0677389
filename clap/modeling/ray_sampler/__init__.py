from .build import RAY_SAMPLER_REGISTRY, build_ray_sampler

__all__ = ["RAY_SAMPLER_REGISTRY", "build_ray_sampler"]
