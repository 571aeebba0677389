import pytest
import torch
import torch.nn.functional as F

from clap.layers.mlp import MLP
from clap.layers.trilinear import normalize_points, trilinear_sample
from clap.layers.volume import VolumeGrid


def _grid_sample(volume, points, padding_mode):
    batch, num = points.shape[:2]
    out = F.grid_sample(
        volume,
        points.view(batch, num, 1, 1, 3),
        mode="bilinear",
        padding_mode=padding_mode,
        align_corners=True,
    )
    return out.view(batch, volume.shape[1], num).transpose(1, 2)


@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_matches_grid_sample(padding_mode):
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(2, 3, 4, 5, 6, generator=generator)
    # Inside and outside [-1, 1], to exercise the padding.
    points = torch.rand(2, 200, 3, generator=generator) * 2.8 - 1.4
    ours = trilinear_sample(volume, points, padding_mode=padding_mode)
    assert ours.shape == (2, 200, 3)
    torch.testing.assert_close(ours, _grid_sample(volume, points, padding_mode), atol=1e-6, rtol=0)


def test_batch_index_mixes_samples():
    generator = torch.Generator().manual_seed(1)
    volume = torch.randn(3, 2, 3, 4, 5, generator=generator)
    points = torch.rand(10, 3, generator=generator) * 2 - 1
    batch_index = torch.tensor([2, 0, 1, 1, 0, 2, 2, 0, 1, 0])
    ours = trilinear_sample(volume, points, batch_index)
    for row, sample in enumerate(batch_index.tolist()):
        expected = _grid_sample(volume[sample : sample + 1], points[row].view(1, 1, 3), "border")
        torch.testing.assert_close(ours[row], expected.view(-1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_gradcheck_and_gradgradcheck(smooth, padding_mode):
    generator = torch.Generator().manual_seed(2)
    volume = torch.randn(1, 2, 3, 4, 3, dtype=torch.float64, generator=generator)
    # Away from cell faces, where the interpolant is smooth and finite differences are exact.
    cells = torch.tensor([[0.3, 1.6, 1.2], [1.4, 2.7, 0.7], [0.6, 0.2, 1.8]], dtype=torch.float64)
    sizes = torch.tensor([3.0, 4.0, 3.0], dtype=torch.float64)
    points = (cells / (sizes - 1) * 2 - 1).unsqueeze(0)
    volume.requires_grad_(True)
    points.requires_grad_(True)

    def sample(v, p):
        return trilinear_sample(v, p, smooth=smooth, padding_mode=padding_mode)

    assert torch.autograd.gradcheck(sample, (volume, points))
    assert torch.autograd.gradgradcheck(sample, (volume, points))


def test_matches_grid_sample_through_the_double_backward():
    """Values, normals (create_graph) and second-order gradients equal grid_sample's."""
    generator = torch.Generator().manual_seed(3)
    volume = torch.randn(1, 4, 3, 5, 4, dtype=torch.float64, generator=generator)
    points = torch.rand(1, 60, 3, dtype=torch.float64, generator=generator) * 2.2 - 1.1
    weighting = torch.randn(4, dtype=torch.float64, generator=generator)

    def derivatives(sample):
        v, p = volume.clone().requires_grad_(True), points.clone().requires_grad_(True)
        value = (sample(v, p) * weighting).sum(-1)
        (normal,) = torch.autograd.grad(value.sum(), p, create_graph=True)
        loss = (normal.norm(dim=-1) - 1).pow(2).sum() + value.pow(2).sum()
        return (value, normal, *torch.autograd.grad(loss, (v, p)))

    try:
        references = derivatives(lambda v, p: _grid_sample(v, p, "border"))
    except RuntimeError as error:  # e.g. torch 2.4: grid_sampler_3d_backward is not differentiable
        pytest.skip(f"grid_sample has no double backward in torch {torch.__version__}: {error}")
    for ours, reference in zip(derivatives(trilinear_sample), references):
        torch.testing.assert_close(ours, reference, atol=1e-10, rtol=1e-10)


def test_smoothstep_has_curvature_along_an_axis():
    # Values grow along x (cell values 0..7, x fastest), so the field changes along x.
    volume = torch.arange(8, dtype=torch.float64).view(1, 1, 2, 2, 2)
    point = torch.tensor([[[0.3, -0.2, 0.3]]], dtype=torch.float64, requires_grad=True)

    def second_derivative_x(smooth):
        value = trilinear_sample(volume, point, smooth=smooth).sum()
        (grad,) = torch.autograd.grad(value, point, create_graph=True)
        (hessian_row,) = torch.autograd.grad(grad[..., 0].sum(), point)
        return hessian_row[0, 0, 0].item()

    assert second_derivative_x(smooth=False) == pytest.approx(0.0, abs=1e-12)
    assert abs(second_derivative_x(smooth=True)) > 1e-3


def test_normalize_points_reproduces_linear_field():
    grid = VolumeGrid(
        point_cloud_range=(-4.0, -2.0, -1.0, 4.0, 2.0, 1.0),
        voxel_size=(0.5, 0.5, 0.5),
        volume_stride=(2, 2, 2),
    )
    centers = grid.volume_centers(dtype=torch.float64)  # (Z, Y, X, 3)
    volume = centers.permute(3, 0, 1, 2).unsqueeze(0)  # channels = x, y, z of each centre
    lo = torch.tensor(grid.point_cloud_range[:3], dtype=torch.float64) + 0.5
    hi = torch.tensor(grid.point_cloud_range[3:], dtype=torch.float64) - 0.5
    points = lo + torch.rand(50, 3, dtype=torch.float64) * (hi - lo)
    sampled = trilinear_sample(volume, normalize_points(points, grid).unsqueeze(0))
    torch.testing.assert_close(sampled[0], points, atol=1e-9, rtol=0)
    # Cell centres of the first and last cells land on -1 and +1.
    corners = torch.stack([centers[0, 0, 0], centers[-1, -1, -1]])
    expected = torch.tensor([[-1.0] * 3, [1.0] * 3], dtype=torch.float64)
    torch.testing.assert_close(normalize_points(corners, grid), expected)


def test_mlp_geometric_init_is_an_inside_out_sphere():
    torch.manual_seed(0)
    mlp = MLP(3 + 4, [64, 64, 64], 1, activation="softplus", geometric_init=True,
              init_radius=0.5, inside_out=True)
    positions = torch.randn(200, 3) * 0.4
    features = torch.randn(200, 4)
    sdf = mlp(torch.cat([positions, features], dim=1)).squeeze(1)
    expected = 0.5 - positions.norm(dim=1)
    assert (sdf - expected).abs().mean() < 0.1
    assert sdf[positions.norm(dim=1) < 0.2].min() > 0
    assert sdf[positions.norm(dim=1) > 0.9].max() < 0


def test_mlp_shapes_and_output_activation():
    mlp = MLP(5, [8, 8], 3, activation="relu", output_activation="sigmoid")
    out = mlp(torch.randn(2, 7, 5))
    assert out.shape == (2, 7, 3)
    assert ((out > 0) & (out < 1)).all()
    with pytest.raises(ValueError, match="activation"):
        MLP(5, [8], 3, activation="tanhh")
