import math
import os

import numpy as np
import pytest
import torch

from clap.config import get_cfg
from clap.layers.volume import VolumeGrid
from clap.modeling.ray_sampler import (
    Curvature,
    DepthAware,
    GeometricCurvature,
    Uniform,
    build_ray_sampler,
    field_curvature,
    surface_variation,
)
from clap.modeling.ray_sampler.common import point_weight_maps
from clap.modeling.render_head.neus import NeuSRenderHead
from clap.modeling.render_head.rays import build_rays

FRAME = os.path.join(os.path.dirname(__file__), "data", "nuscenes_frame")
HEIGHT, WIDTH = 24, 32
NUM_KEY_FRAME_POINTS = 150


def _camera(yaw):
    """lidar2cam and intrinsics of a camera at (0, 0, 0.5) m looking along yaw (radians)."""
    forward = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
    right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])
    down = torch.tensor([0.0, 0.0, -1.0])
    rotation = torch.stack([right, down, forward])
    lidar2cam = torch.eye(4)
    lidar2cam[:3, :3] = rotation
    lidar2cam[:3, 3] = -rotation @ torch.tensor([0.0, 0.0, 0.5])
    intrinsics = torch.tensor([[16.0, 0.0, 15.5], [0.0, 16.0, 11.5], [0.0, 0.0, 1.0]])
    return lidar2cam, intrinsics


def _synthetic_batch(seed=0):
    """Two samples, two cameras (front, back), key-frame points on a ground plane and a box,
    plus sweep points (time lag 0.05 s)."""
    generator = torch.Generator().manual_seed(seed)
    points, points_batch = [], []
    for sample in range(2):
        ground = torch.rand(100, 3, generator=generator) * torch.tensor([30.0, 20.0, 0.0])
        ground = ground - torch.tensor([15.0, 10.0, 1.5])
        box = torch.rand(50, 3, generator=generator) * 1.5 + torch.tensor([6.0, -0.5, -1.5])
        key_frame = torch.cat([ground, box])
        sweeps = key_frame[:50] + 0.05 * torch.randn(50, 3, generator=generator)
        xyz = torch.cat([key_frame, sweeps])
        time_lag = torch.cat([torch.zeros(NUM_KEY_FRAME_POINTS), torch.full((50,), 0.05)])
        intensity = torch.rand(200, 1, generator=generator)
        points.append(torch.cat([xyz, intensity, time_lag[:, None]], dim=1))
        points_batch.append(torch.full((200,), sample))
    cameras = [_camera(0.0), _camera(math.pi)]
    lidar2cam = torch.stack([c[0] for c in cameras])
    intrinsics = torch.stack([c[1] for c in cameras])
    padded = torch.eye(4).repeat(2, 1, 1)
    padded[:, :3, :3] = intrinsics
    return {
        "points": torch.cat(points),
        "points_batch": torch.cat(points_batch),
        "images": torch.rand(2, 2, 3, HEIGHT, WIDTH, generator=generator) * 255,
        "lidar2cam": lidar2cam.expand(2, -1, -1, -1).clone(),
        "intrinsics": intrinsics.expand(2, -1, -1, -1).clone(),
        "lidar2img": (padded @ lidar2cam).expand(2, -1, -1, -1).clone(),
        "image_size": (HEIGHT, WIDTH),
        "aug_matrix": torch.eye(4).repeat(2, 1, 1),
        "batch_size": 2,
    }


def _sphere_field(radius=3.0, center=(0.0, 0.0, 5.0)):
    center = torch.tensor(center)
    return lambda points, batch_index: (points - center.to(points.dtype)).norm(dim=-1) - radius


def _make(name, num_lidar_rays, num_pixels):
    common = {"num_lidar_rays": num_lidar_rays, "num_pixels_per_camera": num_pixels}
    if name == "Uniform":
        return Uniform(**common)
    if name == "DepthAware":
        return DepthAware(**common)
    if name == "Curvature":
        return Curvature(**common)
    return GeometricCurvature(knn=8, **common)


