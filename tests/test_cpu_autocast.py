"""MODEL.CPU_AUTOCAST_DTYPE: bfloat16 regions inside the convolutional encoders on the CPU."""

import pytest
import torch

from clap.layers import cpu_autocast, parse_cpu_autocast_dtype
from clap.modeling import build_image_backbone, build_lidar_backbone
from clap.modeling.bev_backbone.second_fpn import SecondFPN
from clap.modeling.fusion import ConcatConvFusion
from tests.test_encoders import random_voxels, tiny_cfg


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _twin_outputs(build, run):
    """Outputs and (all parameters') gradients of a float32 and a bfloat16 twin, same weights."""
    results = []
    for dtype in ("", "bfloat16"):
        torch.manual_seed(0)
        module = build(dtype).train()
        output = run(module)
        output.square().mean().backward()
        grad = torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])
        results.append((output.detach(), grad))
    return results


def test_bfloat16_regions_return_float32_close_to_float32():
    cfg = tiny_cfg()
    images = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))

    def build_image(dtype):
        cfg.MODEL.CPU_AUTOCAST_DTYPE = dtype
        return build_image_backbone(cfg)

    def build_lidar(dtype):
        cfg.MODEL.CPU_AUTOCAST_DTYPE = dtype
        return build_lidar_backbone(cfg)

    features, coords = random_voxels((32, 32, 16), [60, 40])
    volumes = torch.randn(2, 12, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    cases = {
        "fusion": (
            lambda dtype: ConcatConvFusion(
                lidar_channels=8, camera_channels=4, grid_shape=(4, 8, 8), out_channels=8,
                cpu_autocast_dtype=dtype,
            ),
            lambda m: m(volumes[:, :8], volumes[:, 8:]),
        ),
        "image": (build_image, lambda m: m(images)["p3"]),
        "lidar": (build_lidar, lambda m: m(features, coords, batch_size=2)),
        "bev": (
            lambda dtype: SecondFPN(
                in_channels=8, input_size=(16, 16), layer_nums=(1, 1), layer_strides=(1, 2),
                num_filters=(8, 16), upsample_strides=(1, 2), num_upsample_filters=(8, 8),
                cpu_autocast_dtype=dtype,
            ),
            lambda m: m(torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(1))),
        ),
    }
    for name, (build, run) in cases.items():
        (reference, reference_grad), (output, grad) = _twin_outputs(build, run)
        assert output.dtype == torch.float32 and output.is_contiguous(), name
        assert grad.dtype == torch.float32, name
        error = _relative_error(output, reference)
        assert 0 < error < 0.05, (name, error)
        # bfloat16 keeps ~3 significant digits; batch norms over the few cells of these tiny
        # maps amplify that in the backward, so the gradients agree in direction only.
        cosine = torch.nn.functional.cosine_similarity(grad, reference_grad, 0)
        assert cosine > 0.9, (name, float(cosine))


def test_cpu_autocast_is_inert_off_and_rejects_unknown_dtypes():
    with cpu_autocast(None, torch.zeros(1)) as region:
        assert region is None
    with cpu_autocast(torch.bfloat16, torch.zeros(1)) as region:
        assert region is not None
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="MODEL.CPU_AUTOCAST_DTYPE"):
        parse_cpu_autocast_dtype("float16")
