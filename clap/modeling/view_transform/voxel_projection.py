"""UVTR-style camera-to-voxel lift with an LSS-style depth distribution: project cell centres into
the images, sample features, weight them by the predicted probability of the cell's depth.

Pixel convention: `lidar2img` gives pixel coordinates (u, v) of the image fed to the model with
pixel centres at integers (u along the width; the project-wide convention, as in OpenCV). The lift
works in area coordinates (u + 0.5, v + 0.5), in which pixel (row i, column j) covers
[j, j + 1) x [i, i + 1); a point is inside the image when 0 <= u + 0.5 < W and
0 <= v + 0.5 < H. Cell (i, j) of a feature map with stride s covers pixels
[s j, s (j + 1)) x [s i, s (i + 1)); its value is taken to sit at the cell centre, area
coordinates (s (j + 0.5), s (i + 0.5)). Sampling is bilinear between cell centres (the values
of `grid_sample(align_corners=False)` on the map's pixel extent w s x h s), so a point that
projects onto a cell centre receives exactly that cell's feature; with stride 1, a point
projecting to pixel (u, v) receives the feature of pixel (u, v).

Depth: the camera depth of a point is the third row of `lidar2img` applied to it, its z in the
camera frame in meters (not the range along the ray). Image augmentation (resize, crop, flip)
multiplies the intrinsics by a pixel map whose third row is (0, 0, 1), and the point-cloud
augmentation is undone by `lidar2cam`, so this depth is the metric depth of the point the
augmented image shows at (u, v), whatever the augmentation.
"""

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from clap.config import configurable
from clap.layers import ShapeSpec, VolumeGrid

from .build import VIEW_TRANSFORM_REGISTRY

