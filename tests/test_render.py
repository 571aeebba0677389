import math
import os

import pytest
import torch

from clap.config import get_cfg
from clap.layers.shape_spec import ShapeSpec
from clap.layers.volume import VolumeGrid
from clap.modeling.render_head import build_render_head
from clap.modeling.render_head.neus import NeuSRenderHead, neus_weights, sample_pdf
from clap.modeling.render_head.rays import camera_rays, intersect_box, lidar_rays

FRAME = os.path.join(os.path.dirname(__file__), "data", "nuscenes_frame")

TINY_GRID = VolumeGrid(
    point_cloud_range=(-4.0, -4.0, -2.0, 4.0, 4.0, 2.0),
    voxel_size=(1.0, 1.0, 1.0),
    volume_stride=(2, 2, 2),
)


def test_neus_weights_render_a_plane_at_its_distance():
    distances = torch.linspace(0.0, 10.0, 201).unsqueeze(0)
    surface = 6.3
    sdf = surface - distances  # positive in front of the surface
    weights = neus_weights(sdf, torch.tensor(200.0))
    assert weights.shape == (1, 200)
    midpoints = 0.5 * (distances[:, 1:] + distances[:, :-1])
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-3)
    rendered = (weights * midpoints).sum() / weights.sum()
    assert rendered.item() == pytest.approx(surface, abs=0.05)
    # Nothing is seen behind the first surface: a second crossing adds no weight.
    two_surfaces = torch.minimum(sdf, (distances - 8.0).abs() - 0.5)
    weights = neus_weights(two_surfaces, torch.tensor(200.0))
    assert weights[midpoints > 7.0].sum().item() < 1e-3


def test_sample_pdf_follows_the_weights():
    bins = torch.linspace(0.0, 4.0, 5).expand(3, 5)
    weights = torch.tensor([0.0, 0.0, 1.0, 0.0]).expand(3, 4)
    samples = sample_pdf(bins, weights, 64, deterministic=False)
    assert samples.shape == (3, 64)
    assert (samples[:, 1:] >= samples[:, :-1]).all()
    inside = ((samples >= 2.0) & (samples <= 3.0)).float().mean()
    assert inside > 0.95
    fixed = sample_pdf(bins, weights, 8, deterministic=True)
    assert torch.equal(fixed, sample_pdf(bins, weights, 8, deterministic=True))


