from fvcore.common.registry import Registry

RAY_SAMPLER_REGISTRY = Registry("RAY_SAMPLER")
RAY_SAMPLER_REGISTRY.__doc__ = """
Registry for ray samplers: which LiDAR rays and camera pixels are rendered in a step.
(Not to be confused with data-loader samplers.)

A registered class is called as `cls(cfg)` and returns an object with
`sample(batch: dict, field=None) -> dict`. `batch` follows docs/data.md; LiDAR rays are cast
through key-frame points (time lag `points[:, 4] == 0`). `field` is an optional callable
`field(points (N, 3) meters, batch_index (N,) long) -> SDF (N,)` that curvature-based samplers
differentiate (e.g. `NeuSRenderHead.field_function(field_volume)`). The result holds:

- `lidar_ray_index`: (B, N_L) long rows of `batch["points"]`, exactly N_L per sample (drawn with
  replacement only when a sample has too few candidates); None when N_L is 0.
- `pixel_uv`: (B, N_cam, N_C, 2) long pixel (u, v) = (column, row), exactly N_C per camera;
  None when N_C is 0 or the batch has no images.
- `point_weights`: (N,) detached sampling weight per row of `batch["points"]` (0 for rows that
  are not candidates), or None for samplers without weights.
- `pixel_weights`: (B, N_cam, H, W) detached pixel weight maps the pixels were drawn from, or
  None.

`clap.modeling.render_head.rays.build_rays(batch, result)` turns the result into rays.
"""


def build_ray_sampler(cfg):
    """Build `cfg.MODEL.RAY_SAMPLER.NAME`."""
    return RAY_SAMPLER_REGISTRY.get(cfg.MODEL.RAY_SAMPLER.NAME)(cfg)
