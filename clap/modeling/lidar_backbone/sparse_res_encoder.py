"""Sparse residual LiDAR encoder: input voxels -> dense volume on the shared grid."""

import logging
from typing import List, Sequence, Tuple

import torch
from torch import nn

from clap.config import configurable
from clap.layers import (
    Conv3d,
    ShapeSpec,
    VolumeGrid,
    cpu_autocast,
    parse_cpu_autocast_dtype,
    to_float32,
)
from clap.layers.sparse import (
    SparseBatchNorm,
    SparseConv3d,
    SparseReLU,
    SparseTensor,
    SubMConv3d,
    resolve_sparse_backend,
)

from .build import LIDAR_BACKBONE_REGISTRY
from .masking import sample_block_mask

__all__ = ["SparseBasicBlock", "SparseResEncoder", "stage_strides"]

logger = logging.getLogger(__name__)


class SparseBasicBlock(nn.Module):
    """Two 3x3x3 submanifold convs with batch norm and a residual connection (channels kept)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = SubMConv3d(channels, channels, 3)
        self.bn1 = SparseBatchNorm(channels)
        self.conv2 = SubMConv3d(channels, channels, 3)
        self.bn2 = SparseBatchNorm(channels)
        self.relu = SparseReLU()

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out.replace_feats(out.feats + x.feats))


def stage_strides(volume_stride: Sequence[int], num_stages: int) -> List[Tuple[int, int, int]]:
    """Per-stage (x, y, z) strides whose product is `volume_stride`.

    Stage 0 keeps the input resolution; each later stage halves an axis while that axis still
    has stride to spend, so the total stride per axis must be a power of two no larger than
    2 ** (num_stages - 1).
    """
    limit = 2 ** (num_stages - 1)
    for axis, s in zip("xyz", volume_stride):
        if s < 1 or s & (s - 1) or s > limit:
            raise ValueError(
                f"MODEL.VOLUME_STRIDE along {axis} is {s}; SparseResEncoder with {num_stages} "
                f"stages supports powers of two up to {limit}"
            )
    strides = [(1, 1, 1)]
    for stage in range(1, num_stages):
        strides.append(tuple(2 if s >= 2**stage else 1 for s in volume_stride))
    return strides


@LIDAR_BACKBONE_REGISTRY.register()
class SparseResEncoder(nn.Module):
    """VoxelResBackBone8x-style sparse encoder followed by a dense 3D conv.

    stem: submanifold conv (C_in -> stem channels) + BN + ReLU; stage i: a down-sampling sparse
    conv (kernel 3 and stride 2 along the axes it halves, kernel 1 and stride 1 along the others;
    a submanifold conv when it halves none) + BN + ReLU, then `num_blocks[i]` residual blocks.
    The last stage's sparse tensor is scattered into a dense volume of exactly
    `VolumeGrid.volume_shape` (cropped / zero-padded at the high end when the strided shapes do
    not divide exactly), then Conv3d + BN + ReLU to `out_channels`. Samples with no voxel give
    an all-zero volume.
    """

    @configurable
    def __init__(
        self, *, grid: VolumeGrid, in_channels: int, stem_channels: int,
        stage_channels: Sequence[int], num_blocks: Sequence[int], out_channels: int,
        dense_kernel_size: int = 3, backend: str = "torch", mask_ratio: float = 0.0,
        mask_block_size: int = 8, cpu_autocast_dtype: str = "",
    ):
        """
        Args:
            grid: the shared grid (input voxel grid and dense volume shape).
            in_channels: C_in of `voxel_features`.
            stem_channels: channels of the stem conv.
            stage_channels: channels of each stage (the first stays at the input resolution).
            num_blocks: residual blocks per stage.
            out_channels: C_P of the dense volume.
            dense_kernel_size: kernel of the dense conv after scattering (odd).
            backend: "torch", "torchsparse" or "spconv" ("auto" resolves for a CPU model).
            mask_ratio: fraction of occupied blocks dropped in training (0 disables masking).
            mask_block_size: block edge in input voxels.
            cpu_autocast_dtype: "bfloat16" computes the dense conv of CPU volumes under
                autocast (output float32; clap/layers/autocast.py; the sparse convs stay
                float32, their gathers and scatters are slower in bfloat16), "" in float32.
        """
        super().__init__()
        if len(stage_channels) != len(num_blocks):
            raise ValueError(
                "MODEL.LIDAR_BACKBONE.STAGE_CHANNELS and NUM_BLOCKS need the same length, got "
                f"{list(stage_channels)} and {list(num_blocks)}"
            )
        if dense_kernel_size % 2 == 0:
            raise ValueError(f"MODEL.LIDAR_BACKBONE.DENSE_KERNEL_SIZE must be odd, got "
                             f"{dense_kernel_size}")
        self.grid = grid
        self.backend = resolve_sparse_backend(backend)
        self.mask_ratio = float(mask_ratio)
        self.mask_block_size = int(mask_block_size)
        self.out_channels = out_channels
        self.cpu_autocast_dtype = parse_cpu_autocast_dtype(cpu_autocast_dtype)

        self.stem = nn.Sequential(
            SubMConv3d(in_channels, stem_channels, 3),
            SparseBatchNorm(stem_channels),
            SparseReLU(),
        )
        self.strides = stage_strides(grid.volume_stride, len(stage_channels))
        stages = []
        channels = stem_channels
        for stride, stage_out, blocks in zip(self.strides, stage_channels, num_blocks):
            layers = []
            if stride != (1, 1, 1):
                kernel = tuple(3 if s == 2 else 1 for s in stride)
                layers += [SparseConv3d(channels, stage_out, kernel, stride), SparseBatchNorm(
                    stage_out), SparseReLU()]
            elif stage_out != channels:
                layers += [SubMConv3d(channels, stage_out, 3), SparseBatchNorm(stage_out),
                           SparseReLU()]
            layers += [SparseBasicBlock(stage_out) for _ in range(blocks)]
            stages.append(nn.Sequential(*layers))
            channels = stage_out
        self.stages = nn.ModuleList(stages)
        self.sparse_out_channels = channels
        self.dense_head = nn.Sequential(
            Conv3d(channels, out_channels, dense_kernel_size, padding=dense_kernel_size // 2,
                      bias=False),
            nn.BatchNorm3d(out_channels),
            nn.ReLU(inplace=True),
        )

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.LIDAR_BACKBONE
        return {
            "grid": VolumeGrid.from_config(cfg),
            "in_channels": c.IN_CHANNELS,
            "stem_channels": c.STEM_CHANNELS,
            "stage_channels": list(c.STAGE_CHANNELS),
            "num_blocks": list(c.NUM_BLOCKS),
            "out_channels": c.OUT_CHANNELS,
            "dense_kernel_size": c.DENSE_KERNEL_SIZE,
            "backend": resolve_sparse_backend(cfg.MODEL.SPARSE_BACKEND, cfg.MODEL.DEVICE),
            "mask_ratio": c.MASK_RATIO,
            "mask_block_size": c.MASK_BLOCK_SIZE,
            "cpu_autocast_dtype": cfg.MODEL.CPU_AUTOCAST_DTYPE,
        }

    def output_shape(self) -> ShapeSpec:
        z, y, x = self.grid.volume_shape
        return ShapeSpec(channels=self.out_channels, depth=z, height=y, width=x)

    def _check_coords(self, voxel_coords: torch.Tensor, batch_size: int):
        if voxel_coords.dim() != 2 or voxel_coords.shape[1] != 4:
            raise ValueError(f"voxel_coords must be (V, 4) [batch, x, y, z], got "
                             f"{tuple(voxel_coords.shape)}")
        if voxel_coords.shape[0] == 0:
            return
        lowest = voxel_coords.min(dim=0).values.tolist()
        highest = voxel_coords.max(dim=0).values.tolist()
        limits = (batch_size,) + tuple(self.grid.input_grid_size)
        for name, lo, hi, n in zip(("batch", "x", "y", "z"), lowest, highest, limits):
            if lo < 0 or hi >= n:
                raise ValueError(
                    f"voxel_coords {name} values span [{lo}, {hi}], expected [0, {n - 1}] "
                    "(batch_size and the input grid of INPUT.POINT_CLOUD_RANGE / VOXEL_SIZE)"
                )

    def forward(
        self, voxel_features: torch.Tensor, voxel_coords: torch.Tensor, batch_size: int,
        return_mask: bool = False,
    ):
        """
        Args:
            voxel_features: (V, C_in) float, mean of the points of each voxel.
            voxel_coords: (V, 4) int `[batch, x, y, z]` on the input voxel grid.
            batch_size: B.
            return_mask: also return which voxels were kept by block masking.
        Returns:
            volume (B, C_P, Z, Y, X); with `return_mask`, also keep (V,) bool (all True unless
            masking ran, i.e. in training with mask_ratio > 0).
        """
        self._check_coords(voxel_coords, batch_size)
        keep = torch.ones(voxel_coords.shape[0], dtype=torch.bool, device=voxel_coords.device)
        if self.training and self.mask_ratio > 0:
            keep = sample_block_mask(voxel_coords, self.mask_block_size, self.mask_ratio)
            voxel_features, voxel_coords = voxel_features[keep], voxel_coords[keep]

        volume_shape = self.grid.volume_shape
        if voxel_coords.shape[0] == 0:
            dense = voxel_features.new_zeros((batch_size, self.sparse_out_channels) + volume_shape)
        else:
            x = SparseTensor(
                voxel_features, voxel_coords, self.grid.input_grid_size, batch_size,
                backend=self.backend,
            )
            x = self.stem(x)
            for stage in self.stages:
                x = stage(x)
            dense = x.to_dense(volume_shape)
        with cpu_autocast(self.cpu_autocast_dtype, dense) as region:
            volume = self.dense_head(dense)
        if region is not None:
            volume = to_float32(volume)
        has_voxels = torch.zeros(batch_size, dtype=volume.dtype, device=volume.device)
        has_voxels[voxel_coords[:, 0].long()] = 1.0
        volume = volume * has_voxels.view(-1, 1, 1, 1, 1)
        return (volume, keep) if return_mask else volume
