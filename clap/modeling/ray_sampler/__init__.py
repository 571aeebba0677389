from .build import RAY_SAMPLER_REGISTRY, build_ray_sampler
from .curvature import Curvature, field_curvature
from .depth_aware import DepthAware
from .geometric_curvature import GeometricCurvature, surface_variation
from .uniform import Uniform

__all__ = [
    "RAY_SAMPLER_REGISTRY", "build_ray_sampler", "Curvature", "DepthAware", "GeometricCurvature",
    "Uniform", "field_curvature", "surface_variation",
]
