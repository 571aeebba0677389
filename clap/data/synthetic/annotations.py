"""Per-key-frame annotation values: boxes, LiDAR point counts and camera visibility."""

from typing import Dict, List, Sequence, Tuple

import numpy as np
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import points_in_box
from pyquaternion import Quaternion

from .assets import Mesh
from .geometry import yaw_to_quaternion
from .sensors import Camera, CameraFrame


def box_values(
    size_lwh: Tuple[float, float, float], x: float, y: float, z: float, yaw: float
) -> Tuple[List[float], List[float], List[float]]:
    """nuScenes box of an object standing at (x, y, z) (bottom centre) with heading `yaw`:
    translation (box centre, m), size (width, length, height, m), rotation (w, x, y, z)."""
    length, width, height = size_lwh
    return (
        [float(x), float(y), float(z + height / 2.0)],
        [float(width), float(length), float(height)],
        list(yaw_to_quaternion(yaw)),
    )


def count_points_in_boxes(
    points: np.ndarray,
    boxes: Sequence[Tuple[list, list, list]],
    ego_pose: dict,
    calibrated_sensor: dict,
) -> List[int]:
    """Number of LiDAR points inside each box, counted like the devkit does.

    Args:
        points: (N, 5) float32 key-frame points in the LiDAR frame (as written to disk).
        boxes: (translation, size, rotation) per box in the global frame (the table values).
        ego_pose, calibrated_sensor: the LiDAR sample_data's records.
    """
    # Same layout and operations as LidarPointCloud.from_file + NuScenes.get_sample_data.
    xyz = points.reshape(-1, 5)[:, :4].T[:3, :]
    counts = []
    for translation, size, rotation in boxes:
        box = Box(translation, size, Quaternion(rotation))
        box.translate(-np.array(ego_pose["translation"]))
        box.rotate(Quaternion(ego_pose["rotation"]).inverse)
        box.translate(-np.array(calibrated_sensor["translation"]))
        box.rotate(Quaternion(calibrated_sensor["rotation"]).inverse)
        counts.append(int(points_in_box(box, xyz).sum()))
    return counts


def surface_samples(
    mesh: Mesh, rng: np.random.Generator, count: int = 64
) -> Tuple[np.ndarray, np.ndarray]:
    """`count` points spread over a mesh's surface (area-weighted) and their face normals,
    both (count, 3) in the mesh's own frame."""
    tri = mesh.vertices[mesh.faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    faces = rng.choice(len(area), size=count, p=area / area.sum())
    a, b = rng.random((2, count, 1))
    flip = a + b > 1
    a, b = np.where(flip, 1 - a, a), np.where(flip, 1 - b, b)
    picked = tri[faces]
    points = picked[:, 0] + a * (picked[:, 1] - picked[:, 0]) + b * (picked[:, 2] - picked[:, 0])
    normals = cross[faces] / np.maximum(area[faces, None], 1e-12)
    return points, normals


def visible_fraction(
    samples: Dict[int, Tuple[np.ndarray, np.ndarray]],
    poses: Dict[int, Tuple[float, float, float, float]],
    cameras: Dict[str, Camera],
    frames: Dict[str, CameraFrame],
    ego2world: np.ndarray,
) -> Dict[int, float]:
    """Share of each object's camera-facing surface samples that the six images show.

    Args:
        samples: object index -> (points, normals) in its own frame.
        poses: object index -> (x, y, z, yaw) at the key frame.
        frames: the rendered images (their `object` buffers decide what is seen).
    Returns:
        object index -> fraction in [0, 1] (0 when no camera faces it).
    """
    seen = {k: 0 for k in samples}
    facing = {k: 0 for k in samples}
    for channel, camera in cameras.items():
        cam2world = ego2world @ camera.cam2ego
        world2cam = np.linalg.inv(cam2world)
        origin = cam2world[:3, 3]
        buffer = frames[channel].object
        for index, (points, normals) in samples.items():
            x, y, z, yaw = poses[index]
            c, s = np.cos(yaw), np.sin(yaw)
            rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
            world_pts = points @ rot.T + np.array([x, y, z])
            world_nrm = normals @ rot.T
            cam_pts = world_pts @ world2cam[:3, :3].T + world2cam[:3, 3]
            front = cam_pts[:, 2] > 0.1
            if not front.any():
                continue
            uvw = cam_pts[front] @ camera.intrinsic.T
            col = np.floor(uvw[:, 0] / uvw[:, 2]).astype(np.int64)
            row = np.floor(uvw[:, 1] / uvw[:, 2]).astype(np.int64)
            toward = np.sum(world_nrm[front] * (origin - world_pts[front]), axis=1) > 0
            inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
            ok = inside & toward
            facing[index] += int(ok.sum())
            seen[index] += int((buffer[row[ok], col[ok]] == index).sum())
    return {k: (seen[k] / facing[k] if facing[k] else 0.0) for k in samples}
