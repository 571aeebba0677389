"""Geometry of (M, 9) boxes: x, y, z (centre), l, w, h, yaw, vx, vy in the LiDAR frame."""

from typing import Dict

import numpy as np

__all__ = ["box_corners", "points_in_boxes", "boxes_lidar_to_global"]


def _yaw_rotations(yaw: np.ndarray) -> np.ndarray:
    """(M,) yaw, radians -> (M, 3, 3) rotations about +z."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    zeros, ones = np.zeros_like(yaw), np.ones_like(yaw)
    return np.stack(
        [
            np.stack([cos, -sin, zeros], axis=-1),
            np.stack([sin, cos, zeros], axis=-1),
            np.stack([zeros, zeros, ones], axis=-1),
        ],
        axis=-2,
    )


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(M, >=7) boxes -> (M, 8, 3) corners, meters.

    Corners 0-3 are the bottom face and 4-7 the top face, each counter-clockwise seen from
    above, starting at the front-left (+l/2, +w/2); corners 0 and 1 span the front edge.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    signs = np.array(
        [
            [1, 1, -1],
            [1, -1, -1],
            [-1, -1, -1],
            [-1, 1, -1],
            [1, 1, 1],
            [1, -1, 1],
            [-1, -1, 1],
            [-1, 1, 1],
        ],
        dtype=np.float64,
    )
    local = 0.5 * signs[None] * boxes[:, None, 3:6]
    return local @ _yaw_rotations(boxes[:, 6]).transpose(0, 2, 1) + boxes[:, None, :3]


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, >=3) points and (M, >=7) boxes -> (N, M) bool, True where a point lies in a box.

    Faces count as inside.
    """
    points = np.asarray(points, dtype=np.float64)[:, :3]
    boxes = np.asarray(boxes, dtype=np.float64)
    offsets = points[:, None, :] - boxes[None, :, :3]
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    along = offsets[..., 0] * cos + offsets[..., 1] * sin
    across = -offsets[..., 0] * sin + offsets[..., 1] * cos
    half = 0.5 * boxes[:, 3:6]
    return (
        (np.abs(along) <= half[:, 0])
        & (np.abs(across) <= half[:, 1])
        & (np.abs(offsets[..., 2]) <= half[:, 2])
    )


def boxes_lidar_to_global(
    boxes: np.ndarray, lidar2ego: np.ndarray, ego2global: np.ndarray
) -> Dict[str, np.ndarray]:
    """(M, 9) boxes in the (un-augmented) LiDAR frame -> the global frame, nuScenes style.

    Returns `centers` (M, 3) meters, `sizes_wlh` (M, 3) (width, length, height as the devkit's
    `Box.wlh`), `rotations` (M, 3, 3) box -> global, `velocities` (M, 3) m/s (z is 0 in the
    LiDAR frame).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    lidar2global = np.asarray(ego2global, dtype=np.float64) @ np.asarray(
        lidar2ego, dtype=np.float64
    )
    rotation = lidar2global[:3, :3]
    velocities = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], axis=1)
    return {
        "centers": boxes[:, :3] @ rotation.T + lidar2global[:3, 3],
        "sizes_wlh": boxes[:, [4, 3, 5]],
        "rotations": rotation[None] @ _yaw_rotations(boxes[:, 6]),
        "velocities": velocities @ rotation.T,
    }