@pytest.mark.parametrize("name", ["Uniform", "DepthAware", "Curvature", "GeometricCurvature"])
@pytest.mark.parametrize("num_lidar_rays, num_pixels", [(64, 40), (400, 900)])
def test_budgets_are_exact_and_indices_valid(name, num_lidar_rays, num_pixels):
    torch.manual_seed(0)
    batch = _synthetic_batch()
    sampler = _make(name, num_lidar_rays, num_pixels)
    result = sampler.sample(batch, field=_sphere_field())
    index = result["lidar_ray_index"]
    assert index.shape == (2, num_lidar_rays) and index.dtype == torch.long
    for sample in range(2):
        assert (batch["points_batch"][index[sample]] == sample).all()
        assert (batch["points"][index[sample], 4] == 0).all()  # key-frame points only
        if num_lidar_rays <= NUM_KEY_FRAME_POINTS:
            assert index[sample].unique().numel() == num_lidar_rays  # without replacement
    pixels = result["pixel_uv"]
    assert pixels.shape == (2, 2, num_pixels, 2) and pixels.dtype == torch.long
    assert (pixels[..., 0] >= 0).all() and (pixels[..., 0] < WIDTH).all()
    assert (pixels[..., 1] >= 0).all() and (pixels[..., 1] < HEIGHT).all()
    if name != "DepthAware" and num_pixels <= HEIGHT * WIDTH:
        flat = pixels[..., 1] * WIDTH + pixels[..., 0]
        for sample in range(2):
            for camera in range(2):
                assert flat[sample, camera].unique().numel() == num_pixels
    rays = build_rays(batch, result)
    assert rays["lidar"]["origins"].shape == (2 * num_lidar_rays, 3)
    assert rays["camera"]["target_rgb"].shape == (2 * 2 * num_pixels, 3)


def test_candidates_are_key_frame_points_in_the_box_beyond_the_minimum_distance():
    batch = _synthetic_batch()
    sampler = Uniform(
        num_lidar_rays=400,
        num_pixels_per_camera=0,
        point_cloud_range=(-10.0, -8.0, -3.0, 10.0, 8.0, 3.0),
        min_distance=2.0,
    )
    points = batch["points"]
    expected = (
        (points[:, 4] == 0)
        & (points[:, :2].norm(dim=1) > 2.0)
        & (points[:, 0].abs() <= 10.0)
        & (points[:, 1].abs() <= 8.0)
    )
    assert 0 < int(expected.sum()) < 300
    result = sampler.sample(batch)
    assert torch.equal(result["candidates"], expected)
    assert expected[result["lidar_ray_index"]].all()
    assert result["pixel_uv"] is None


def test_curvature_warmup_draws_exactly_like_uniform():
    batch = _synthetic_batch()
    curvature = Curvature(num_lidar_rays=32, num_pixels_per_camera=20)
    curvature.use_uniform = True
    torch.manual_seed(7)
    expected = Uniform(num_lidar_rays=32, num_pixels_per_camera=20).sample(batch)
    torch.manual_seed(7)
    during_warmup = curvature.sample(batch)  # no field needed while uniform
    assert torch.equal(expected["lidar_ray_index"], during_warmup["lidar_ray_index"])
    assert torch.equal(expected["pixel_uv"], during_warmup["pixel_uv"])
    curvature.use_uniform = False
    with pytest.raises(ValueError, match="field"):
        curvature.sample(batch)


def test_field_curvature_of_a_sphere_and_a_plane():
    radius = 2.0
    directions = torch.nn.functional.normalize(torch.randn(20, 3, dtype=torch.float64), dim=1)
    points = radius * directions + torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64)
    batch_index = torch.zeros(20, dtype=torch.long)
    field = _sphere_field(radius)
    norm = field_curvature(field, points, batch_index, "norm", chunk_size=7)
    mean = field_curvature(field, points, batch_index, "mean")
    torch.testing.assert_close(norm, torch.full_like(norm, math.sqrt(2.0) / radius))
    torch.testing.assert_close(mean, torch.full_like(mean, 2.0 / radius / 3.0))
    assert not norm.requires_grad

    def plane(p, b):
        return p[:, 2] - 1.0

    torch.testing.assert_close(
        field_curvature(plane, points, batch_index), torch.zeros(20, dtype=torch.float64)
    )


