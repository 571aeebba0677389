"""Fast paths: the oneDNN-friendly Conv3d, the curvature sampler's cap on its points, and the
CPU runtime settings."""

import math

import pytest
import torch
from torch import nn

from clap.config import get_cfg
from clap.layers import Conv3d
from clap.modeling.ray_sampler import Curvature
from clap.utils.cpu_runtime import configure_cpu_runtime


@pytest.mark.parametrize(
    "shape, kernel, stride, padding",
    [
        # Thin volumes that take the rotated path (N * C * D * H small, H * W large).
        ((1, 24, 6, 32, 32), 3, 1, 1),
        ((1, 16, 4, 40, 40), (3, 1, 3), (1, 2, 1), (1, 0, 1)),
        # Ones that do not (batch 2 already meets torch's rule; a 1x1x1 kernel).
        ((2, 24, 6, 32, 32), 3, 1, 1),
        ((1, 24, 6, 32, 32), 1, 1, 0),
    ],
)
def test_conv3d_equals_torch_conv3d_with_gradients(shape, kernel, stride, padding):
    torch.manual_seed(0)
    ours = Conv3d(shape[1], 8, kernel, stride=stride, padding=padding)
    reference = nn.Conv3d(shape[1], 8, kernel, stride=stride, padding=padding)
    reference.load_state_dict(ours.state_dict())
    volume = torch.randn(shape, requires_grad=True)
    out, expected = ours(volume), reference(volume)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    grad = torch.randn_like(out)
    ours_grads = torch.autograd.grad(out, (volume, ours.weight, ours.bias), grad)
    reference_grads = torch.autograd.grad(
        expected, (volume, reference.weight, reference.bias), grad
    )
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)


def _batch(num_points_per_sample=(300, 200)):
    generator = torch.Generator().manual_seed(0)
    points, points_batch = [], []
    for sample, count in enumerate(num_points_per_sample):
        angle = torch.rand(count, generator=generator) * 2 * math.pi
        radius = 5.0 + 10.0 * torch.rand(count, generator=generator)
        xyz = torch.stack(
            [radius * angle.cos(), radius * angle.sin(), torch.rand(count, generator=generator)],
            dim=1,
        )
        points.append(torch.cat([xyz, torch.zeros(count, 2)], dim=1))
        points_batch.append(torch.full((count,), sample))
    return {
        "points": torch.cat(points),
        "points_batch": torch.cat(points_batch),
        "aug_matrix": torch.eye(4).repeat(len(num_points_per_sample), 1, 1),
        "batch_size": len(num_points_per_sample),
    }


def _bumpy_field(points, batch_index):
    """An SDF-like field whose level sets bend everywhere (non-zero curvature)."""
    return points[:, 2] - 0.3 * torch.sin(points[:, 0]) * torch.cos(0.7 * points[:, 1])


def test_curvature_cap_differentiates_at_most_that_many_points_per_sample():
    batch = _batch()
    sampler = Curvature(
        num_lidar_rays=40, num_pixels_per_camera=0, min_distance=1.0, max_points_per_sample=64
    )
    torch.manual_seed(0)
    sampled = sampler.sample(batch, _bumpy_field)
    weights = sampled["point_weights"]
    for sample in range(2):
        in_sample = batch["points_batch"] == sample
        assert int((weights[in_sample] > 0).sum()) == 64
    # Rays are drawn only among the points whose curvature was computed.
    chosen = sampled["lidar_ray_index"]
    assert chosen.shape == (2, 40)
    assert bool((weights[chosen.reshape(-1)] > 0).all())
    for sample in range(2):
        assert bool((batch["points_batch"][chosen[sample]] == sample).all())

    uncapped = Curvature(num_lidar_rays=40, num_pixels_per_camera=0, min_distance=1.0)
    full = uncapped.sample(batch, _bumpy_field)["point_weights"]
    # Where both computed a weight, it is the same: the cap only leaves points out.
    both = weights > 0
    torch.testing.assert_close(weights[both], full[both])
    assert int((full > 0).sum()) == 500


def test_curvature_cap_below_the_ray_budget_is_an_error():
    with pytest.raises(ValueError, match="CURVATURE_MAX_POINTS"):
        Curvature(num_lidar_rays=128, num_pixels_per_camera=0, max_points_per_sample=64)


def test_cpu_runtime_sets_the_threads_of_cpu_runs_only():
    threads = torch.get_num_threads()
    cfg = get_cfg()
    cfg.CPU.NUM_THREADS = 1
    try:
        torch.set_num_threads(2)
        cfg.MODEL.DEVICE = "cuda"
        configure_cpu_runtime(cfg)
        assert torch.get_num_threads() == 2
        cfg.MODEL.DEVICE = "cpu"
        configure_cpu_runtime(cfg)
        assert torch.get_num_threads() == 1
        cfg.CPU.NUM_THREADS = -1
        with pytest.raises(ValueError, match="CPU.NUM_THREADS"):
            configure_cpu_runtime(cfg)
    finally:
        torch.set_num_threads(threads)
