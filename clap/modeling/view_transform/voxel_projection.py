"""UVTR-style camera-to-voxel lift: project cell centres into the images and sample features.

Pixel convention: `lidar2img` gives pixel coordinates (u, v) of the image fed to the model with
pixel centres at integers (u along the width; the project-wide convention, as in OpenCV). The lift
works in area coordinates (u + 0.5, v + 0.5), in which pixel (row i, column j) covers
[j, j + 1) x [i, i + 1); a point is inside the image when 0 <= u + 0.5 < W and
0 <= v + 0.5 < H. Cell (i, j) of a feature map with stride s covers pixels
[s j, s (j + 1)) x [s i, s (i + 1)); its value is taken to sit at the cell centre, area
coordinates (s (j + 0.5), s (i + 0.5)). Sampling is bilinear between cell centres
(`grid_sample(align_corners=False)` on the map's pixel extent w s x h s), so a point that projects
onto a cell centre receives exactly that cell's feature; with stride 1, a point projecting to
pixel (u, v) receives the feature of pixel (u, v).
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from clap.config import configurable
from clap.layers import ShapeSpec, VolumeGrid

from .build import VIEW_TRANSFORM_REGISTRY

__all__ = [
    "VoxelProjectionLift", "project_points", "sample_depth_probability", "sample_feature_map",
    "sample_volume_features",
]


def project_points(
    points: torch.Tensor, lidar2img: torch.Tensor, min_depth: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Project LiDAR-frame points into every camera.

    Args:
        points: (P, 3) x, y, z meters.
        lidar2img: (B, N_cam, 4, 4).
        min_depth: points with camera depth <= this (meters) count as behind the camera.
    Returns:
        uv (B, N_cam, P, 2) pixels, depth (B, N_cam, P) meters (camera z), in_front (B, N_cam, P)
        bool. uv of points behind the camera is meaningless.
    """
    homogeneous = torch.cat([points, points.new_ones(points.shape[0], 1)], dim=1)
    projected = torch.einsum("bnij,pj->bnpi", lidar2img.to(points.dtype), homogeneous)
    depth = projected[..., 2]
    in_front = depth > min_depth
    uv = projected[..., :2] / depth.clamp(min=min_depth).unsqueeze(-1)
    return uv, depth, in_front


def _normalised_grid(uv: torch.Tensor, feature_map: torch.Tensor, stride: int) -> torch.Tensor:
    """uv (B, N, P, 2) pixels -> grid_sample coordinates on a (B * N, C, h, w) map."""
    height, width = feature_map.shape[-2:]
    scale = uv.new_tensor([2.0 / (width * stride), 2.0 / (height * stride)])
    return uv * scale - 1.0