def test_field_curvature_equals_the_jacobian_of_the_unit_normal():
    """On a field with unequal principal curvatures, the two tangent Hessian-vector products
    give the norm and the trace of J = d(n / |n|)/dp computed in full."""

    def field(p, b):
        return 0.3 * p[:, 0] ** 2 + torch.sin(p[:, 1]) * p[:, 2] + 0.5 * p[:, 2] ** 3 + p[:, 0]

    points = torch.randn(30, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batch_index = torch.zeros(30, dtype=torch.long)

    def unit_normal(p):
        (normal,) = torch.autograd.grad(field(p, None).sum(), p, create_graph=True)
        return normal / normal.norm(dim=-1, keepdim=True)

    jacobians = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda q: unit_normal(q[None])[0], point)
            for point in points
        ]
    )
    torch.testing.assert_close(
        field_curvature(field, points, batch_index, "norm"), jacobians.flatten(1).norm(dim=1)
    )
    torch.testing.assert_close(
        field_curvature(field, points, batch_index, "mean"),
        jacobians.diagonal(dim1=1, dim2=2).mean(dim=1).abs(),
    )


def test_curvature_weights_are_detached_and_leave_the_field_untouched():
    torch.manual_seed(0)
    grid = VolumeGrid((-16.0, -16.0, -4.0, 16.0, 16.0, 4.0), (2.0, 2.0, 2.0), (2, 2, 2))
    head = NeuSRenderHead(volume_grid=grid, in_channels=4, field_conv_channels=0,
                          geometric_init=False)
    volume = torch.randn(2, 4, *grid.volume_shape, requires_grad=True)
    batch = _synthetic_batch()
    sampler = Curvature(num_lidar_rays=16, num_pixels_per_camera=8)
    result = sampler.sample(batch, field=head.field_function(volume))
    weights = result["point_weights"]
    assert weights.shape == (400,) and not weights.requires_grad
    assert not result["pixel_weights"].requires_grad
    assert (weights[batch["points"][:, 4] == 0] > 0).all()
    assert (weights[batch["points"][:, 4] != 0] == 0).all()
    assert volume.grad is None
    assert all(p.grad is None for p in head.parameters())


def test_curvature_draws_follow_the_weights():
    """Points near the sphere's centre sit on more curved level sets and are drawn more."""
    torch.manual_seed(0)
    batch = _synthetic_batch()
    sampler = Curvature(num_lidar_rays=30, num_pixels_per_camera=8)
    result = sampler.sample(batch, field=_sphere_field(center=(6.5, 0.0, -1.0)))
    weights = result["point_weights"]
    drawn = weights[result["lidar_ray_index"]]
    assert drawn.mean() > 1.5 * weights[batch["points"][:, 4] == 0].mean()


