from fvcore.common.registry import Registry

RENDER_HEAD_REGISTRY = Registry("RENDER_HEAD")
RENDER_HEAD_REGISTRY.__doc__ = """
Registry for render heads (neural field + differentiable renderer).

A registered class is called as `cls(cfg, input_shape: ShapeSpec)` (the fused volume) and
returns an `nn.Module` with `forward(volume: Tensor (B, C_F, Z, Y, X), rays: dict) -> dict`
where `rays` is `{"lidar": {...}, "camera": {...}}` (either may be absent) as made by
`clap.modeling.render_head.rays.build_rays`: per-ray origins and unit directions in the
(augmented) LiDAR frame (meters), `batch_index` and targets. The result holds the losses
("loss_*") and the rendered values per ray.
"""


def build_render_head(cfg, input_shape):
    """Build `cfg.MODEL.RENDER_HEAD.NAME` on a volume of `input_shape`."""
    return RENDER_HEAD_REGISTRY.get(cfg.MODEL.RENDER_HEAD.NAME)(cfg, input_shape)
