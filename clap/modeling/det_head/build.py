from fvcore.common.registry import Registry

DET_HEAD_REGISTRY = Registry("DET_HEAD")
DET_HEAD_REGISTRY.__doc__ = """
Registry for 3D detection heads on bird's-eye-view features.

A registered class is called as `cls(cfg, input_shape: ShapeSpec)` (the BEV map (B, C, Y, X))
and returns an `nn.Module` with `forward(bev: Tensor (B, C, Y, X), targets: list[dict] | None)
-> dict` of losses in training, and `predict(...)` giving boxes in the LiDAR frame.
"""


def build_det_head(cfg, input_shape):
    """Build `cfg.MODEL.DET_HEAD.NAME` on BEV features of `input_shape`."""
    return DET_HEAD_REGISTRY.get(cfg.MODEL.DET_HEAD.NAME)(cfg, input_shape)
