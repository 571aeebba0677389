"""View 2, point sampling, volume sampling and Hungarian matching of SimIPU."""

import math

import numpy as np
import pytest
import torch
from simipu.matching import match_views
from simipu.sampling import (
    farthest_point_sample,
    random_point_sample,
    sample_point_subset,
    sample_volume_at_points,
)
from simipu.views import SecondView, transform_points

from clap.data.voxelize import voxelize

RANGE = [-8.0, -8.0, -2.0, 8.0, 8.0, 2.0]
VOXEL = [0.5, 0.5, 0.5]


def random_cloud(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(RANGE[:3]), torch.tensor(RANGE[3:])
    xyz = low * 0.6 + torch.rand(count, 3, generator=generator) * (high - low) * 0.6
    return torch.cat([xyz, torch.rand(count, 2, generator=generator)], dim=1)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_hungarian_matching_recovers_the_identity_after_augmenting(flip_prob):
    torch.manual_seed(3)
    cloud = random_cloud(300)
    view = SecondView([-math.pi / 2, math.pi / 2], [0.75, 1.25], flip_prob, RANGE, VOXEL, 5, 1000)
    transforms, _, _, _ = view(cloud, torch.zeros(len(cloud), dtype=torch.long), 1)
    permutation = torch.randperm(len(cloud))
    view2 = transform_points(cloud[permutation], transforms[0])

    view1_index, view2_index = match_views(cloud[:, :3], view2[:, :3], transforms[0])

    assert len(view1_index) == len(cloud)
    assert torch.equal(view1_index, permutation[view2_index])
    # the drawn transform is a scaled rotation about z, mirrored when flipped
    linear = transforms[0][:3, :3]
    scale = abs(float(torch.linalg.det(linear))) ** (1 / 3)
    assert 0.75 <= scale <= 1.25
    assert (float(torch.linalg.det(linear)) < 0) == (flip_prob == 1.0)


def test_matching_of_unequal_sets_pairs_every_point_of_the_smaller_one_to_its_nearest():
    view1 = torch.tensor([[0.0, 0, 0], [5.0, 0, 0], [10.0, 0, 0], [0.0, 7, 0]])
    view2 = torch.tensor([[10.1, 0, 0], [0.1, 7, 0]])
    view1_index, view2_index = match_views(view1, view2, torch.eye(4, dtype=torch.float64))
    assert dict(zip(view2_index.tolist(), view1_index.tolist())) == {0: 2, 1: 3}
    empty = match_views(view1, view2[:0], torch.eye(4, dtype=torch.float64))
    assert [len(i) for i in empty] == [0, 0]


def test_second_view_moves_each_sample_by_its_own_transform_and_revoxelizes():
    torch.manual_seed(0)
    cloud = torch.cat([random_cloud(200, seed=1), random_cloud(150, seed=2)])
    points_batch = torch.cat([torch.zeros(200, dtype=torch.long),
                              torch.ones(150, dtype=torch.long)])
    view = SecondView([-math.pi / 2, math.pi / 2], [0.75, 1.25], 0.5, RANGE, VOXEL, 5, 1000)
    transforms, view_points, features, coords = view(cloud, points_batch, 2)

    assert transforms.shape == (2, 4, 4)
    assert not torch.allclose(transforms[0], transforms[1])
    for index in range(2):
        moved = transform_points(cloud[points_batch == index], transforms[index])
        low, high = torch.tensor(RANGE[:3]), torch.tensor(RANGE[3:])
        inside = ((moved[:, :3] >= low) & (moved[:, :3] < high)).all(dim=1)
        assert torch.allclose(view_points[index], moved[inside])
        expected_features, expected_coords, _ = voxelize(
            moved[inside].numpy(), RANGE, VOXEL, 5, 1000)
        rows = coords[:, 0] == index
        assert np.array_equal(coords[rows, 1:].numpy(), expected_coords)
        assert np.allclose(features[rows].numpy(), expected_features, atol=1e-5)
    # the draw follows torch's generator
    torch.manual_seed(0)
    assert torch.equal(view(cloud, points_batch, 2)[0], transforms)


def test_point_subsets():
    torch.manual_seed(0)
    xyz = random_cloud(500)[:, :3]
    for method in ("random", "farthest"):
        index = sample_point_subset(xyz, 64, method)
        assert len(index) == 64 and len(set(index.tolist())) == 64
        fewer = sample_point_subset(xyz[:10], 64, method)
        assert torch.equal(fewer.sort().values, torch.arange(10))
    with pytest.raises(ValueError, match="POINT_SAMPLING"):
        sample_point_subset(xyz, 8, "grid")
    # farthest-point subsets are spread out: their closest pair is farther apart than a random
    # subset's
    def closest_pair(points):
        distances = torch.cdist(points, points) + torch.eye(len(points)) * 1e9
        return float(distances.min())

    assert closest_pair(xyz[farthest_point_sample(xyz, 32)]) > 2 * closest_pair(
        xyz[random_point_sample(xyz, 32)])


def test_volume_sampling_is_trilinear_between_cell_centres():
    # a volume whose features are its cell centres: trilinear interpolation of a linear function
    # is exact, so inside the centres' hull the sampled feature is the point itself
    point_cloud_range = [-4.0, -2.0, -1.0, 4.0, 2.0, 1.0]
    shape_zyx = (2, 4, 8)
    axes = [torch.linspace(lo + (hi - lo) / n / 2, hi - (hi - lo) / n / 2, n) for lo, hi, n in
            zip(point_cloud_range[:3], point_cloud_range[3:], shape_zyx[::-1])]
    zz, yy, xx = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    volume = torch.stack([xx, yy, zz])
    points = torch.tensor([[0.3, -0.2, 0.1], [-3.4, 1.4, -0.4], [3.4, -1.1, 0.45]])
    sampled = sample_volume_at_points(volume, points, point_cloud_range)
    assert sampled.shape == (3, 3)
    assert torch.allclose(sampled, points, atol=1e-5)
    # beyond the outermost centres the border values are kept
    edge = sample_volume_at_points(volume, torch.tensor([[3.9, 1.9, 0.9]]), point_cloud_range)
    assert torch.allclose(edge, torch.tensor([[3.5, 1.5, 0.5]]), atol=1e-5)