def test_intersect_box():
    origins = torch.tensor([[0.0, 0.0, 0.0], [-10.0, 0.0, 0.0], [-10.0, 5.0, 0.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    near, far = intersect_box(
        origins, directions, torch.tensor([-4.0, -4.0, -2.0]), torch.tensor([4.0, 4.0, 2.0])
    )
    torch.testing.assert_close(near[:2], torch.tensor([0.0, 6.0]))
    torch.testing.assert_close(far[:2], torch.tensor([4.0, 14.0]))
    assert far[2] <= near[2]  # misses the box


def test_lidar_rays_start_at_the_augmented_sensor():
    angle = 0.7
    aug = torch.eye(4)
    aug[:2, :2] = torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    aug[:3, 3] = torch.tensor([1.0, -2.0, 0.5])
    original = torch.randn(20, 3) * 10
    augmented = original @ aug[:3, :3].T + aug[:3, 3]
    batch = {
        "points": torch.cat([augmented, torch.zeros(20, 2)], dim=1),
        "points_batch": torch.zeros(20, dtype=torch.long),
        "aug_matrix": aug.unsqueeze(0),
        "batch_size": 1,
    }
    rays = lidar_rays(batch, torch.arange(20).view(1, 20))
    torch.testing.assert_close(rays["origins"], aug[:3, 3].expand(20, 3))
    torch.testing.assert_close(rays["target_range"], original.norm(dim=1), rtol=1e-5, atol=1e-5)
    hits = rays["origins"] + rays["target_range"][:, None] * rays["directions"]
    torch.testing.assert_close(hits, augmented, rtol=1e-5, atol=1e-4)


def _camera_batch():
    """One sample, one 16 x 24 camera at (0.5, 0.2, 1.5) m looking along +x."""
    lidar2cam = torch.eye(4)
    rotation = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    position = torch.tensor([0.5, 0.2, 1.5])
    lidar2cam[:3, :3] = rotation
    lidar2cam[:3, 3] = -rotation @ position
    intrinsics = torch.tensor([[20.0, 0.0, 11.5], [0.0, 20.0, 7.5], [0.0, 0.0, 1.0]])
    padded = torch.eye(4)
    padded[:3, :3] = intrinsics
    # A point seen through the centre of pixel (u, v) = (10, 7) at 5 m depth, and a farther
    # one behind it in the same pixel (the nearer one is the target).
    in_camera = 5.0 * torch.linalg.inv(intrinsics) @ torch.tensor([10.0, 7.0, 1.0])
    point = rotation.T @ in_camera + position
    behind = position + 2.0 * (point - position)
    images = torch.rand(1, 1, 3, 16, 24) * 255
    batch = {
        "points": torch.cat([torch.stack([point, behind]), torch.zeros(2, 2)], dim=1),
        "points_batch": torch.zeros(2, dtype=torch.long),
        "images": images,
        "lidar2cam": lidar2cam.view(1, 1, 4, 4),
        "intrinsics": intrinsics.view(1, 1, 3, 3),
        "lidar2img": (padded @ lidar2cam).view(1, 1, 4, 4),
        "aug_matrix": torch.eye(4).unsqueeze(0),
        "batch_size": 1,
    }
    return batch, point, position


def test_camera_rays_pass_through_pixel_centres():
    batch, point, position = _camera_batch()
    pixel_uv = torch.tensor([[10, 7], [0, 0], [23, 15]]).view(1, 1, 3, 2)
    rays = camera_rays(batch, pixel_uv)
    torch.testing.assert_close(rays["origins"], position.expand(3, 3))
    torch.testing.assert_close(rays["directions"].norm(dim=1), torch.ones(3))
    expected_direction = (point - position) / (point - position).norm()
    torch.testing.assert_close(rays["directions"][0], expected_direction, atol=1e-5, rtol=0)
    assert rays["target_range_valid"].tolist() == [True, False, False]
    assert rays["target_range"][0].item() == pytest.approx((point - position).norm().item(), 1e-5)
    torch.testing.assert_close(rays["target_rgb"][0], batch["images"][0, 0, :, 7, 10] / 255)
    torch.testing.assert_close(rays["target_rgb"][2], batch["images"][0, 0, :, 15, 23] / 255)


def _tiny_head(**overrides):
    arguments = dict(
        volume_grid=TINY_GRID,
        in_channels=4,
        field_conv_channels=6,
        num_uniform_samples=12,
        num_importance_samples=4,
    )
    arguments.update(overrides)
    return NeuSRenderHead(**arguments)


def _tiny_rays(num_lidar=5, num_camera=4):
    generator = torch.Generator().manual_seed(3)
    directions = torch.randn(num_lidar, 3, generator=generator)
    directions = torch.nn.functional.normalize(directions, dim=1)
    lidar = {
        "origins": torch.zeros(num_lidar, 3),
        "directions": directions,
        "batch_index": torch.arange(num_lidar) % 2,
        "target_range": torch.full((num_lidar,), 1.5),
    }
    lidar["target_range"][0] = 50.0  # ends outside the scene box: left out of the losses
    camera_directions = torch.nn.functional.normalize(
        torch.randn(num_camera, 3, generator=generator), dim=1
    )
    camera = {
        "origins": torch.full((num_camera, 3), 0.2),
        "directions": camera_directions,
        "batch_index": torch.arange(num_camera) % 2,
        "target_rgb": torch.rand(num_camera, 3, generator=generator),
        "target_range": torch.full((num_camera,), 2.0),
        "target_range_valid": torch.tensor([True, False] * (num_camera // 2)),
    }
    return {"lidar": lidar, "camera": camera}


def test_render_head_losses_and_gradients():
    torch.manual_seed(0)
    # Without the geometric initialisation, whose zero feature weights leave the volume without
    # gradient until the first step.
    head = _tiny_head(
        eikonal_loss_weight=0.1, camera_range_loss_weight=1.0, geometric_init=False
    )
    volume = torch.randn(2, 4, *TINY_GRID.volume_shape, requires_grad=True)
    out = head(volume, _tiny_rays())
    expected = {"loss_range", "loss_sdf", "loss_rgb", "loss_eikonal", "loss_camera_range"}
    assert expected == {k for k in out if k.startswith("loss_")}
    for key in expected:
        assert out[key].dim() == 0 and torch.isfinite(out[key])
    assert out["lidar_rendered_range"].shape == (5,)
    assert out["lidar_valid"].tolist() == [False, True, True, True, True]
    assert out["camera_rendered_rgb"].shape == (4, 3)
    assert ((out["camera_rendered_rgb"] >= 0) & (out["camera_rendered_rgb"] <= 1)).all()
    sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    assert volume.grad is not None and volume.grad.abs().sum() > 0
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None, name
    assert head.variance.grad.abs() > 0


def test_geometric_init_starts_with_free_space_around_the_sensor():
    torch.manual_seed(0)
    head = _tiny_head(field_conv_channels=0, init_sdf_radius=0.5)
    field_volume = torch.randn(1, 4, *TINY_GRID.volume_shape)
    # scene_scale is 4 m: the initial surface is a (with 16-wide layers, rough) sphere of 2 m
    # around the sensor, whatever the features.
    directions = torch.nn.functional.normalize(torch.randn(32, 3), dim=1)
    at_sensor = head.sdf_at(field_volume, torch.zeros(1, 3))
    far = head.sdf_at(field_volume, 4.0 * directions)
    assert at_sensor.item() == pytest.approx(0.5, abs=0.1)
    assert (far < at_sensor).all() and far.mean() < 0


def test_render_head_in_eval_mode_without_grad():
    head = _tiny_head().eval()
    volume = torch.randn(2, 4, *TINY_GRID.volume_shape)
    with torch.no_grad():
        first = head(volume, _tiny_rays())
        second = head(volume, _tiny_rays())
    torch.testing.assert_close(first["camera_rendered_rgb"], second["camera_rendered_rgb"])
    assert not first["loss_rgb"].requires_grad


def test_sdf_at_is_twice_differentiable():
    torch.manual_seed(0)
    head = _tiny_head(field_conv_channels=0)
    field_volume = torch.randn(1, 4, *TINY_GRID.volume_shape)
    points = (torch.rand(7, 3) * 4 - 2).requires_grad_(True)
    sdf = head.sdf_at(field_volume, points)
    assert sdf.shape == (7,)
    (normal,) = torch.autograd.grad(sdf.sum(), points, create_graph=True)
    (second,) = torch.autograd.grad(normal[:, 0].sum(), points)
    assert normal.abs().sum() > 0 and second.abs().sum() > 0
    # The field callable for the samplers reads the same SDF.
    field = head.field_function(field_volume)
    torch.testing.assert_close(field(points, torch.zeros(7, dtype=torch.long)), sdf)


def test_build_from_config():
    cfg = get_cfg()
    cfg.INPUT.POINT_CLOUD_RANGE = list(TINY_GRID.point_cloud_range)
    cfg.INPUT.VOXEL_SIZE = list(TINY_GRID.voxel_size)
    cfg.MODEL.VOLUME_STRIDE = list(TINY_GRID.volume_stride)
    cfg.MODEL.RENDER_HEAD.NUM_UNIFORM_SAMPLES = 8
    cfg.MODEL.RENDER_HEAD.NUM_IMPORTANCE_SAMPLES = 4
    head = build_render_head(cfg, ShapeSpec(channels=5))
    assert isinstance(head, NeuSRenderHead)
    assert head.field_conv[0].out_channels == cfg.MODEL.RENDER_HEAD.FIELD_CONV_CHANNELS
    assert head.scene_scale == 4.0
    assert head.inv_s.item() == pytest.approx(math.exp(3.0), rel=1e-5)
    lidar = _tiny_rays(2)["lidar"]
    lidar["batch_index"].zero_()
    out = head(torch.randn(1, 5, *TINY_GRID.volume_shape), {"lidar": lidar})
    assert set(out) >= {"loss_range", "loss_sdf"} and "loss_rgb" not in out
    with pytest.raises(ValueError, match="spatial shape"):
        head(torch.randn(1, 5, 3, 3, 3), {})


def test_overfits_the_real_frame():
    """A short version of tools/overfit_render.py (300 iterations and bars of 50% / 30% there;
    20 iterations here, with bars above the proportional 3.3% / 2%)."""
    from tools.overfit_render import load_nuscenes_frame, overfit

    batch, _ = load_nuscenes_frame(FRAME, image_scale=0.125)
    result = overfit(
        batch,
        iterations=20,
        num_lidar_rays=128,
        num_pixels_per_camera=16,
        num_held_out_rays=128,
        num_held_out_pixels=16,
        channels=8,
        cell_size=2.0,
        num_uniform_samples=12,
        num_importance_samples=4,
        show_progress=False,
    )
    assert result["range_l1_last"] <= 0.9 * result["range_l1_first"]
    assert result["rgb_l1_last"] <= 0.94 * result["rgb_l1_first"]
