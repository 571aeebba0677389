"""A Conv3d that keeps thin CPU volumes on PyTorch's fast (oneDNN) convolution kernels.

On CPU, PyTorch chooses between oneDNN and its own im2col convolution with a rule written for
2D inputs: a float32 input with batch 1 and a 3x3 (or smaller) kernel goes to oneDNN only when
the product of its first four sizes, N * C * D * H for a (N, C, D, H, W) volume, exceeds 20480.
Volumes laid out (B, C, Z, Y, X) with few Z cells and few channels, like the CPU-scale CLAP
volumes (e.g. 1 x 96 x 6 x 32), fall below it and take the im2col path, measured 3-4x slower
for forward + backward. Rotating the spatial axes (Z, Y, X) -> (Y, X, Z) of the input, the
kernel, and the stride / padding / dilation, convolving, and rotating the result back gives
exactly the same convolution, and puts a large axis into the rule's product.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Conv3d", "conv3d"]

# PyTorch's rule (aten/src/ATen/native/Convolution.cpp, ConvParams::use_mkldnn): batch-1 float32
# inputs with small kernels use oneDNN only above this many elements in the first four sizes.
_ONEDNN_MIN_LEADING_ELEMENTS = 20480


def _leading_elements(shape) -> int:
    return shape[0] * shape[1] * shape[2] * shape[3]


def _rotate(values):
    """(z, y, x) -> (y, x, z)."""
    return (values[1], values[2], values[0])


def conv3d(
    volume: torch.Tensor,
    weight: torch.Tensor,
    bias=None,
    stride=(1, 1, 1),
    padding=(0, 0, 0),
    dilation=(1, 1, 1),
    groups: int = 1,
) -> torch.Tensor:
    """`torch.nn.functional.conv3d` (zero padding; tuples in (D, H, W) order) that computes
    thin float32 CPU volumes with the spatial axes rotated (see the module docstring)."""
    rotate = (
        volume.device.type == "cpu"
        and volume.dtype == torch.float32
        and volume.dim() == 5
        and _leading_elements(volume.shape) <= _ONEDNN_MIN_LEADING_ELEMENTS
        and _leading_elements((volume.shape[0], volume.shape[1], volume.shape[3], volume.shape[4]))
        > _ONEDNN_MIN_LEADING_ELEMENTS
        and tuple(weight.shape[2:]) != (1, 1, 1)
    )
    if not rotate:
        return F.conv3d(volume, weight, bias, stride, padding, dilation, groups)
    out = F.conv3d(
        volume.permute(0, 1, 3, 4, 2).contiguous(),
        weight.permute(0, 1, 3, 4, 2),
        bias,
        _rotate(stride),
        _rotate(padding),
        _rotate(dilation),
        groups,
    )
    return out.permute(0, 1, 4, 2, 3).contiguous()


class Conv3d(nn.Conv3d):
    """`nn.Conv3d` (same parameters and state dict) computed with `conv3d` above when its
    padding mode is "zeros" and its padding is numeric."""

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super().forward(volume)
        return conv3d(
            volume,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
