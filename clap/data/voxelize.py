"""Points -> input voxels: the mean of the points in each occupied cell of the input grid."""

from typing import Sequence, Tuple

import numpy as np

__all__ = ["voxelize"]


def voxelize(
    points: np.ndarray,
    point_cloud_range: Sequence[float],
    voxel_size: Sequence[float],
    max_points_per_voxel: int,
    max_voxels: int,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average the points of each occupied input voxel (deterministic, vectorised).

    The grid is that of `clap.layers.VolumeGrid` (`input_grid_size`): cell (x, y, z) spans
    `range_min + index * voxel_size` up to the next index. Points outside the grid are ignored.
    Voxels are numbered in order of their first point; only the first `max_voxels` voxels and,
    in each voxel, the first `max_points_per_voxel` points (in point order) are kept.

    Args:
        points: (N, C) points with x, y, z (meters) first.
        point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max), meters.
        voxel_size: (x, y, z), meters.
        max_points_per_voxel: points averaged per voxel at most.
        max_voxels: voxels returned at most.

    Returns:
        voxel_features: (V, C) float32, mean of the kept points of each voxel.
        voxel_coords: (V, 3) int32, `[x, y, z]` voxel index on the input grid.
        voxel_num_points: (V,) int32, number of points averaged.
    """
    points = np.asarray(points)
    num_channels = points.shape[1]
    low = np.asarray(point_cloud_range[:3], dtype=np.float64)
    high = np.asarray(point_cloud_range[3:], dtype=np.float64)
    size = np.asarray(voxel_size, dtype=np.float64)
    grid = np.round((high - low) / size).astype(np.int64)

    coords = np.floor((points[:, :3].astype(np.float64) - low) / size).astype(np.int64)
    inside = np.all((coords >= 0) & (coords < grid), axis=1)
    points, coords = points[inside], coords[inside]
    if len(points) == 0 or max_voxels <= 0 or max_points_per_voxel <= 0:
        return (
            np.zeros((0, num_channels), np.float32),
            np.zeros((0, 3), np.int32),
            np.zeros((0,), np.int32),
        )

    keys = (coords[:, 2] * grid[1] + coords[:, 1]) * grid[0] + coords[:, 0]
    _, first_point, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    appearance = np.argsort(first_point, kind="stable")
    voxel_rank = np.empty_like(appearance)
    voxel_rank[appearance] = np.arange(len(appearance))
    voxel_id = voxel_rank[inverse]

    # Position of each point among the points of its voxel, in point order.
    by_voxel = np.argsort(voxel_id, kind="stable")
    counts = np.bincount(voxel_id)
    starts = np.cumsum(counts) - counts
    position = np.empty(len(points), dtype=np.int64)
    position[by_voxel] = np.arange(len(points)) - starts[voxel_id[by_voxel]]

    num_voxels = min(len(appearance), int(max_voxels))
    keep = (voxel_id < num_voxels) & (position < max_points_per_voxel)
    kept_ids = voxel_id[keep]
    kept_points = points[keep].astype(np.float64)
    num_points = np.bincount(kept_ids, minlength=num_voxels)
    sums = np.stack(
        [
            np.bincount(kept_ids, weights=kept_points[:, c], minlength=num_voxels)
            for c in range(num_channels)
        ],
        axis=1,
    )
    features = (sums / num_points[:, None]).astype(np.float32)
    voxel_coords = coords[first_point[appearance[:num_voxels]]].astype(np.int32)
    return features, voxel_coords, num_points.astype(np.int32)