__all__ = [
    "VoxelProjectionLift", "bilinear_taps", "depth_bin_index", "project_points",
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


def bilinear_taps(
    uv: torch.Tensor, stride: int, map_size: Sequence[int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The four feature cells around each point and their bilinear weights.

    Args:
        uv: (..., 2) area coordinates, pixels (module docstring).
        stride: pixels per feature cell.
        map_size: (h, w) cells of the feature map.
    Returns:
        index (4, ...) long, row-major cell index `i * w + j` (clamped into the map), and
        weight (4, ...) bilinear weights between cell centres, zero for a cell outside the map
        (the same values as `grid_sample(align_corners=False, padding_mode="zeros")`).
    """
    height, width = map_size
    x = uv[..., 0] / stride - 0.5  # feature-cell coordinates, centres at integers
    y = uv[..., 1] / stride - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    indices, weights = [], []
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            indices.append((yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).long())
            weights.append(wx * wy * inside.to(wx.dtype))
    return torch.stack(indices), torch.stack(weights)


def depth_bin_index(
    depth: torch.Tensor, bins: int, depth_range: Sequence[float]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Depth bin holding each depth: `bins` equal bins over [d_min, d_max) meters, bin k covers
    [d_min + k w, d_min + (k + 1) w), w = (d_max - d_min) / bins.

    Returns index (same shape as depth) long, clamped into [0, bins), and in_range bool.
    """
    d_min, d_max = depth_range
    index = torch.floor((depth - d_min) * (bins / (d_max - d_min)))
    in_range = (index >= 0) & (index < bins)
    return index.clamp(0, bins - 1).long(), in_range


def _gather_bilinear(
    flat_map: torch.Tensor, offset: torch.Tensor, taps: Tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """sum_t weight[t] * flat_map[offset + index[t]]: (V, C) rows of a (rows, C) map, or (V,)
    values of a (rows,) map."""
    index, weight = taps
    result = None
    for tap_index, tap_weight in zip(index, weight):
        rows = flat_map.index_select(0, offset + tap_index)
        tap_weight = tap_weight.to(rows.dtype)
        term = rows * (tap_weight if rows.dim() == 1 else tap_weight.unsqueeze(1))
        result = term if result is None else result + term
    return result


def sample_volume_features(
    feature_maps: Sequence[torch.Tensor], strides: Sequence[int], points: torch.Tensor,
    lidar2img: torch.Tensor, image_size: Sequence[int], min_depth: float = 0.1,
    depth_probs: Optional[Sequence[torch.Tensor]] = None,
    depth_range: Sequence[float] = (1.0, 60.0),
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Image features at 3D points, averaged over the feature levels and the cameras that see them.

    Only the (point, camera) pairs where the camera sees the point are sampled: bilinearly between
    feature-cell centres, zero beyond the map (`bilinear_taps`).

    Args:
        feature_maps: per level (B * N_cam, C, h, w), camera-major within each sample.
        strides: per level, pixels of the input image per feature cell.
        points: (P, 3) LiDAR-frame meters.
        lidar2img: (B, N_cam, 4, 4) projection into the images as fed to the model (augmentation
            included): its third row gives the camera depth (z) in meters.
        image_size: (H, W) pixels of the input images.
        min_depth: meters; points not farther than this in front of a camera are not seen by it.
        depth_probs: optional per level (B * N_cam, D, h, w) per-pixel distributions over D depth
            bins (`depth_bin_index`); a camera then sees a point only when its depth lies within
            `depth_range`, and its sample is weighted by the probability of the bin holding the
            point's depth, that bin's probability map sampled bilinearly at the point's pixel.
        depth_range: (d_min, d_max) camera depth covered by the bins, meters.
    Returns:
        features (B, C, P): mean over the cameras whose image contains the point's projection
        (zeros where none does); visible (B, P) bool.
    """
    uv, depth, in_front = project_points(points, lidar2img, min_depth)
    uv = uv + 0.5  # integer pixel centres -> area coordinates (module docstring)
    height, width = image_size
    u, v = uv.unbind(-1)
    valid = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    if depth_probs is not None:
        bins = depth_probs[0].shape[1]
        depth_bin, in_range = depth_bin_index(depth, bins, depth_range)
        valid &= in_range
    batch_size, num_cameras, num_points = valid.shape
    sample, camera, point = valid.nonzero(as_tuple=True)  # the V seeing (camera, point) pairs
    view = sample * num_cameras + camera  # row of the pair's camera in the feature maps
    pair_uv = uv[sample, camera, point]
    # Weight of each pair in the mean over the cameras that see its point and over the levels.
    num_views = valid.sum(dim=1)[sample, point]
    pair_weight = 1.0 / (num_views.to(uv.dtype) * len(feature_maps))
    features = None
    for level, (feature_map, stride) in enumerate(zip(feature_maps, strides)):
        channels, map_h, map_w = feature_map.shape[1:]
        taps = bilinear_taps(pair_uv, stride, (map_h, map_w))
        flat_features = feature_map.permute(0, 2, 3, 1).reshape(-1, channels)
        sampled = _gather_bilinear(flat_features, view * (map_h * map_w), taps)  # (V, C)
        weight = pair_weight
        if depth_probs is not None:
            probability = _gather_bilinear(
                depth_probs[level].reshape(-1),
                (view * bins + depth_bin[sample, camera, point]) * (map_h * map_w), taps,
            )
            weight = weight * probability
        contribution = sampled * weight.to(sampled.dtype).unsqueeze(1)
        if features is None:
            features = sampled.new_zeros(batch_size * num_points, channels)
        features = features.index_add(0, sample * num_points + point, contribution)
    features = features.reshape(batch_size, num_points, -1).permute(0, 2, 1)
    return features, valid.any(dim=1)


@VIEW_TRANSFORM_REGISTRY.register()
class VoxelProjectionLift(nn.Module):
    """Camera volume I^ by projecting every dense-volume cell centre into every image.

    Cells receive the mean (over visible cameras and over the `in_features` levels) of the
    bilinearly sampled image features. With `depth_bins` > 0 (LSS-style depth-distribution lift)
    a depth head predicts per feature cell a softmax over the depth bins, and the feature a cell
    samples at pixel u is weighted by p(bin of the cell's camera depth | u); cameras whose depth
    range does not hold the cell do not see it. Then a 1x1x1 conv without bias to
    `out_channels`, so the volume is exactly zero where no camera sees the cell or where the
    predicted depth puts no mass.
    """

    @configurable
    def __init__(
        self, *, grid: VolumeGrid, input_shape: Dict[str, ShapeSpec], in_features: Sequence[str],
        out_channels: int, min_depth: float = 0.1, depth_bins: int = 0,
        depth_range: Sequence[float] = (1.0, 60.0),
    ):
        """
        Args:
            grid: the shared grid.
            input_shape: the image backbone's output shapes.
            in_features: levels to sample (equal channels).
            out_channels: C_I.
            min_depth: meters (see `sample_volume_features`).
            depth_bins: D of the depth head; 0 disables depth weighting (every cell along a
                ray gets the same feature).
            depth_range: (d_min, d_max) camera depth (z, meters) covered by the bins.
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
        if depth_bins < 0:
            raise ValueError(f"MODEL.VIEW_TRANSFORM.DEPTH_BINS must be >= 0, got {depth_bins}")
        if depth_bins > 0 and not (len(depth_range) == 2 and 0 <= depth_range[0] < depth_range[1]):
            raise ValueError(f"MODEL.VIEW_TRANSFORM.DEPTH_RANGE must be (min, max) meters with "
                             f"0 <= min < max, got {list(depth_range)}")
        in_channels = channels.pop()
        self.grid = grid
        self.in_features = list(in_features)
        self.strides = [input_shape[f].stride for f in in_features]
        self.out_channels = out_channels
        self.min_depth = float(min_depth)
        self.depth_range = tuple(float(d) for d in depth_range)
        self.depth_head = None
        if depth_bins > 0:
            # LSS / BEVFusion's depth net: a 1x1 conv giving the depth logits of each cell.
            self.depth_head = nn.Conv2d(in_channels, depth_bins, 1)
        self.output_proj = nn.Conv3d(in_channels, out_channels, 1, bias=False)

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
            lidar2img: (B, N_cam, 4, 4) of the images as fed (augmentation included).
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
        return self.output_proj(volume), visible
