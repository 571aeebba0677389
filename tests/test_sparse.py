"""Sparse conv ops: pure-torch backend against dense conv3d, torchsparse and spconv against it."""

import pytest
import torch
import torch.nn.functional as F

from clap.layers.sparse import (
    SparseBatchNorm,
    SparseConv3d,
    SparseInverseConv3d,
    SparseTensor,
    SubMConv3d,
    kernel_offsets,
    resolve_sparse_backend,
    sparse_weight_to_dense,
    spconv_available,
    torchsparse_available,
)


def random_sparse(shape_xyz, batch_size, channels, occupancy=0.3, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    x_n, y_n, z_n = shape_xyz
    active = torch.rand(batch_size, z_n, y_n, x_n, generator=generator) < occupancy
    b, z, y, x = active.nonzero(as_tuple=True)
    coords = torch.stack([b, x, y, z], dim=1)
    coords = coords[torch.randperm(coords.shape[0], generator=generator)]  # any row order
    feats = torch.randn(coords.shape[0], channels, generator=generator, dtype=dtype)
    return SparseTensor(feats.requires_grad_(True), coords, shape_xyz, batch_size)


def at_cells(dense, coords):
    b, x, y, z = coords.unbind(1)
    return dense[b, :, z, y, x]


def dense_reference(conv, x: SparseTensor, transposed_output_shape=None):
    """Dense conv3d / conv_transpose3d with the sparse module's weight (B, C, Z, Y, X)."""
    dense_in = x.to_dense().detach().requires_grad_(True)
    weight = conv.weight.detach().clone().requires_grad_(True)
    dense_weight = sparse_weight_to_dense(weight, conv.kernel_size)
    if isinstance(conv, SubMConv3d):
        padding = tuple(k // 2 for k in conv.kernel_size[::-1])
        out = F.conv3d(dense_in, dense_weight, padding=padding)
    elif isinstance(conv, SparseConv3d):
        out = F.conv3d(dense_in, dense_weight, stride=conv.stride[::-1],
                       padding=conv.padding[::-1])
    else:
        stride, padding = conv.stride[::-1], conv.padding[::-1]
        natural = [
            (n - 1) * s - 2 * p + k
            for n, s, p, k in zip(dense_in.shape[2:], stride, padding, conv.kernel_size[::-1])
        ]
        output_padding = tuple(t - n for t, n in zip(transposed_output_shape, natural))
        out = F.conv_transpose3d(dense_in, dense_weight.transpose(0, 1), stride=stride,
                                 padding=padding, output_padding=output_padding)
    return dense_in, weight, out


def check_gradients(sparse_out, sparse_in, conv, dense_in, dense_weight_leaf, dense_out_at_cells,
                    in_coords):
    grad = torch.randn_like(sparse_out.feats)
    (sparse_out.feats * grad).sum().backward()
    (dense_out_at_cells * grad).sum().backward()
    torch.testing.assert_close(sparse_in.feats.grad, at_cells(dense_in.grad, in_coords),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(conv.weight.grad, dense_weight_leaf.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kernel_size", [3, (3, 1, 3), (1, 3, 5)])
def test_submanifold_matches_dense_conv3d(kernel_size):
    x = random_sparse((7, 6, 5), batch_size=2, channels=3)
    conv = SubMConv3d(3, 4, kernel_size, bias=False).double()
    out = conv(x)
    assert torch.equal(out.coords, x.coords)
    dense_in, weight, dense_out = dense_reference(conv, x)
    expected = at_cells(dense_out, x.coords)
    torch.testing.assert_close(out.feats, expected, atol=1e-4, rtol=1e-4)
    check_gradients(out, x, conv, dense_in, weight, expected, x.coords)


@pytest.mark.parametrize(
    "shape, kernel_size, stride",
    [((8, 6, 5), 3, 2), ((7, 9, 4), (3, 3, 1), (2, 2, 1)), ((9, 5, 6), 3, (2, 1, 3))],
)
def test_strided_matches_dense_conv3d(shape, kernel_size, stride):
    x = random_sparse(shape, batch_size=2, channels=3, occupancy=0.2, seed=1)
    conv = SparseConv3d(3, 5, kernel_size, stride).double()
    out = conv(x)
    dense_in, weight, dense_out = dense_reference(conv, x)
    assert out.spatial_shape == tuple(dense_out.shape[2:][::-1])
    assert out.stride == conv.stride
    expected = at_cells(dense_out, out.coords)
    torch.testing.assert_close(out.feats, expected, atol=1e-4, rtol=1e-4)
    # Output cells are exactly the cells whose window holds an active input: the dense
    # result is zero everywhere else, and every output cell has a non-empty window.
    torch.testing.assert_close(out.to_dense(), dense_out.detach(), atol=1e-4, rtol=1e-4)
    window_hits = F.conv3d(
        (x.to_dense().abs().sum(1, keepdim=True) > 0).double(),
        torch.ones((1, 1) + tuple(conv.kernel_size[::-1]), dtype=torch.float64),
        stride=conv.stride[::-1], padding=conv.padding[::-1],
    )
    assert bool((at_cells(window_hits, out.coords) > 0).all())
    assert int((window_hits > 0).sum()) == out.num_active
    check_gradients(out, x, conv, dense_in, weight, expected, x.coords)


@pytest.mark.parametrize("shape", [(8, 6, 4), (7, 5, 3)])
def test_inverse_conv_matches_conv_transpose3d(shape):
    fine = random_sparse(shape, batch_size=2, channels=3, occupancy=0.25, seed=2)
    down = SparseConv3d(3, 4, 3, 2).double()
    coarse = down(fine.replace_feats(fine.feats.detach()))
    coarse = coarse.replace_feats(coarse.feats.detach().requires_grad_(True))
    up = SparseInverseConv3d(4, 2, 3, 2).double()
    out = up(coarse, fine)
    assert torch.equal(out.coords, fine.coords) and out.stride == fine.stride
    dense_in, weight, dense_out = dense_reference(up, coarse, transposed_output_shape=shape[::-1])
    expected = at_cells(dense_out, fine.coords)
    torch.testing.assert_close(out.feats, expected, atol=1e-4, rtol=1e-4)
    check_gradients(out, coarse, up, dense_in, weight, expected, coarse.coords)


def test_inverse_conv_without_cached_map_matches_cached():
    fine = random_sparse((6, 6, 6), batch_size=1, channels=2, seed=3)
    coarse = SparseConv3d(2, 3, 3, 2).double()(fine)
    up = SparseInverseConv3d(3, 2, 3, 2).double()
    cached = up(coarse, fine).feats
    fresh_fine = SparseTensor(fine.feats, fine.coords.clone(), fine.spatial_shape, 1)
    fresh_coarse = SparseTensor(coarse.feats, coarse.coords.clone(), coarse.spatial_shape, 1,
                                coarse.stride)
    torch.testing.assert_close(up(fresh_coarse, fresh_fine).feats, cached)


def test_binary_search_lookup_matches_direct_table(monkeypatch):
    """Large grids use binary search instead of the direct-address table: same results."""
    import clap.layers.sparse.kernel_map as kernel_map_module

    x = random_sparse((9, 7, 6), batch_size=2, channels=2, occupancy=0.2, seed=4)
    convs = [SubMConv3d(2, 3, (3, 1, 3)).double(), SparseConv3d(2, 3, 3, 2).double()]
    with_table = [conv(x) for conv in convs]
    monkeypatch.setattr(kernel_map_module, "DIRECT_TABLE_MAX_CELLS", 0)
    fresh = SparseTensor(x.feats, x.coords, x.spatial_shape, 2)
    for conv, expected in zip(convs, with_table):
        got = conv(fresh)
        assert torch.equal(got.coords, expected.coords)
        torch.testing.assert_close(got.feats, expected.feats)


def test_kernel_maps_are_reused_within_a_forward_pass():
    x = random_sparse((6, 6, 6), batch_size=1, channels=2, dtype=torch.float32)
    conv_a, conv_b = SubMConv3d(2, 2), SubMConv3d(2, 2)
    y = conv_b(conv_a(x))
    assert len(y.cache.kernel_maps) == 1
    (kernel_map,) = y.cache.kernel_maps.values()
    assert kernel_map.in_coords is x.coords
    down = SparseConv3d(2, 2, 3, 2)
    z1, z2 = down(y), down(y)
    assert z1.coords is z2.coords and len(y.cache.kernel_maps) == 2
    # A new input tensor starts a new cache.
    assert SparseTensor(x.feats, x.coords, x.spatial_shape, 1).cache is not x.cache


def test_kernel_offsets_order_x_fastest():
    offsets = kernel_offsets((3, 2, 1))
    assert offsets.tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0], [1, 1, 0], [2, 1, 0]]


def test_to_dense_crops_and_pads():
    coords = torch.tensor([[0, 0, 0, 0], [1, 3, 2, 1], [1, 4, 0, 0]])
    feats = torch.tensor([[1.0], [2.0], [3.0]])
    x = SparseTensor(feats, coords, (5, 3, 2), batch_size=3)
    dense = x.to_dense((2, 4, 4))  # (Z, Y, X): x = 4 is cropped, y padded to 4
    assert dense.shape == (3, 1, 2, 4, 4)
    assert dense[0, 0, 0, 0, 0] == 1 and dense[1, 0, 1, 2, 3] == 2
    assert dense.sum() == 3 and dense[2].abs().sum() == 0


def test_empty_sparse_tensor():
    x = SparseTensor(torch.zeros(0, 3), torch.zeros(0, 4, dtype=torch.long), (4, 4, 4), 2)
    y = SparseBatchNorm(4)(SparseConv3d(3, 4, 3, 2)(SubMConv3d(3, 3)(x)))
    assert y.num_active == 0 and y.feats.shape == (0, 4)
    assert y.to_dense().shape == (2, 4, 2, 2, 2)


def test_backend_resolution():
    assert resolve_sparse_backend("torch") == "torch"
    assert resolve_sparse_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match="SPARSE_BACKEND"):
        resolve_sparse_backend("minkowski")
    if not torchsparse_available():
        with pytest.raises(ImportError, match="torchsparse"):
            resolve_sparse_backend("torchsparse")
    if not spconv_available():
        with pytest.raises(ImportError, match="spconv"):
            resolve_sparse_backend("spconv")


def test_sparse_batch_norm_single_cell_uses_running_stats():
    x = SparseTensor(torch.tensor([[3.0, -1.0]]), torch.tensor([[0, 1, 1, 1]]), (2, 2, 2), 1)
    bn = SparseBatchNorm(2).train()
    out = bn(x)
    torch.testing.assert_close(out.feats, x.feats / (1 + bn.eps) ** 0.5)
    assert torch.equal(bn.running_mean, torch.zeros(2))


@pytest.mark.cuda
def test_torchsparse_backend_matches_pure_torch():
    if not torchsparse_available():
        pytest.skip("torchsparse is not importable (optional backend, built from source)")
    device = "cuda"
    x = random_sparse((10, 8, 6), batch_size=2, channels=4, occupancy=0.2, dtype=torch.float32)
    coords = x.coords.to(device)
    feats = x.feats.detach().to(device)
    modules = torch.nn.ModuleList(
        [SubMConv3d(4, 8), SparseConv3d(8, 8, 3, 2), SubMConv3d(8, 8),
         SparseInverseConv3d(8, 4, 3, 2)]
    ).to(device)
    results = {}
    for backend in ("torch", "torchsparse"):
        leaf = feats.clone().requires_grad_(True)
        fine = modules[0](SparseTensor(leaf, coords, x.spatial_shape, 2, backend=backend))
        coarse = modules[2](modules[1](fine))
        out = modules[3](coarse, fine)
        grad = torch.linspace(-1, 1, out.feats.numel(), device=device).view_as(out.feats)
        modules.zero_grad()
        (out.feats * grad).sum().backward()
        results[backend] = (
            out.feats.detach(), coarse.to_dense().detach(), leaf.grad,
            [m.weight.grad.clone() for m in modules],
        )
    reference, candidate = results["torch"], results["torchsparse"]
    torch.testing.assert_close(candidate[0], reference[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(candidate[1], reference[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(candidate[2], reference[2], atol=1e-4, rtol=1e-4)
    for got, expected in zip(candidate[3], reference[3]):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def _encoder_chain(kernel_size):
    """Submanifold, strided, submanifold and inverse convs: every op of the adapters."""
    return torch.nn.ModuleList(
        [SubMConv3d(4, 8, kernel_size), SparseConv3d(8, 8, 3, (2, 2, 1)), SubMConv3d(8, 8),
         SparseInverseConv3d(8, 4, 3, (2, 2, 1))]
    )


def _run_chain(modules, x: SparseTensor, backend: str):
    fine = modules[0](SparseTensor(x.feats, x.coords, x.spatial_shape, x.batch_size,
                                   backend=backend))
    coarse = modules[2](modules[1](fine))
    return coarse, modules[3](coarse, fine)


@pytest.mark.parametrize("kernel_size", [3, (3, 1, 5)])
def test_spconv_forward_matches_pure_torch(kernel_size):
    if not spconv_available():
        pytest.skip("spconv is not importable (optional backend: the spconv 2.x wheel, "
                    "e.g. `pip install spconv` on the CPU)")
    x = random_sparse((10, 8, 6), batch_size=2, channels=4, occupancy=0.2, dtype=torch.float32)
    x = x.replace_feats(x.feats.detach())
    modules = _encoder_chain(kernel_size)
    with torch.no_grad():  # spconv's CPU build has no backward
        reference = _run_chain(modules, x, "torch")
        candidate = _run_chain(modules, x, "spconv")
    coarse, out = candidate
    assert coarse.spatial_shape == reference[0].spatial_shape
    assert torch.equal(out.coords, x.coords)
    torch.testing.assert_close(coarse.to_dense(), reference[0].to_dense(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.feats, reference[1].feats, atol=1e-5, rtol=1e-5)


def test_spconv_on_cpu_with_gradients_is_an_error():
    if not spconv_available():
        pytest.skip("spconv is not importable (optional backend)")
    x = random_sparse((6, 6, 6), batch_size=1, channels=2, dtype=torch.float32)
    spconv_x = SparseTensor(x.feats, x.coords, x.spatial_shape, 1, backend="spconv")
    with pytest.raises(RuntimeError, match="SPARSE_BACKEND 'spconv' on the CPU"):
        SubMConv3d(2, 2)(spconv_x)