def test_point_weight_maps_project_and_blur():
    batch = _synthetic_batch()
    weights = torch.zeros(400)
    # A key-frame point in front of camera 0 of sample 1, moved onto pixel (u, v) = (20, 9).
    row = 200
    depth = 8.0
    batch["points"][row, :3] = torch.tensor(
        [depth, (15.5 - 20.0) / 16 * depth, 0.5 + (11.5 - 9.0) / 16 * depth]
    )
    weights[row] = 3.0
    maps = point_weight_maps(batch, weights, blur_kernel=9, blur_sigma=2.0)
    assert maps.shape == (2, 2, HEIGHT, WIDTH)
    assert maps[0].sum() == 0 and maps[1, 1].sum() == 0
    peak = maps[1, 0].flatten().argmax()
    assert (peak % WIDTH, peak // WIDTH) == (20, 9)
    assert maps[1, 0].sum().item() == pytest.approx(3.0, rel=1e-5)


def test_depth_aware_uses_projected_points_then_the_grid():
    torch.manual_seed(0)
    batch = _synthetic_batch()
    sampler = DepthAware(num_lidar_rays=8, num_pixels_per_camera=600, min_distance=3.0,
                         grid_stride=4, sky_fraction=0.4)
    pixels = sampler.sample(batch)["pixel_uv"]
    key_frame = (batch["points_batch"] == 0) & (batch["points"][:, 4] == 0)
    points = batch["points"][key_frame, :3]
    far = points[:, :2].norm(dim=1) > 3.0
    homogeneous = torch.cat([points, torch.ones(points.shape[0], 1)], dim=1)
    projected = homogeneous @ batch["lidar2img"][0, 0].T
    uv = torch.round(projected[:, :2] / projected[:, 2:3]).long()
    inside = (projected[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < WIDTH) & (uv[:, 1] >= 0)
    inside &= uv[:, 1] < HEIGHT
    point_pixels = {tuple(p) for p in uv[inside & far].tolist()}
    chosen = [tuple(p) for p in pixels[0, 0].tolist()]
    num_projected = int((inside & far).sum())
    assert 0 < num_projected < 600
    assert set(chosen[:num_projected]) <= point_pixels
    first_row = math.ceil(0.4 * HEIGHT)
    for u, v in chosen[num_projected:]:
        assert u % 4 == 0 and v >= first_row and (v - first_row) % 4 == 0


def test_surface_variation_separates_planes_from_blobs():
    generator = torch.Generator().manual_seed(0)
    plane = torch.rand(300, 3, generator=generator) * torch.tensor([4.0, 4.0, 0.0])
    blob = torch.randn(300, 3, generator=generator) * 0.3 + torch.tensor([10.0, 0.0, 0.0])
    cloud = torch.cat([plane, blob])
    variation = surface_variation(cloud, cloud, k=16)
    assert variation[:300].max() < 1e-6
    assert variation[300:].mean() > 0.15
    assert variation.max() <= 1 / 3 + 1e-6


def test_geometric_curvature_favours_annotated_objects():
    """On the real frame, points inside the 69 annotated boxes weigh at least twice the rest."""
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.geometry_utils import points_in_box

    nusc = NuScenes(version="v1.0-mini", dataroot=FRAME, verbose=False)
    lidar_token = nusc.sample[0]["data"]["LIDAR_TOP"]
    path, boxes, _ = nusc.get_sample_data(lidar_token)  # boxes in the LiDAR frame
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 5).copy()
    points[:, 4] = 0.0
    in_boxes = np.zeros(points.shape[0], dtype=bool)
    for box in boxes:
        in_boxes |= points_in_box(box, points[:, :3].T)
    assert in_boxes.sum() > 500
    batch = {
        "points": torch.from_numpy(points),
        "points_batch": torch.zeros(points.shape[0], dtype=torch.long),
        "batch_size": 1,
    }
    cfg = get_cfg()
    sampler = GeometricCurvature(
        num_lidar_rays=256,
        num_pixels_per_camera=0,
        point_cloud_range=tuple(cfg.INPUT.POINT_CLOUD_RANGE),
        min_distance=cfg.MODEL.RAY_SAMPLER.MIN_DISTANCE,
        knn=cfg.MODEL.RAY_SAMPLER.KNN,
    )
    result = sampler.sample(batch)
    assert result["pixel_uv"] is None and result["lidar_ray_index"].shape == (1, 256)
    # Compared among the points rays may go through (the others weigh 0 by definition).
    candidates = result["candidates"].numpy()
    weights = result["point_weights"].numpy()
    assert (weights[~candidates] == 0).all()
    in_boxes_weight = weights[candidates & in_boxes].mean()
    assert in_boxes_weight >= 2.0 * weights[candidates & ~in_boxes].mean()


def test_build_from_config():
    cfg = get_cfg()
    cfg.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS = 12
    cfg.MODEL.RAY_SAMPLER.NUM_PIXELS_PER_CAMERA = 5
    for name in ["Uniform", "DepthAware", "Curvature", "GeometricCurvature"]:
        cfg.MODEL.RAY_SAMPLER.NAME = name
        sampler = build_ray_sampler(cfg)
        assert sampler.num_lidar_rays == 12 and sampler.num_pixels_per_camera == 5
    cfg.MODEL.RAY_SAMPLER.NAME = "Curvature"
    assert build_ray_sampler(cfg).warmup_epochs == cfg.MODEL.RAY_SAMPLER.WARMUP_EPOCHS == 4
    cfg.MODEL.RAY_SAMPLER.CURVATURE_REDUCTION = "max"
    with pytest.raises(ValueError, match="CURVATURE_REDUCTION"):
        build_ray_sampler(cfg)
