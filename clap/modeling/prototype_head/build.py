from fvcore.common.registry import Registry

PROTOTYPE_HEAD_REGISTRY = Registry("PROTOTYPE_HEAD")
PROTOTYPE_HEAD_REGISTRY.__doc__ = """
Registry for prototype heads (cross-modal swapped assignment prediction).

A registered class is called as `cls(cfg, lidar_shape: ShapeSpec, camera_shape: ShapeSpec)`
(`channels` of each is read) and returns an `nn.Module` with
`forward(lidar_volume (B, C_P, Z, Y, X), camera_volume (B, C_I, Z, Y, X), paired (B, Z, Y, X)
bool) -> dict`, where `paired` marks cells where both modalities carry data. The dict holds
scalar losses under "loss_*" keys (already multiplied by their weights; zero but connected to the
head's parameters when no cell is paired) and detached statistics under other keys, which the
meta-architecture must not add to the loss.

For the hooks in `clap.engine.clap_hooks` the module also has: a parameter `prototypes`
(N_K, d_K), kept on the unit sphere by `PrototypeEMHook`; an attribute `last_assignments`
(dict "lidar"/"camera" -> (N,) long prototype index per paired cell, detached, set by each
training forward, None before the first); and `stored_embeddings() -> (M, d_K)` recent unit
embeddings to re-seed unused prototypes from.
"""


def build_prototype_head(cfg, lidar_shape, camera_shape):
    """Build `cfg.MODEL.PROTOTYPE_HEAD.NAME`."""
    head_class = PROTOTYPE_HEAD_REGISTRY.get(cfg.MODEL.PROTOTYPE_HEAD.NAME)
    return head_class(cfg, lidar_shape, camera_shape)
