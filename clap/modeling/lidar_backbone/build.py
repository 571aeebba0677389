from fvcore.common.registry import Registry

LIDAR_BACKBONE_REGISTRY = Registry("LIDAR_BACKBONE")
LIDAR_BACKBONE_REGISTRY.__doc__ = """
Registry for LiDAR encoders: sparse voxels -> dense volume.

A registered class is called as `cls(cfg)` and returns an `nn.Module` with
`forward(voxel_features, voxel_coords, batch_size) -> Tensor (B, C_P, Z, Y, X)` where
`voxel_features` is (V, C_in) float (mean of the points in each voxel), `voxel_coords` is (V, 4)
int `[batch, x, y, z]` on the input voxel grid, and (Z, Y, X) is `VolumeGrid.volume_shape`;
and `output_shape() -> ShapeSpec(channels=C_P, depth=Z, height=Y, width=X)`.
`forward` also accepts `return_mask=True` and then returns `(volume, keep)` with `keep` (V,) bool
marking the input voxels the encoder used (all True for an encoder that does not mask, and
outside training); CLAP pairs LiDAR and camera only at cells with a kept voxel.
"""


def build_lidar_backbone(cfg):
    """Build `cfg.MODEL.LIDAR_BACKBONE.NAME`."""
    return LIDAR_BACKBONE_REGISTRY.get(cfg.MODEL.LIDAR_BACKBONE.NAME)(cfg)
