"""Voxelization: mean per voxel, limits, grid of VolumeGrid."""

from collections import defaultdict

import numpy as np

from clap.data.voxelize import voxelize
from clap.layers import VolumeGrid

_RANGE = [-2.0, -2.0, -1.0, 2.0, 2.0, 1.0]
_SIZE = [1.0, 1.0, 0.5]


def _tiny_cloud(seed=0, count=60):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([-2.5, -2.5, -1.2], [2.5, 2.5, 1.2], size=(count, 3))
    extra = rng.normal(size=(count, 2))
    return np.concatenate([xyz, extra], axis=1).astype(np.float32)


def _brute_force(points, max_points=None):
    """voxel (x, y, z) -> list of points in order, by a plain loop."""
    voxels = defaultdict(list)
    for point in points.astype(np.float64):
        index = tuple(int(np.floor((point[a] - _RANGE[a]) / _SIZE[a])) for a in range(3))
        grid = VolumeGrid(tuple(_RANGE), tuple(_SIZE), (1, 1, 1)).input_grid_size
        if all(0 <= index[a] < grid[a] for a in range(3)):
            if max_points is None or len(voxels[index]) < max_points:
                voxels[index].append(point)
    return voxels


def test_voxel_mean_equals_brute_force_mean():
    points = _tiny_cloud()
    features, coords, counts = voxelize(points, _RANGE, _SIZE, 100, 1000)
    expected = _brute_force(points)
    assert features.shape == (len(expected), 5) and coords.shape == (len(expected), 3)
    assert features.dtype == np.float32 and coords.dtype == np.int32
    assert counts.sum() < len(points)  # some points lie outside the range
    for feature, coord, count in zip(features, coords, counts):
        members = np.array(expected[tuple(coord.tolist())])
        assert count == len(members)
        np.testing.assert_allclose(feature, members.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_max_points_keeps_the_first_points_of_each_voxel():
    points = _tiny_cloud(seed=1, count=200)
    features, coords, counts = voxelize(points, _RANGE, _SIZE, 2, 1000)
    expected = _brute_force(points, max_points=2)
    assert counts.max() == 2 and len(coords) == len(expected)
    for feature, coord in zip(features, coords):
        members = np.array(expected[tuple(coord.tolist())])
        np.testing.assert_allclose(feature, members.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_max_voxels_keeps_the_first_appearing_voxels_deterministically():
    points = _tiny_cloud(seed=2, count=200)
    all_features, all_coords, _ = voxelize(points, _RANGE, _SIZE, 100, 1000)
    features, coords, _ = voxelize(points, _RANGE, _SIZE, 100, 5)
    assert len(coords) == 5
    np.testing.assert_array_equal(coords, all_coords[:5])
    np.testing.assert_array_equal(features, all_features[:5])
    again = voxelize(points, _RANGE, _SIZE, 100, 5)
    np.testing.assert_array_equal(again[0], features)


def test_coords_are_on_the_volume_grid_input_grid():
    grid = VolumeGrid((-54.0, -54.0, -5.0, 54.0, 54.0, 3.0), (0.075, 0.075, 0.2), (8, 8, 8))
    points = np.array(
        [[-54.0, -54.0, -5.0, 1, 0], [53.99, 53.99, 2.99, 1, 0], [0.0, 0.0, 0.0, 1, 0]], np.float32
    )
    _, coords, _ = voxelize(points, grid.point_cloud_range, grid.voxel_size, 10, 100)
    size_x, size_y, size_z = grid.input_grid_size
    np.testing.assert_array_equal(coords[0], [0, 0, 0])
    np.testing.assert_array_equal(coords[1], [size_x - 1, size_y - 1, size_z - 1])
    np.testing.assert_array_equal(coords[2], [720, 720, 25])


def test_empty_cloud_gives_zero_rows():
    features, coords, counts = voxelize(np.zeros((0, 5), np.float32), _RANGE, _SIZE, 10, 100)
    assert features.shape == (0, 5) and coords.shape == (0, 3) and counts.shape == (0,)
