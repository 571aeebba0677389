"""Small geometry helpers: poses, quaternions, polylines, rectangle overlap, polygon triangulation.

Conventions: world frame x, y on the ground, z up, meters; yaw in radians about +z (0 along +x);
quaternions (w, x, y, z) as nuScenes stores them.
"""

from typing import Sequence, Tuple

import numpy as np


def yaw_to_quaternion(yaw: float) -> Tuple[float, float, float, float]:
    """Rotation by `yaw` radians about +z as a (w, x, y, z) quaternion."""
    return (float(np.cos(yaw / 2.0)), 0.0, 0.0, float(np.sin(yaw / 2.0)))


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """(w, x, y, z) quaternion (normalised here) -> (3, 3) rotation matrix."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def pose_matrix(translation: Sequence[float], rotation: Sequence[float]) -> np.ndarray:
    """(4, 4) transform from a translation (3,) and a (w, x, y, z) quaternion."""
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_to_matrix(rotation)
    matrix[:3, 3] = translation
    return matrix


def yaw_pose_matrix(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    """(4, 4) transform of a pose on the ground: rotation `yaw` about +z, then translation."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0, x], [s, c, 0, y], [0, 0, 1, z], [0, 0, 0, 1]], dtype=np.float64)


def wrap_angle(angle):
    """Wrap radians into [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


class Polyline:
    """A 2D curve given by vertices (N, 2), parametrised by arc length s in meters.

    `point(s, offset)` returns the point at arc length s shifted by `offset` meters to the left
    of the direction of travel; `heading(s)` the direction of travel in radians. Outside
    [0, length] the first / last segment is extended straight.
    """

    def __init__(self, vertices: np.ndarray):
        vertices = np.asarray(vertices, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 2:
            raise ValueError(f"Polyline needs (N >= 2, 2) vertices, got {vertices.shape}")
        segment = np.diff(vertices, axis=0)
        seg_len = np.linalg.norm(segment, axis=1)
        if np.any(seg_len <= 0):
            raise ValueError("Polyline has repeated vertices")
        self.vertices = vertices
        self.cumulative = np.concatenate([[0.0], np.cumsum(seg_len)])
        self.length = float(self.cumulative[-1])
        self._seg_dir = segment / seg_len[:, None]
        self._seg_heading = np.arctan2(self._seg_dir[:, 1], self._seg_dir[:, 0])

    def _locate(self, s):
        s = np.asarray(s, dtype=np.float64)
        index = np.clip(
            np.searchsorted(self.cumulative, s, side="right") - 1, 0, len(self._seg_dir) - 1
        )
        return s, index

    def heading(self, s) -> np.ndarray:
        """Direction of travel (radians) at arc length s, blended across vertices so that it
        changes continuously."""
        s, index = self._locate(s)
        seg_start = self.cumulative[index]
        seg_len = self.cumulative[index + 1] - seg_start
        frac = np.clip((s - seg_start) / seg_len, 0.0, 1.0)
        h = self._seg_heading[index]
        prev_h = self._seg_heading[np.maximum(index - 1, 0)]
        next_h = self._seg_heading[np.minimum(index + 1, len(self._seg_heading) - 1)]
        # Blend half-way into the neighbouring segments' headings near the vertices.
        blend_prev = np.where(frac < 0.5, (0.5 - frac), 0.0)
        blend_next = np.where(frac >= 0.5, (frac - 0.5), 0.0)
        return h + blend_prev * wrap_angle(prev_h - h) + blend_next * wrap_angle(next_h - h)

    def point(self, s, offset=0.0) -> np.ndarray:
        """Points (..., 2) at arc length s, `offset` meters to the left."""
        s, index = self._locate(s)
        along = (s - self.cumulative[index])[..., None]
        base = self.vertices[index] + along * self._seg_dir[index]
        heading = self.heading(s)
        left = np.stack([-np.sin(heading), np.cos(heading)], axis=-1)
        return base + np.asarray(offset, dtype=np.float64)[..., None] * left

    def offset_vertices(self, offset: float) -> np.ndarray:
        """Vertices (N, 2) of the curve shifted `offset` meters to the left."""
        return self.point(self.cumulative, np.full(len(self.cumulative), offset))

    def project(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Arc length and signed left offset of the closest curve point to each (M, 2) point."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        start = self.vertices[:-1]
        rel = points[:, None, :] - start[None]
        seg_len = np.diff(self.cumulative)
        along = np.clip(np.einsum("msk,sk->ms", rel, self._seg_dir), 0.0, seg_len[None])
        closest = start[None] + along[..., None] * self._seg_dir[None]
        dist = np.linalg.norm(points[:, None, :] - closest, axis=2)
        best = np.argmin(dist, axis=1)
        rows = np.arange(len(points))
        s = self.cumulative[best] + along[rows, best]
        d = rel[rows, best]
        cross = self._seg_dir[best, 0] * d[:, 1] - self._seg_dir[best, 1] * d[:, 0]
        return s, np.sign(cross) * dist[rows, best]


def rectangle_corners(cx, cy, yaw, length, width) -> np.ndarray:
    """Corners (..., 4, 2) of oriented rectangles (centre, heading, length along the heading)."""
    cx, cy, yaw, length, width = np.broadcast_arrays(
        *[np.asarray(v, dtype=np.float64) for v in (cx, cy, yaw, length, width)]
    )
    c, s = np.cos(yaw), np.sin(yaw)
    hl, hw = length / 2.0, width / 2.0
    local = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)
    lx = local[:, 0] * hl[..., None]
    ly = local[:, 1] * hw[..., None]
    x = cx[..., None] + c[..., None] * lx - s[..., None] * ly
    y = cy[..., None] + s[..., None] * lx + c[..., None] * ly
    return np.stack([x, y], axis=-1)


def rectangles_overlap(corners_a: np.ndarray, corners_b: np.ndarray) -> np.ndarray:
    """Separating-axis test of convex quadrilaterals (..., 4, 2) vs (..., 4, 2), broadcast.

    Returns a bool array of the broadcast leading shape: True where the interiors intersect.
    """
    corners_a, corners_b = np.broadcast_arrays(corners_a, corners_b)
    overlap = np.ones(corners_a.shape[:-2], dtype=bool)
    for quad in (corners_a, corners_b):
        for k in range(2):
            edge = quad[..., k + 1, :] - quad[..., k, :]
            axis = np.stack([-edge[..., 1], edge[..., 0]], axis=-1)[..., None, :]
            proj_a = np.sum(corners_a * axis, axis=-1)
            proj_b = np.sum(corners_b * axis, axis=-1)
            separated = (proj_a.max(-1) <= proj_b.min(-1)) | (proj_b.max(-1) <= proj_a.min(-1))
            overlap &= ~separated
    return overlap


def _signed_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def triangulate_simple_polygon(poly: np.ndarray) -> np.ndarray:
    """Ear-clipping triangulation of a simple polygon without holes.

    Args:
        poly: (N, 2) vertices in order (either orientation), not repeating the first one.
    Returns:
        (N - 2, 3) int vertex indices, counter-clockwise triangles.
    """
    poly = np.asarray(poly, dtype=np.float64)
    order = list(range(len(poly)))
    if _signed_area(poly) < 0:
        order.reverse()
    triangles = []
    guard = 0
    while len(order) > 3 and guard < 10 * len(poly) ** 2:
        guard += 1
        n = len(order)
        clipped = False
        for k in range(n):
            i0, i1, i2 = order[k - 1], order[k], order[(k + 1) % n]
            a, b, c = poly[i0], poly[i1], poly[i2]
            cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
            if cross <= 1e-12:
                continue
            others = poly[[j for j in order if j not in (i0, i1, i2)]]
            if len(others):
                v0, v1 = c - a, b - a
                v2 = others - a
                d00, d01, d11 = v0 @ v0, v0 @ v1, v1 @ v1
                d20, d21 = v2 @ v0, v2 @ v1
                inv = 1.0 / (d00 * d11 - d01 * d01)
                u = (d11 * d20 - d01 * d21) * inv
                v = (d00 * d21 - d01 * d20) * inv
                if np.any((u >= -1e-12) & (v >= -1e-12) & (u + v <= 1 + 1e-12)):
                    continue
            triangles.append((i0, i1, i2))
            del order[k]
            clipped = True
            break
        if not clipped:
            # Degenerate (collinear) remainder: drop its flattest vertex.
            del order[0]
    if len(order) == 3:
        triangles.append(tuple(order))
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
