"""Tiny encoders that satisfy the encoder registry contracts, registered under test-only names.

They let the DetectionModel be built and trained in tests independently of the real encoders.
"""

import torch
import torch.nn.functional as F
from torch import nn

from clap.layers import ShapeSpec, VolumeGrid
from clap.modeling import (
    FUSION_REGISTRY,
    IMAGE_BACKBONE_REGISTRY,
    LIDAR_BACKBONE_REGISTRY,
    VIEW_TRANSFORM_REGISTRY,
)


@LIDAR_BACKBONE_REGISTRY.register()
class StandInScatterLidar(nn.Module):
    """Per-voxel linear layer, mean-scattered into the dense volume cells."""

    def __init__(self, cfg):
        super().__init__()
        self.grid = VolumeGrid.from_config(cfg)
        self.channels = cfg.MODEL.LIDAR_BACKBONE.OUT_CHANNELS
        self.linear = nn.Linear(5, self.channels)

    def forward(self, voxel_features, voxel_coords, batch_size):
        depth, height, width = self.grid.volume_shape
        stride = torch.tensor(self.grid.volume_stride, device=voxel_coords.device)
        cells = voxel_coords[:, 1:].long() // stride
        flat = (((voxel_coords[:, 0].long() * depth + cells[:, 2]) * height + cells[:, 1])
                * width + cells[:, 0])
        features = torch.relu(self.linear(voxel_features))
        size = batch_size * depth * height * width
        total = features.new_zeros(size, self.channels).index_add(0, flat, features)
        count = features.new_zeros(size).index_add(0, flat, torch.ones_like(flat, dtype=
                                                                            features.dtype))
        volume = total / count.clamp(min=1)[:, None]
        return volume.reshape(batch_size, depth, height, width, -1).permute(0, 4, 1, 2, 3)

    def output_shape(self):
        depth, height, width = self.grid.volume_shape
        return ShapeSpec(channels=self.channels, depth=depth, height=height, width=width)


@IMAGE_BACKBONE_REGISTRY.register()
class StandInImageBackbone(nn.Module):
    """One stride-4 conv."""

    def __init__(self, cfg):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 4, stride=4)

    def forward(self, images):
        return {"p2": torch.relu(self.conv(images))}

    def output_shape(self):
        return {"p2": ShapeSpec(channels=4, stride=4)}


@VIEW_TRANSFORM_REGISTRY.register()
class StandInProjectionLift(nn.Module):
    """Projects volume-cell centres into each image and averages the sampled features."""

    def __init__(self, cfg, input_shape):
        super().__init__()
        self.grid = VolumeGrid.from_config(cfg)
        self.channels = cfg.MODEL.VIEW_TRANSFORM.OUT_CHANNELS
        self.linear = nn.Linear(input_shape["p2"].channels, self.channels)

    def forward(self, features, lidar2img, image_size):
        feature_map = features["p2"]
        batch_size, num_cameras = lidar2img.shape[:2]
        centers = self.grid.volume_centers(device=lidar2img.device).reshape(-1, 3)
        homogeneous = torch.cat([centers, torch.ones_like(centers[:, :1])], dim=1)
        projected = torch.einsum("bnij,pj->bnpi", lidar2img, homogeneous)
        depth = projected[..., 2]
        uv = projected[..., :2] / depth.clamp(min=1e-3)[..., None]
        height, width = image_size
        normalised = torch.stack([uv[..., 0] / width, uv[..., 1] / height], dim=-1) * 2 - 1
        visible = (depth > 0.1) & (normalised.abs() <= 1).all(dim=-1)
        sampled = F.grid_sample(feature_map, normalised.flatten(0, 1)[:, None],
                                align_corners=False)  # (B * N, C, 1, P)
        sampled = sampled[:, :, 0].reshape(batch_size, num_cameras, -1, centers.shape[0])
        sampled = sampled * visible[:, :, None]
        count = visible.sum(dim=1).clamp(min=1)[:, None]
        volume = self.linear((sampled.sum(dim=1) / count).transpose(1, 2)).transpose(1, 2)
        depth_n, height_n, width_n = self.grid.volume_shape
        volume = volume.reshape(batch_size, self.channels, depth_n, height_n, width_n)
        return volume, visible.any(dim=1).reshape(batch_size, depth_n, height_n, width_n)

    def output_shape(self):
        depth, height, width = self.grid.volume_shape
        return ShapeSpec(channels=self.channels, depth=depth, height=height, width=width)


@FUSION_REGISTRY.register()
class StandInConcatFusion(nn.Module):
    """Concatenates the available volumes, 1x1x1 conv."""

    def __init__(self, cfg, lidar_shape, camera_shape):
        super().__init__()
        shapes = [s for s in (lidar_shape, camera_shape) if s is not None]
        self.shape = shapes[0]
        self.channels = cfg.MODEL.FUSION.OUT_CHANNELS
        self.conv = nn.Conv3d(sum(s.channels for s in shapes), self.channels, 1)

    def forward(self, lidar_volume, camera_volume):
        volumes = [v for v in (lidar_volume, camera_volume) if v is not None]
        return torch.relu(self.conv(torch.cat(volumes, dim=1)))

    def output_shape(self):
        return ShapeSpec(channels=self.channels, depth=self.shape.depth,
                         height=self.shape.height, width=self.shape.width)
