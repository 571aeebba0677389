from fvcore.common.registry import Registry

PROTOTYPE_HEAD_REGISTRY = Registry("PROTOTYPE_HEAD")
PROTOTYPE_HEAD_REGISTRY.__doc__ = """
Registry for prototype heads (cross-modal swapped assignment prediction).

A registered class is called as `cls(cfg, lidar_shape: ShapeSpec, camera_shape: ShapeSpec)` and
returns an `nn.Module` with `forward(lidar_volume (B, C_P, Z, Y, X), camera_volume
(B, C_I, Z, Y, X), paired (B, Z, Y, X) bool) -> dict` of losses ("loss_*") and statistics,
where `paired` marks cells where both modalities carry data. Its prototypes are a parameter
`prototypes` (N_K, d_K) kept on the unit sphere by a hook.
"""


def build_prototype_head(cfg, lidar_shape, camera_shape):
    """Build `cfg.MODEL.PROTOTYPE_HEAD.NAME`."""
    head_class = PROTOTYPE_HEAD_REGISTRY.get(cfg.MODEL.PROTOTYPE_HEAD.NAME)
    return head_class(cfg, lidar_shape, camera_shape)
