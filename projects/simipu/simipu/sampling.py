"""Where SimIPU reads features: point subsets, the LiDAR volume at points, images at pixels.

Pixel convention (that of the data pipeline, docs/data.md): integer (u, v) is the centre of a
pixel (OpenCV's), so pixel column j covers u in [j - 0.5, j + 0.5) and a horizontal flip of a
W-wide image maps u to W - 1 - u. Cell j of a feature map with stride s covers the pixels
[s j, s (j + 1)); its value sits at the centre of that block, u = s j + (s - 1) / 2.
"""

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "farthest_point_sample",
    "project_to_first_camera",
    "random_point_sample",
    "sample_image_features",
    "sample_point_subset",
    "sample_volume_at_points",
]


def random_point_sample(xyz: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Indices (min(N, num_samples),) of a uniform subset of the N points, without replacement
    (torch's generator)."""
    count = xyz.shape[0]
    order = torch.randperm(count).to(xyz.device)
    return order[: min(count, num_samples)]


def farthest_point_sample(xyz: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Indices (min(N, num_samples),) of a farthest-point subset of the (N, 3) points.

    Starts at a random point (torch's generator); each next point is the one farthest (in
    Euclidean distance) from the points chosen so far.
    """
    count = xyz.shape[0]
    if num_samples >= count:
        return torch.arange(count, device=xyz.device)
    xyz = xyz[:, :3]
    chosen = torch.empty(num_samples, dtype=torch.long, device=xyz.device)
    nearest = torch.full((count,), float("inf"), dtype=xyz.dtype, device=xyz.device)
    current = torch.randint(count, ()).to(xyz.device)
    for index in range(num_samples):
        chosen[index] = current
        nearest = torch.minimum(nearest, (xyz - xyz[current]).square().sum(dim=1))
        current = nearest.argmax()
    return chosen


_SAMPLERS = {"random": random_point_sample, "farthest": farthest_point_sample}


def sample_point_subset(xyz: torch.Tensor, num_samples: int, method: str) -> torch.Tensor:
    """Indices of `num_samples` of the points (all when fewer) by `method` ("random" or
    "farthest", MODEL.SIMIPU.POINT_SAMPLING)."""
    if method not in _SAMPLERS:
        raise ValueError(f"MODEL.SIMIPU.POINT_SAMPLING: unknown '{method}', expected one of "
                         f"{sorted(_SAMPLERS)}")
    return _SAMPLERS[method](xyz, num_samples)


def sample_volume_at_points(
    volume: torch.Tensor, xyz: torch.Tensor, point_cloud_range: Sequence[float]
) -> torch.Tensor:
    """Trilinear features (P, C) of a dense volume at points.

    Args:
        volume: (C, Z, Y, X) features whose cells tile `point_cloud_range` evenly, a value at
            each cell centre (the LiDAR encoder's output for one sample).
        xyz: (P, 3) points, meters, in the frame of the volume.
        point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max), meters.
    Returns:
        (P, C); within half a cell of the range's faces the border cells' values are repeated.
    """
    low = xyz.new_tensor(point_cloud_range[:3])
    high = xyz.new_tensor(point_cloud_range[3:])
    normalised = (xyz[:, :3] - low) / (high - low) * 2.0 - 1.0
    grid = normalised.view(1, 1, 1, -1, 3).to(volume.dtype)
    sampled = F.grid_sample(
        volume.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled.view(volume.shape[0], -1).T


def project_to_first_camera(
    xyz: torch.Tensor, lidar2img: torch.Tensor, image_size: Sequence[int], min_depth: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first camera (in the batch's camera order) whose image contains each point.

    Args:
        xyz: (P, 3) LiDAR-frame points, meters.
        lidar2img: (N_cam, 4, 4) projections into the fed images (docs/data.md).
        image_size: (H, W) pixels.
        min_depth: meters; a point must lie farther than this in front of the camera.
    Returns:
        camera (P,) long, uv (P, 2) pixels in that camera, visible (P,) bool (the point lies in
        front of some camera and inside its image: -0.5 <= u < W - 0.5, -0.5 <= v < H - 0.5);
        camera and uv of invisible points are meaningless.
    """
    homogeneous = torch.cat([xyz[:, :3], xyz.new_ones(xyz.shape[0], 1)], dim=1)
    projected = torch.einsum("nij,pj->npi", lidar2img.to(xyz.dtype), homogeneous)
    depth = projected[..., 2]
    uv = projected[..., :2] / depth.clamp(min=min_depth).unsqueeze(-1)
    height, width = image_size
    u, v = uv.unbind(-1)
    inside = (
        (depth > min_depth) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    )
    visible = inside.any(dim=0)
    camera = inside.to(torch.uint8).argmax(dim=0)
    points = torch.arange(xyz.shape[0], device=xyz.device)
    return camera, uv[camera, points], visible


def sample_image_features(
    feature_maps: torch.Tensor, stride: int, camera: torch.Tensor, uv: torch.Tensor
) -> torch.Tensor:
    """Bilinear features (P, C) of each point's camera at its pixel.

    Args:
        feature_maps: (N_cam, C, h, w) one sample's feature maps; cell j of a map covers the
            pixels [stride j, stride (j + 1)) along each axis.
        stride: pixels of the fed image per feature cell.
        camera: (P,) long camera index of each point.
        uv: (P, 2) pixels (integer values at pixel centres).
    Returns:
        (P, C); zero-padded beyond the maps.
    """
    height, width = feature_maps.shape[-2:]
    # Pixel centre u covers [u - 0.5, u + 0.5): its position along the map's extent (w stride
    # pixels) in grid_sample's [-1, 1] with align_corners=False.
    extent = uv.new_tensor([width * stride, height * stride])
    grid = (uv + 0.5) / extent * 2.0 - 1.0
    grid = grid.to(feature_maps.dtype).view(1, 1, -1, 2).expand(feature_maps.shape[0], -1, -1, -1)
    sampled = F.grid_sample(
        feature_maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    points = torch.arange(uv.shape[0], device=uv.device)
    return sampled[camera, :, 0, points]
