"""Sparse conv, batch norm and activation modules; the backend follows the input tensor.

The pure-torch kernels are `torch_backend`; torchsparse and spconv are reached through their
adapters (`torchsparse_backend`, `spconv_backend`), which take the same weight.

Definitions (per axis, kernel k, stride s, padding p; coordinates on each tensor's own grid):

- `SubMConv3d`: output cells = input cells; out[o] = sum_d W[d] x[o - k // 2 + d] over active
  inputs. Equals a dense `conv3d` with padding k // 2, read at the input cells.
- `SparseConv3d` (generalised strided conv): output cell o is active when some active input
  lies in its window `o * s - p + d`, d in [0, k), and o lies in the output grid
  `(n + 2p - k) // s + 1`. Equals a dense `conv3d(stride=s, padding=p)` at every cell (a dense
  output outside the active set is exactly zero without bias).
- `SparseInverseConv3d`: transposed conv from a coarse tensor onto the cells of a given finer
  tensor (typically the input of the matching `SparseConv3d`). Equals a dense
  `conv_transpose3d(stride=s, padding=p)` read at the target cells.

All weights are (K, C_in, C_out) in the order of `kernel_offsets` (x fastest); kernel sizes
must be odd so that a kernel has a centre.
"""

import math
from typing import Optional, Sequence, Union

import torch
from torch import nn

from . import torch_backend
from .tensor import SparseTensor

__all__ = [
    "SparseBatchNorm", "SparseConv3d", "SparseInverseConv3d", "SparseReLU", "SubMConv3d",
]

IntOrTriple = Union[int, Sequence[int]]


def _adapter_conv(backend: str):
    """The conv function of a compiled backend's adapter, imported on first use."""
    if backend == "torchsparse":
        from .torchsparse_backend import ts_conv

        return ts_conv
    from .spconv_backend import spconv_conv

    return spconv_conv


def _triple(value: IntOrTriple, name: str):
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{name} needs one int or three (x, y, z); got {value}")
    return value


class _SparseConvBase(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntOrTriple, bias: bool,
        fan_in_channels: int,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _triple(kernel_size, "kernel_size")
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"sparse conv kernel sizes must be odd, got {self.kernel_size}")
        kernel_volume = math.prod(self.kernel_size)
        self.weight = nn.Parameter(torch.empty(kernel_volume, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        bound = 1.0 / math.sqrt(fan_in_channels * kernel_volume)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _add_bias(self, feats: torch.Tensor) -> torch.Tensor:
        return feats if self.bias is None else feats + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}"
        )


class SubMConv3d(_SparseConvBase):
    """Submanifold sparse conv: (N, C_in) on the input cells -> (N, C_out) on the same cells."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntOrTriple = 3,
        bias: bool = False,
    ):
        super().__init__(in_channels, out_channels, kernel_size, bias, in_channels)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.backend == "torch":
            feats = torch_backend.conv_submanifold(x, self.weight, self.kernel_size)
        else:
            feats, _, _ = _adapter_conv(x.backend)(
                x, self.weight, self.kernel_size, (1, 1, 1),
                tuple(k // 2 for k in self.kernel_size), self.training,
            )
        return x.replace_feats(self._add_bias(feats))


class SparseConv3d(_SparseConvBase):
    """Generalised strided sparse conv (down-sampling); stride multiplies the tensor stride.

    Args:
        stride: (x, y, z) or one int.
        padding: (x, y, z) or one int; default `kernel_size // 2` (centred windows).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntOrTriple = 3,
        stride: IntOrTriple = 2, padding: Optional[IntOrTriple] = None, bias: bool = False,
    ):
        super().__init__(in_channels, out_channels, kernel_size, bias, in_channels)
        self.stride = _triple(stride, "stride")
        if padding is None:
            padding = tuple(k // 2 for k in self.kernel_size)
        self.padding = _triple(padding, "padding")

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.backend == "torch":
            feats, kernel_map = torch_backend.conv_strided(
                x, self.weight, self.kernel_size, self.stride, self.padding
            )
            coords, spatial_shape = kernel_map.out_coords, kernel_map.out_spatial_shape
        else:
            feats, coords, spatial_shape = _adapter_conv(x.backend)(
                x, self.weight, self.kernel_size, self.stride, self.padding, self.training
            )
        return SparseTensor(
            self._add_bias(feats), coords, spatial_shape, x.batch_size,
            tuple(a * b for a, b in zip(x.stride, self.stride)), x.backend, x.cache,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stride={self.stride}, padding={self.padding}"


class SparseInverseConv3d(_SparseConvBase):
    """Transposed sparse conv (up-sampling) onto the cells of a finer tensor.

    `forward(x, target)`: x at stride S * stride (coarse), target at stride S; returns features
    (N_target, C_out) on target's cells. `kernel_size`, `stride`, `padding` are those of the
    `SparseConv3d` being inverted; weight (K, C_in (coarse), C_out (fine)).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: IntOrTriple = 3,
        stride: IntOrTriple = 2, padding: Optional[IntOrTriple] = None, bias: bool = False,
    ):
        super().__init__(in_channels, out_channels, kernel_size, bias, in_channels)
        self.stride = _triple(stride, "stride")
        if padding is None:
            padding = tuple(k // 2 for k in self.kernel_size)
        self.padding = _triple(padding, "padding")

    def forward(self, x: SparseTensor, target: SparseTensor) -> SparseTensor:
        expected = tuple(t * s for t, s in zip(target.stride, self.stride))
        if x.stride != expected:
            raise ValueError(
                f"SparseInverseConv3d: input stride {x.stride} should be target stride "
                f"{target.stride} times conv stride {self.stride}"
            )
        if x.backend == "torch":
            feats = torch_backend.conv_inverse(
                x, target, self.weight, self.kernel_size, self.stride, self.padding
            )
        else:
            feats, _, _ = _adapter_conv(x.backend)(
                x, self.weight, self.kernel_size, self.stride, self.padding, self.training,
                target=target,
            )
        return target.replace_feats(self._add_bias(feats))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, stride={self.stride}, padding={self.padding}"


class SparseBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the active cells' features (same state-dict keys as `nn.BatchNorm1d`).

    In training with fewer than two active cells batch statistics are undefined; the running
    statistics are used instead (and left unchanged).
    """

    def forward(self, x: SparseTensor) -> SparseTensor:
        feats = x.feats
        if feats.shape[0] == 0:
            return x
        if self.training and feats.shape[0] < 2:
            feats = nn.functional.batch_norm(
                feats, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                self.eps,
            )
            return x.replace_feats(feats)
        return x.replace_feats(super().forward(feats))


class SparseReLU(nn.Module):
    """ReLU on the active cells' features."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(nn.functional.relu(x.feats, inplace=self.inplace))
