"""LiDAR and camera rays in the (augmented) LiDAR frame, meters.

Pixel convention: the pixel in row v, column u of an image has its centre at the continuous
pixel coordinates (u, v) (integers are pixel centres), so a point projected to (u, v) falls in
pixel (round(u), round(v)). Projection follows docs/data.md: q = lidar2img @ [x, y, z, 1],
(u, v) = (q0 / q2, q1 / q2), and q2 is the depth along the camera axis (meters).
"""

from typing import Dict, Optional, Tuple

import torch

__all__ = [
    "intersect_box",
    "lidar_ray_candidates",
    "sensor_origins",
    "project_points",
    "lidar_rays",
    "camera_rays",
    "build_rays",
]

# Projections closer than this to the camera plane (meters of depth) are not visible.
_MIN_PROJECTION_DEPTH = 1e-3


def intersect_box(
    origins: torch.Tensor, directions: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Where rays enter and leave an axis-aligned box (slab method).

    Args:
        origins, directions: (R, 3) ray origins (meters) and unit directions.
        box_min, box_max: (3,) box corners, meters.

    Returns:
        near, far: (R,) distances along each ray, meters; near >= 0 (a ray starting inside the
        box starts at its origin). A ray that misses the box (or has the box behind it) has
        far <= near.
    """
    safe = torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    inverse = 1.0 / safe
    t_lo = (box_min - origins) * inverse
    t_hi = (box_max - origins) * inverse
    near = torch.minimum(t_lo, t_hi).amax(dim=-1).clamp_min(0.0)
    far = torch.maximum(t_lo, t_hi).amin(dim=-1)
    return near, far


def lidar_ray_candidates(
    batch: dict, point_cloud_range=None, min_distance: float = 0.0
) -> torch.Tensor:
    """Points that can be rendered as LiDAR rays, (N,) bool over the rows of `batch["points"]`.

    A candidate is a key-frame point (time lag `points[:, 4] == 0`: points merged from earlier
    sweeps were seen from another sensor position, so they do not lie on a ray from the key
    frame's sensor), farther than `min_distance` meters horizontally from its sample's sensor
    (nearer returns are the sensor housing and the ego vehicle), and, when `point_cloud_range`
    (x_min, y_min, z_min, x_max, y_max, z_max) is given, inside it (the renderer clips rays to
    that box, so farther points cannot be rendered).
    """
    points = batch["points"]
    candidates = torch.ones(points.shape[0], dtype=torch.bool, device=points.device)
    if points.shape[1] >= 5:
        candidates &= points[:, 4] == 0
    if min_distance > 0:
        origins = sensor_origins(batch)[batch["points_batch"].long()]
        candidates &= (points[:, :2] - origins[:, :2]).norm(dim=-1) > min_distance
    if point_cloud_range is not None:
        lo = points.new_tensor(point_cloud_range[:3])
        hi = points.new_tensor(point_cloud_range[3:])
        candidates &= ((points[:, :3] >= lo) & (points[:, :3] <= hi)).all(dim=-1)
    return candidates


def sensor_origins(batch: dict) -> torch.Tensor:
    """(B, 3) LiDAR sensor position per sample in the augmented LiDAR frame, meters.

    The sensor sits at the origin of the original LiDAR frame; the global point augmentation
    (`aug_matrix`, augmented = aug_matrix @ original) moves it to `aug_matrix[:, :3, 3]`.
    """
    aug_matrix = batch.get("aug_matrix")
    if aug_matrix is None:
        return batch["points"].new_zeros(int(batch["batch_size"]), 3)
    return aug_matrix[:, :3, 3].to(batch["points"].dtype)


def project_points(points_xyz: torch.Tensor, lidar2img: torch.Tensor, image_size):
    """Project LiDAR-frame points into images.

    Args:
        points_xyz: (N, 3) points, meters.
        lidar2img: (N_cam, 4, 4) projections.
        image_size: (H, W) pixels.

    Returns:
        uv: (N_cam, N, 2) continuous pixel coordinates (u along the width).
        depth: (N_cam, N) depth along the camera axis, meters.
        visible: (N_cam, N) bool: in front of the camera and inside the image (its rounded pixel
            exists).
    """
    height, width = image_size
    homogeneous = torch.cat([points_xyz, points_xyz.new_ones(points_xyz.shape[0], 1)], dim=1)
    projected = torch.einsum("cij,nj->cni", lidar2img.to(points_xyz.dtype), homogeneous)
    depth = projected[..., 2]
    uv = projected[..., :2] / depth.clamp_min(_MIN_PROJECTION_DEPTH).unsqueeze(-1)
    pixel = torch.round(uv)
    visible = (
        (depth > _MIN_PROJECTION_DEPTH)
        & (pixel[..., 0] >= 0)
        & (pixel[..., 0] <= width - 1)
        & (pixel[..., 1] >= 0)
        & (pixel[..., 1] <= height - 1)
    )
    return uv, depth, visible


def lidar_rays(batch: dict, ray_index: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Rays from the LiDAR sensor through chosen points.

    Args:
        batch: a batch (docs/data.md): `points` (N, 5), `points_batch` (N,), `aug_matrix`.
        ray_index: (B, N_L) rows of `batch["points"]`, sample b's rays in row b.

    Returns:
        dict with (R,) / (R, 3) tensors, R = B * N_L: `origins` (meters), `directions` (unit),
        `batch_index`, `target_range` (sensor-to-point distance, meters), `point_index`.
    """
    point_index = ray_index.reshape(-1)
    points = batch["points"][point_index, :3]
    batch_index = batch["points_batch"][point_index].long()
    origins = sensor_origins(batch)[batch_index]
    offsets = points - origins
    target_range = offsets.norm(dim=-1)
    directions = offsets / target_range.clamp_min(1e-6).unsqueeze(-1)
    return {
        "origins": origins,
        "directions": directions,
        "batch_index": batch_index,
        "target_range": target_range,
        "point_index": point_index,
    }


def _pixel_range_lookup(batch, sample, range_points, camera_origins, image_size):
    """Nearest LiDAR range per pixel of sample `sample`'s cameras, as a sorted key table.

    Returns (keys, ranges): sorted unique keys camera * H * W + v * W + u of the pixels hit by
    a point of the `range_points` (N,) mask, and the smallest camera-to-point distance (meters)
    in each.
    """
    height, width = image_size
    mask = (batch["points_batch"] == sample) & range_points
    points = batch["points"][mask, :3]
    uv, _, visible = project_points(points, batch["lidar2img"][sample], image_size)
    camera, point = visible.nonzero(as_tuple=True)
    pixel = torch.round(uv[camera, point]).long()
    keys = (camera * height + pixel[:, 1]) * width + pixel[:, 0]
    ranges = (points[point] - camera_origins[camera]).norm(dim=-1)
    unique_keys, inverse = torch.unique(keys, return_inverse=True)
    nearest = ranges.new_full((unique_keys.shape[0],), float("inf"))
    nearest = nearest.scatter_reduce(0, inverse, ranges, reduce="amin")
    return unique_keys, nearest


def camera_rays(
    batch: dict,
    pixel_uv: torch.Tensor,
    with_target_range: bool = True,
    range_points: Optional[torch.Tensor] = None,
) -> Dict[str, torch.Tensor]:
    """Rays from each camera centre through chosen pixel centres.

    Args:
        batch: a batch (docs/data.md): `images` (B, N_cam, 3, H, W) 0-255, `lidar2cam`,
            `intrinsics`, and for the target range `lidar2img`, `points`, `points_batch`.
        pixel_uv: (B, N_cam, N_C, 2) long pixel (u, v) = (column, row).
        with_target_range: look up the LiDAR range of each pixel (projects the points);
            when False, `target_range_valid` is all False.
        range_points: (N,) bool: the points giving target ranges (default: the key-frame
            points, `lidar_ray_candidates(batch)`).

    Returns:
        dict with R = B * N_cam * N_C rays: `origins` (R, 3) camera centres (meters),
        `directions` (R, 3) unit, `batch_index` (R,), `camera_index` (R,), `pixel_uv` (R, 2),
        `target_rgb` (R, 3) in [0, 1], `target_range` (R,) camera-to-point distance (meters) of
        the nearest key-frame LiDAR point projecting into the pixel, 0 where none does, and
        `target_range_valid` (R,) bool.
    """
    images = batch["images"]
    batch_size, num_cameras, _, height, width = images.shape
    num_pixels = pixel_uv.shape[2]
    dtype = batch["points"].dtype
    cam2lidar = torch.linalg.inv(batch["lidar2cam"].to(torch.float64)).to(dtype)
    inverse_intrinsics = torch.linalg.inv(batch["intrinsics"].to(torch.float64)).to(dtype)

    uv = pixel_uv.to(dtype)
    homogeneous = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)  # (B, N_cam, N_C, 3)
    directions_cam = torch.einsum("bcij,bcnj->bcni", inverse_intrinsics, homogeneous)
    directions = torch.einsum("bcij,bcnj->bcni", cam2lidar[..., :3, :3], directions_cam)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origins = cam2lidar[..., :3, 3].unsqueeze(2).expand(-1, -1, num_pixels, -1)

    batch_index = torch.arange(batch_size, device=images.device).view(-1, 1, 1)
    camera_index = torch.arange(num_cameras, device=images.device).view(1, -1, 1)
    batch_index = batch_index.expand(-1, num_cameras, num_pixels)
    camera_index = camera_index.expand(batch_size, -1, num_pixels)
    u, v = pixel_uv[..., 0].long(), pixel_uv[..., 1].long()
    rgb = images[batch_index, camera_index, :, v, u] / 255.0  # (B, N_cam, N_C, 3)

    target_range = images.new_zeros(batch_size, num_cameras * num_pixels, dtype=dtype)
    valid = torch.zeros_like(target_range, dtype=torch.bool)
    if with_target_range and range_points is None:
        range_points = lidar_ray_candidates(batch)
    for sample in range(batch_size if with_target_range else 0):
        keys, ranges = _pixel_range_lookup(
            batch, sample, range_points, cam2lidar[sample, :, :3, 3], (height, width)
        )
        if keys.numel() == 0:
            continue
        query = ((camera_index[sample] * height + v[sample]) * width + u[sample]).reshape(-1)
        slot = torch.searchsorted(keys, query).clamp_max(keys.numel() - 1)
        hit = keys[slot] == query
        valid[sample] = hit
        target_range[sample] = torch.where(hit, ranges[slot], torch.zeros_like(ranges[slot]))

    return {
        "origins": origins.reshape(-1, 3),
        "directions": directions.reshape(-1, 3),
        "batch_index": batch_index.reshape(-1),
        "camera_index": camera_index.reshape(-1),
        "pixel_uv": pixel_uv.reshape(-1, 2),
        "target_rgb": rgb.reshape(-1, 3).to(dtype),
        "target_range": target_range.reshape(-1),
        "target_range_valid": valid.reshape(-1),
    }


def build_rays(batch: dict, sampled: dict) -> Dict[str, Dict[str, torch.Tensor]]:
    """The rays a ray sampler chose, ready for the render head.

    Args:
        batch: a batch (docs/data.md).
        sampled: a ray sampler's output; `lidar_ray_index` (B, N_L) and/or `pixel_uv`
            (B, N_cam, N_C, 2) (a missing or None entry skips that modality), and
            `candidates` (N,) bool, the points that give the camera rays' target ranges.

    Returns:
        {"lidar": lidar_rays(...), "camera": camera_rays(...)}, each key only when sampled.
    """
    rays = {}
    if sampled.get("lidar_ray_index") is not None:
        rays["lidar"] = lidar_rays(batch, sampled["lidar_ray_index"])
    if sampled.get("pixel_uv") is not None and batch.get("images") is not None:
        rays["camera"] = camera_rays(
            batch, sampled["pixel_uv"], range_points=sampled.get("candidates")
        )
    return rays
