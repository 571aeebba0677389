"""Fusion of the LiDAR volume P^ and the camera volume I^ into F^."""

from typing import Optional

import torch
from torch import nn

from clap.config import configurable
from clap.layers import Conv3d, ShapeSpec, cpu_autocast, parse_cpu_autocast_dtype, to_float32

from .build import FUSION_REGISTRY

__all__ = ["ConcatConvFusion", "PassThroughFusion"]


def _check_same_grid(lidar_shape: Optional[ShapeSpec], camera_shape: Optional[ShapeSpec]):
    if lidar_shape is None and camera_shape is None:
        raise ValueError("fusion needs at least one input volume (MODEL.MODALITIES is empty)")
    if lidar_shape is not None and camera_shape is not None:
        grid_l = (lidar_shape.depth, lidar_shape.height, lidar_shape.width)
        grid_c = (camera_shape.depth, camera_shape.height, camera_shape.width)
        if grid_l != grid_c:
            raise ValueError(f"LiDAR volume grid {grid_l} and camera volume grid {grid_c} differ")
    shape = lidar_shape if lidar_shape is not None else camera_shape
    return shape.depth, shape.height, shape.width


@FUSION_REGISTRY.register()
class ConcatConvFusion(nn.Module):
    """Concatenate the present volumes on channels, then Conv3d + BN + ReLU to `out_channels`.

    With one modality absent (None shape at build time, None volume at run time) it is a conv on
    the one present volume.
    """

    @configurable
    def __init__(
        self, *, lidar_channels: Optional[int], camera_channels: Optional[int],
        grid_shape, out_channels: int, kernel_size: int = 3, cpu_autocast_dtype: str = "",
    ):
        """
        Args:
            lidar_channels: C_P, or None without LiDAR.
            camera_channels: C_I, or None without cameras.
            grid_shape: (Z, Y, X) of the volumes.
            out_channels: C_F.
            kernel_size: odd Conv3d kernel.
            cpu_autocast_dtype: "bfloat16" computes the convolution of CPU volumes under
                autocast (output float32, normalised in float32; clap/layers/autocast.py), ""
                in float32.
        """
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"MODEL.FUSION.KERNEL_SIZE must be odd, got {kernel_size}")
        self.lidar_channels = lidar_channels
        self.camera_channels = camera_channels
        self.grid_shape = tuple(grid_shape)
        self.out_channels = out_channels
        self.cpu_autocast_dtype = parse_cpu_autocast_dtype(cpu_autocast_dtype)
        in_channels = (lidar_channels or 0) + (camera_channels or 0)
        self.conv = Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                              bias=False)
        self.norm = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    @classmethod
    def from_config(cls, cfg, lidar_shape, camera_shape):
        return {
            "lidar_channels": None if lidar_shape is None else lidar_shape.channels,
            "camera_channels": None if camera_shape is None else camera_shape.channels,
            "grid_shape": _check_same_grid(lidar_shape, camera_shape),
            "out_channels": cfg.MODEL.FUSION.OUT_CHANNELS,
            "kernel_size": cfg.MODEL.FUSION.KERNEL_SIZE,
            "cpu_autocast_dtype": cfg.MODEL.CPU_AUTOCAST_DTYPE,
        }

    def output_shape(self) -> ShapeSpec:
        z, y, x = self.grid_shape
        return ShapeSpec(channels=self.out_channels, depth=z, height=y, width=x)

    def forward(
        self, lidar_volume: Optional[torch.Tensor], camera_volume: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """(B, C_P, Z, Y, X) and / or (B, C_I, Z, Y, X) -> (B, C_F, Z, Y, X)."""
        volumes = []
        for name, volume, channels in (("lidar", lidar_volume, self.lidar_channels),
                                       ("camera", camera_volume, self.camera_channels)):
            if (volume is None) != (channels is None):
                raise ValueError(
                    f"ConcatConvFusion was built {'without' if channels is None else 'with'} a "
                    f"{name} volume but got {'one' if volume is not None else 'None'}"
                )
            if volume is not None:
                volumes.append(volume)
        fused = volumes[0] if len(volumes) == 1 else torch.cat(volumes, dim=1)
        with cpu_autocast(self.cpu_autocast_dtype, fused) as region:
            fused = self.conv(fused)
        if region is not None:
            fused = to_float32(fused)
        return self.relu(self.norm(fused))


@FUSION_REGISTRY.register()
class PassThroughFusion(nn.Module):
    """Single-modal models: return the one present volume unchanged (F^ = P^ or F^ = I^)."""

    @configurable
    def __init__(self, *, channels: int, grid_shape, modality: str):
        super().__init__()
        self.channels = channels
        self.grid_shape = tuple(grid_shape)
        self.modality = modality

    @classmethod
    def from_config(cls, cfg, lidar_shape, camera_shape):
        if (lidar_shape is None) == (camera_shape is None):
            raise ValueError("PassThroughFusion needs exactly one modality in MODEL.MODALITIES")
        shape = lidar_shape if lidar_shape is not None else camera_shape
        return {
            "channels": shape.channels,
            "grid_shape": _check_same_grid(lidar_shape, camera_shape),
            "modality": "lidar" if lidar_shape is not None else "camera",
        }

    def output_shape(self) -> ShapeSpec:
        z, y, x = self.grid_shape
        return ShapeSpec(channels=self.channels, depth=z, height=y, width=x)

    def forward(
        self, lidar_volume: Optional[torch.Tensor], camera_volume: Optional[torch.Tensor]
    ) -> torch.Tensor:
        volume = lidar_volume if self.modality == "lidar" else camera_volume
        other = camera_volume if self.modality == "lidar" else lidar_volume
        if volume is None or other is not None:
            raise ValueError(f"PassThroughFusion was built for {self.modality} only")
        return volume
