"""Per-key-frame annotation values: boxes, LiDAR point counts and camera visibility."""

from typing import Dict, List, Sequence, Tuple

import numpy as np
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import points_in_box
from pyquaternion import Quaternion
from scipy.spatial import cKDTree

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
    # Same layout and operations as LidarPointCloud.from_file + NuScenes.get_sample_data; only
    # points within the box's bounding sphere (plus 1 cm) are tested.
    xyz = points.reshape(-1, 5)[:, :4].T[:3, :]
    tree = cKDTree(xyz.T.astype(np.float64))
    ego_rotation = Quaternion(ego_pose["rotation"]).inverse
    sensor_rotation = Quaternion(calibrated_sensor["rotation"]).inverse
    counts = []
    for translation, size, rotation in boxes:
        box = Box(translation, size, Quaternion(rotation))
        box.translate(-np.array(ego_pose["translation"]))
        box.rotate(ego_rotation)
        box.translate(-np.array(calibrated_sensor["translation"]))
        box.rotate(sensor_rotation)
        near = tree.query_ball_point(box.center, 0.5 * float(np.linalg.norm(size)) + 0.01)
        counts.append(int(points_in_box(box, xyz[:, np.sort(near)]).sum()) if near else 0)
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
    indices = list(samples)
    if not indices:
        return {}
    owner = np.concatenate([np.full(len(samples[i][0]), k) for k, i in enumerate(indices)])
    local_pts = np.concatenate([samples[i][0] for i in indices])
    local_nrm = np.concatenate([samples[i][1] for i in indices])
    pose = np.asarray([poses[i] for i in indices], dtype=np.float64)[owner]
    c, s = np.cos(pose[:, 3]), np.sin(pose[:, 3])
    world_pts = np.stack(
        [
            pose[:, 0] + c * local_pts[:, 0] - s * local_pts[:, 1],
            pose[:, 1] + s * local_pts[:, 0] + c * local_pts[:, 1],
            pose[:, 2] + local_pts[:, 2],
        ],
        axis=1,
    )
    world_nrm = np.stack(
        [
            c * local_nrm[:, 0] - s * local_nrm[:, 1],
            s * local_nrm[:, 0] + c * local_nrm[:, 1],
            local_nrm[:, 2],
        ],
        axis=1,
    )
    object_ids = np.asarray(indices)[owner]
    seen = np.zeros(len(indices))
    facing = np.zeros(len(indices))
    for channel, camera in cameras.items():
        cam2world = ego2world @ camera.cam2ego
        world2cam = np.linalg.inv(cam2world)
        cam_pts = world_pts @ world2cam[:3, :3].T + world2cam[:3, 3]
        toward = np.sum(world_nrm * (cam2world[:3, 3] - world_pts), axis=1) > 0
        front = np.nonzero((cam_pts[:, 2] > 0.1) & toward)[0]
        uvw = cam_pts[front] @ camera.intrinsic.T
        col = np.round(uvw[:, 0] / uvw[:, 2]).astype(np.int64)
        row = np.round(uvw[:, 1] / uvw[:, 2]).astype(np.int64)
        inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
        front, col, row = front[inside], col[inside], row[inside]
        facing += np.bincount(owner[front], minlength=len(indices))
        hit = frames[channel].object[row, col] == object_ids[front]
        seen += np.bincount(owner[front[hit]], minlength=len(indices))
    fraction = np.divide(seen, facing, out=np.zeros(len(indices)), where=facing > 0)
    return {i: float(f) for i, f in zip(indices, fraction)}
