from .build import LIDAR_BACKBONE_REGISTRY, build_lidar_backbone
from .masking import sample_block_mask
from .sparse_res_encoder import SparseBasicBlock, SparseResEncoder, stage_strides

__all__ = [
    "LIDAR_BACKBONE_REGISTRY", "SparseBasicBlock", "SparseResEncoder", "build_lidar_backbone",
    "sample_block_mask", "stage_strides",
]
