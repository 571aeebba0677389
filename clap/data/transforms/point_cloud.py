"""Global point-cloud augmentation that reports its 4 x 4 matrix, and range filters.

A transform maps the LiDAR frame to the augmented frame: `augmented = matrix @ original` for
homogeneous points (meters). Calibrations follow with `lidar2cam @ inverse(matrix)`, so every
augmented point still projects onto the pixel it came from.
"""

from typing import Sequence

import numpy as np

__all__ = [
    "PointCloudTransform",
    "GlobalRotScaleFlipTranslate",
    "points_in_range_mask",
    "boxes_in_range_mask",
]


class PointCloudTransform:
    """An affine map of the LiDAR frame whose linear part is s * (rotation about z, mirrors).

    Args:
        matrix: (4, 4) float64, augmented = matrix @ original.
    """

    def __init__(self, matrix: np.ndarray):
        self.matrix = np.asarray(matrix, dtype=np.float64)
        linear = self.matrix[:3, :3]
        self.scale = float(np.sqrt(abs(np.linalg.det(linear[:2, :2]))))
        planar = linear[:2, :2] / max(self.scale, 1e-12)
        if (
            self.scale <= 0
            or not np.allclose(planar @ planar.T, np.eye(2), atol=1e-9)
            or not np.allclose([linear[0, 2], linear[1, 2], linear[2, 0], linear[2, 1]], 0)
            or not np.isclose(abs(linear[2, 2]), self.scale)
        ):
            raise ValueError(
                "PointCloudTransform needs a uniform scale times a rotation about z (with optional "
                f"x / y mirrors); got linear part\n{linear}"
            )

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """(N, C) points with x, y, z first -> (N, C); other channels are kept, dtype kept."""
        xyz = points[:, :3].astype(np.float64) @ self.matrix[:3, :3].T + self.matrix[:3, 3]
        result = points.copy()
        result[:, :3] = xyz
        return result

    def apply_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """(M, 9) boxes (x, y, z, l, w, h, yaw, vx, vy) -> (M, 9) in the augmented frame."""
        linear = self.matrix[:3, :3]
        result = boxes.astype(np.float64).copy()
        result[:, :3] = result[:, :3] @ linear.T + self.matrix[:3, 3]
        result[:, 3:6] *= self.scale
        headings = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6])], axis=1) @ linear[:2, :2].T
        result[:, 6] = np.arctan2(headings[:, 1], headings[:, 0])
        result[:, 7:9] = boxes[:, 7:9] @ linear[:2, :2].T
        return result.astype(boxes.dtype)

    def apply_lidar2cam(self, lidar2cam: np.ndarray) -> np.ndarray:
        """(..., 4, 4) transforms out of the LiDAR frame -> out of the augmented frame."""
        return lidar2cam @ np.linalg.inv(self.matrix)


class GlobalRotScaleFlipTranslate:
    """Draws a `PointCloudTransform`: rotate about z, scale, mirror x / y, then translate.

    Args:
        rotation_range: (min, max) rotation angle about +z, radians.
        scale_range: (min, max) uniform scale factor.
        flip_x_prob: probability of mirroring the x axis (x -> -x).
        flip_y_prob: probability of mirroring the y axis (y -> -y).
        translation_std: (x, y, z) standard deviation of the translation, meters.
    """

    def __init__(
        self,
        rotation_range: Sequence[float] = (0.0, 0.0),
        scale_range: Sequence[float] = (1.0, 1.0),
        flip_x_prob: float = 0.0,
        flip_y_prob: float = 0.0,
        translation_std: Sequence[float] = (0.0, 0.0, 0.0),
    ):
        self.rotation_range = (float(rotation_range[0]), float(rotation_range[1]))
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        if self.scale_range[0] <= 0:
            raise ValueError(f"INPUT.SCALE must be positive, got {self.scale_range}")
        self.flip_x_prob, self.flip_y_prob = float(flip_x_prob), float(flip_y_prob)
        self.translation_std = np.asarray(translation_std, dtype=np.float64).reshape(3)

    def get_transform(self, rng: np.random.Generator) -> PointCloudTransform:
        angle = rng.uniform(*self.rotation_range)
        scale = rng.uniform(*self.scale_range)
        mirror = np.diag(
            [
                -1.0 if rng.random() < self.flip_x_prob else 1.0,
                -1.0 if rng.random() < self.flip_y_prob else 1.0,
                1.0,
            ]
        )
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
        matrix = np.eye(4)
        matrix[:3, :3] = mirror @ (scale * rotation)
        matrix[:3, 3] = rng.normal(0.0, 1.0, size=3) * self.translation_std
        return PointCloudTransform(matrix)


def points_in_range_mask(points: np.ndarray, point_cloud_range: Sequence[float]) -> np.ndarray:
    """(N,) bool: x, y, z within [min, max) of (x_min, y_min, z_min, x_max, y_max, z_max)."""
    low = np.asarray(point_cloud_range[:3], dtype=points.dtype)
    high = np.asarray(point_cloud_range[3:], dtype=points.dtype)
    return np.all((points[:, :3] >= low) & (points[:, :3] < high), axis=1)


def boxes_in_range_mask(boxes: np.ndarray, point_cloud_range: Sequence[float]) -> np.ndarray:
    """(M,) bool: box centre x, y within the range's bird's-eye-view rectangle."""
    low = np.asarray(point_cloud_range[:2], dtype=np.float64)
    high = np.asarray(point_cloud_range[3:5], dtype=np.float64)
    return np.all((boxes[:, :2] >= low) & (boxes[:, :2] < high), axis=1)
