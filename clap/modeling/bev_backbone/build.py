from fvcore.common.registry import Registry

BEV_BACKBONE_REGISTRY = Registry("BEV_BACKBONE")
BEV_BACKBONE_REGISTRY.__doc__ = """
Registry for 2D backbones on bird's-eye-view maps (between the flattened volume and a detection
head).

A registered class is called as `cls(cfg, input_shape: ShapeSpec)` (the BEV map (B, C, Y, X):
`channels`, `height` = Y, `width` = X) and returns an `nn.Module` with
`forward(bev: Tensor (B, C, Y, X)) -> Tensor (B, C_out, Y / s, X / s)` for an integer stride s,
and `output_shape() -> ShapeSpec(channels=C_out, height=Y / s, width=X / s, stride=s)`.
"""


def build_bev_backbone(cfg, input_shape):
    """Build `cfg.MODEL.BEV_BACKBONE.NAME` on BEV maps of `input_shape`."""
    return BEV_BACKBONE_REGISTRY.get(cfg.MODEL.BEV_BACKBONE.NAME)(cfg, input_shape)
