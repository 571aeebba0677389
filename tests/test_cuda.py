"""The model on a CUDA GPU: the tiny CLAP and detector train under bf16 autocast, and the GPU
kernels (trilinear sampling, pure-torch sparse convolution) agree with the CPU.

Marked `cuda`: skipped without a GPU (see conftest.py), run by tools/gpu_check.py.
"""

from pathlib import Path

import pytest
import torch
from test_detection_model import make_batch
from test_detection_model import tiny_cfg as tiny_detection_cfg
from test_sparse import random_sparse

from clap.config import get_cfg
from clap.data import build_train_loader
from clap.layers.sparse import SparseConv3d, SparseInverseConv3d, SparseTensor, SubMConv3d
from clap.layers.trilinear import trilinear_sample
from clap.modeling import build_model

pytestmark = pytest.mark.cuda

TINY = Path(__file__).resolve().parent / "configs" / "clap_tiny.yaml"
FRAME_ROOT = Path(__file__).resolve().parent / "data" / "nuscenes_frame"


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value


def test_clap_trains_on_cuda_under_bf16(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY))
    cfg.merge_from_list(
        ["DATASETS.ROOT", str(FRAME_ROOT), "DATASETS.CACHE_DIR", str(tmp_path / "cache"),
         "MODEL.DEVICE", "cuda"]
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    assert next(model.parameters()).is_cuda
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = iter(build_train_loader(cfg))
    for _ in range(2):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses = model(next(loader))
        assert all(torch.isfinite(v) for v in losses.values()), losses
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    for name in ("lidar_backbone", "image_backbone", "view_transform", "fusion", "render_head"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
                   for g in grads), name


def test_detector_trains_and_predicts_on_cuda():
    torch.manual_seed(0)
    model = build_model(tiny_detection_cfg()).cuda().train()
    batch = _to(make_batch(), "cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        detections = model(batch)
    assert len(detections) == batch["batch_size"]


def test_trilinear_double_backward_matches_cpu_and_grid_sample():
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(1, 3, 4, 6, 5, dtype=torch.float64, generator=generator)
    points = torch.rand(1, 300, 3, dtype=torch.float64, generator=generator) * 2.2 - 1.1

    def derivatives(sampler, device):
        v = volume.to(device).requires_grad_(True)
        p = points.to(device).requires_grad_(True)
        value = sampler(v, p).sum(-1)
        (normal,) = torch.autograd.grad(value.sum(), p, create_graph=True)
        (grad_v,) = torch.autograd.grad(normal.square().sum(), v)
        return [t.detach().cpu() for t in (value, normal, grad_v)]

    def grid_sample(v, p):
        out = torch.nn.functional.grid_sample(
            v, p.view(1, -1, 1, 1, 3), padding_mode="border", align_corners=True
        )
        return out.view(1, v.shape[1], -1).transpose(1, 2)

    reference = derivatives(trilinear_sample, "cpu")
    for got in (derivatives(trilinear_sample, "cuda"), derivatives(grid_sample, "cuda")):
        for a, b in zip(got, reference):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_pure_torch_sparse_convolution_matches_cpu():
    x = random_sparse((10, 8, 6), batch_size=2, channels=4, occupancy=0.2, dtype=torch.float64)
    torch.manual_seed(0)
    modules = torch.nn.ModuleList(
        [SubMConv3d(4, 8), SparseConv3d(8, 8, 3, 2), SubMConv3d(8, 8),
         SparseInverseConv3d(8, 4, 3, 2)]
    ).double()

    def run(device):
        modules.to(device)
        leaf = x.feats.detach().to(device).requires_grad_(True)
        fine = modules[0](SparseTensor(leaf, x.coords.to(device), x.spatial_shape, 2))
        out = modules[3](modules[2](modules[1](fine)), fine)
        modules.zero_grad()
        out.feats.square().sum().backward()
        return [out.feats.detach().cpu(), leaf.grad.cpu()] + [
            m.weight.grad.cpu() for m in modules
        ]

    for got, expected in zip(run("cuda"), run("cpu")):
        torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9)
