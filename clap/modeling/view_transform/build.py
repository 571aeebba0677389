from fvcore.common.registry import Registry

VIEW_TRANSFORM_REGISTRY = Registry("VIEW_TRANSFORM")
VIEW_TRANSFORM_REGISTRY.__doc__ = """
Registry for camera-to-volume lifts.

A registered class is called as `cls(cfg, input_shape: dict[str, ShapeSpec])` (the image
backbone's output shapes) and returns an `nn.Module` with
`forward(features: dict[str, Tensor (B * N_cam, C, h, w)], lidar2img: Tensor (B, N_cam, 4, 4),
image_size: (H, W) pixels) -> (volume (B, C_I, Z, Y, X), visible (B, Z, Y, X) bool)` where
`visible` marks cells whose centre projects into at least one image,
and `output_shape() -> ShapeSpec(channels=C_I, depth=Z, height=Y, width=X)`.
"""


def build_view_transform(cfg, input_shape):
    """Build `cfg.MODEL.VIEW_TRANSFORM.NAME` for image features of `input_shape`."""
    return VIEW_TRANSFORM_REGISTRY.get(cfg.MODEL.VIEW_TRANSFORM.NAME)(cfg, input_shape)
