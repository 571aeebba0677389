from fvcore.common.registry import Registry

FUSION_REGISTRY = Registry("FUSION")
FUSION_REGISTRY.__doc__ = """
Registry for fusion encoders.

A registered class is called as `cls(cfg, lidar_shape: ShapeSpec | None,
camera_shape: ShapeSpec | None)` (None for an absent modality) and returns an `nn.Module` with
`forward(lidar_volume: Tensor (B, C_P, Z, Y, X) | None, camera_volume: Tensor (B, C_I, Z, Y, X)
| None) -> Tensor (B, C_F, Z, Y, X)` and `output_shape() -> ShapeSpec`.
"""


def build_fusion(cfg, lidar_shape, camera_shape):
    """Build `cfg.MODEL.FUSION.NAME` for the given input volumes."""
    return FUSION_REGISTRY.get(cfg.MODEL.FUSION.NAME)(cfg, lidar_shape, camera_shape)