def sample_feature_map(feature_map: torch.Tensor, stride: int, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear features (B, N_cam, C, P) at pixels uv (B, N_cam, P, 2) of a (B * N_cam, C, h, w)
    map with the given stride (zeros beyond the map)."""
    b, n, p, _ = uv.shape
    grid = _normalised_grid(uv, feature_map, stride).reshape(b * n, 1, p, 2)
    sampled = F.grid_sample(
        feature_map, grid.to(feature_map.dtype), mode="bilinear", padding_mode="zeros",
        align_corners=False,
    )
    return sampled.reshape(b, n, feature_map.shape[1], p)


def sample_depth_probability(
    depth_probs: torch.Tensor, stride: int, uv: torch.Tensor, depth: torch.Tensor,
    depth_range: Sequence[float],
) -> torch.Tensor:
    """Probability (B, N_cam, P) of each point's depth under a per-pixel depth distribution.

    `depth_probs` is (B * N_cam, D, h, w), bins of equal width over `depth_range` (meters), bin
    k centred at d_min + (k + 0.5) (d_max - d_min) / D. Interpolated trilinearly in (u, v,
    depth); zero outside the range.
    """
    b, n, p, _ = uv.shape
    d_min, d_max = depth_range
    depth_coord = (2.0 * (depth - d_min) / (d_max - d_min) - 1.0).unsqueeze(-1)
    grid = torch.cat([_normalised_grid(uv, depth_probs, stride), depth_coord], dim=-1)
    sampled = F.grid_sample(
        depth_probs.unsqueeze(1), grid.reshape(b * n, 1, 1, p, 3).to(depth_probs.dtype),
        mode="bilinear", padding_mode="zeros", align_corners=False,
    )
    return sampled.reshape(b, n, p)


def sample_volume_features(
    feature_maps: Sequence[torch.Tensor], strides: Sequence[int], points: torch.Tensor,
    lidar2img: torch.Tensor, image_size: Sequence[int], min_depth: float = 0.1,
    depth_probs: Optional[Sequence[torch.Tensor]] = None,
    depth_range: Sequence[float] = (1.0, 61.0),
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Image features at 3D points, averaged over the feature levels and the cameras that see them.

    Args:
        feature_maps: per level (B * N_cam, C, h, w), camera-major within each sample.
        strides: per level, pixels of the input image per feature cell.
        points: (P, 3) LiDAR-frame meters.
        lidar2img: (B, N_cam, 4, 4).
        image_size: (H, W) pixels of the input images.
        min_depth: meters; points not farther than this in front of a camera are not seen by it.
        depth_probs: optional per level (B * N_cam, D, h, w) depth distributions; each sample is
            weighted by the probability of the point's depth (`sample_depth_probability`).
        depth_range: (d_min, d_max) meters of the depth bins.
    Returns:
        features (B, C, P): mean over the cameras whose image contains the point's projection
        (zeros where none does); visible (B, P) bool.
    """
    uv, depth, in_front = project_points(points, lidar2img, min_depth)
    uv = uv + 0.5  # integer pixel centres -> area coordinates (module docstring)
    height, width = image_size
    u, v = uv.unbind(-1)
    valid = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    # Weight of each (sample, camera, point) in the mean over visible cameras and levels.
    num_views = valid.sum(dim=1, keepdim=True).clamp(min=1)
    view_weight = valid.to(uv.dtype) / (num_views * len(feature_maps))
    features = None
    for level, (feature_map, stride) in enumerate(zip(feature_maps, strides)):
        weight = view_weight
        if depth_probs is not None:
            weight = weight * sample_depth_probability(
                depth_probs[level], stride, uv, depth, depth_range
            )
        sampled = sample_feature_map(feature_map, stride, uv)
        level_features = torch.einsum("bncp,bnp->bcp", sampled, weight.to(sampled.dtype))
        features = level_features if features is None else features + level_features
    return features, valid.any(dim=1)


@VIEW_TRANSFORM_REGISTRY.register()
class VoxelProjectionLift(nn.Module):
    """Camera volume I^ by projecting every dense-volume cell centre into every image.

    Cells receive the mean (over visible cameras and over the `in_features` levels) of the
    bilinearly sampled image features, optionally weighted by a predicted depth distribution;
    then a 1x1x1 conv to `out_channels`. Cells no camera sees stay exactly zero.
    """

    @configurable
    def __init__(
        self, *, grid: VolumeGrid, input_shape: Dict[str, ShapeSpec], in_features: Sequence[str],
        out_channels: int, min_depth: float = 0.1, depth_bins: int = 0,
        depth_range: Sequence[float] = (1.0, 61.0),
    ):
        """
        Args:
            grid: the shared grid.
            input_shape: the image backbone's output shapes.
            in_features: levels to sample (equal channels).
            out_channels: C_I.
            min_depth: meters (see `sample_volume_features`).
            depth_bins: D of the depth head; 0 disables depth weighting.
            depth_range: (d_min, d_max) meters of the depth bins.
        """
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(f"MODEL.VIEW_TRANSFORM.IN_FEATURES {missing} not among the image "
                             f"backbone outputs {list(input_shape)}")
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"MODEL.VIEW_TRANSFORM.IN_FEATURES {list(in_features)} have different "
                             f"channels {sorted(channels)}; they are averaged, so use equal ones")
        if depth_bins > 0 and not depth_range[0] < depth_range[1]:
            raise ValueError(f"MODEL.VIEW_TRANSFORM.DEPTH_RANGE must be (min, max), got "
                             f"{list(depth_range)}")
        in_channels = channels.pop()
        self.grid = grid
        self.in_features = list(in_features)
        self.strides = [input_shape[f].stride for f in in_features]
        self.out_channels = out_channels
        self.min_depth = float(min_depth)
        self.depth_range = tuple(float(d) for d in depth_range)
        self.depth_head = None
        if depth_bins > 0:
            self.depth_head = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_channels, depth_bins, 1),
            )
        self.output_proj = nn.Conv3d(in_channels, out_channels, 1)

    @classmethod
    def from_config(cls, cfg, input_shape):
        c = cfg.MODEL.VIEW_TRANSFORM
        return {
            "grid": VolumeGrid.from_config(cfg),
            "input_shape": input_shape,
            "in_features": list(c.IN_FEATURES),
            "out_channels": c.OUT_CHANNELS,
            "min_depth": c.MIN_DEPTH,
            "depth_bins": c.DEPTH_BINS,
            "depth_range": list(c.DEPTH_RANGE),
        }

    def output_shape(self) -> ShapeSpec:
        z, y, x = self.grid.volume_shape
        return ShapeSpec(channels=self.out_channels, depth=z, height=y, width=x)

    def forward(
        self, features: Dict[str, torch.Tensor], lidar2img: torch.Tensor,
        image_size: Sequence[int],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            features: level -> (B * N_cam, C, h, w), camera-major within each sample.
            lidar2img: (B, N_cam, 4, 4).
            image_size: (H, W) pixels.
        Returns:
            volume (B, C_I, Z, Y, X) and visible (B, Z, Y, X) bool.
        """
        feature_maps = [features[f] for f in self.in_features]
        depth_probs = None
        if self.depth_head is not None:
            depth_probs = [self.depth_head(f).softmax(dim=1) for f in feature_maps]
        centers = self.grid.volume_centers(device=lidar2img.device, dtype=torch.float32)
        sampled, visible = sample_volume_features(
            feature_maps, self.strides, centers.reshape(-1, 3), lidar2img, image_size,
            self.min_depth, depth_probs, self.depth_range,
        )
        batch_size = lidar2img.shape[0]
        shape = self.grid.volume_shape
        volume = sampled.reshape(batch_size, -1, *shape).to(feature_maps[0].dtype)
        visible = visible.reshape(batch_size, *shape)
        volume = self.output_proj(volume) * visible.unsqueeze(1).to(volume.dtype)
        return volume, visible
