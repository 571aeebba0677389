"""Adapter onto torchsparse 2.x (`torchsparse.nn.functional.conv3d`); imported lazily.

Written against the torchsparse 2.1 API: `torchsparse.SparseTensor(feats, coords, stride,
spatial_range)` with int coordinates `[batch, x, y, z]` on the tensor's own grid and
`spatial_range = (B, X, Y, Z)`; `conv3d(input, weight, kernel_size, bias, stride, padding,
dilation, config, transposed, generative, training)` with weight (K, C_in, C_out) (or (C_in, C_out)
for a 1x1x1 stride-1 kernel), odd kernels ordered x fastest. That is this project's layout, so
the weights are passed through unchanged. torchsparse keeps its kernel maps in a `_caches`
object; it is carried in `KernelMapCache.torchsparse_caches` so that submanifold convs reuse
maps and a transposed conv finds the map of the strided conv it inverts.
"""

from typing import Sequence

import torch

from .tensor import SparseTensor

__all__ = ["ts_conv"]


def _to_torchsparse(x: SparseTensor):
    import torchsparse

    spatial_range = (x.batch_size,) + tuple(x.spatial_shape)
    converted = torchsparse.SparseTensor(
        feats=x.feats, coords=x.coords.int(), stride=x.stride, spatial_range=spatial_range
    )
    if x.cache.torchsparse_caches is None:
        x.cache.torchsparse_caches = converted._caches
    else:
        converted._caches = x.cache.torchsparse_caches
    return converted


def ts_conv(
    x: SparseTensor, weight: torch.Tensor, kernel_size: Sequence[int], stride: Sequence[int],
    padding: Sequence[int], training: bool, target: SparseTensor = None,
):
    """One torchsparse conv. Returns (feats, coords (N, 4) long, spatial_shape (X, Y, Z)).

    Submanifold when `stride` is all ones; strided otherwise; transposed onto `target`'s cells
    when `target` is given (it must be the tensor the matching strided conv started from).
    """
    from torchsparse.nn import functional as F

    kernel_size = tuple(kernel_size)
    stride = tuple(stride)
    if kernel_size == (1, 1, 1) and stride == (1, 1, 1):
        weight = weight[0]
    converted = _to_torchsparse(x)
    if target is not None:
        fine_stride = tuple(s // c for s, c in zip(x.stride, stride))
        if (fine_stride, kernel_size, stride, (1, 1, 1)) not in converted._caches.kmaps:
            raise RuntimeError(
                "torchsparse transposed conv: no cached kernel map from stride "
                f"{fine_stride} with kernel {kernel_size} and stride {stride}; run the matching "
                "strided SparseConv3d on the target tensor first (same forward pass)"
            )
    out = F.conv3d(
        converted, weight, kernel_size, bias=None, stride=stride, padding=tuple(padding),
        dilation=1, transposed=target is not None, training=training,
    )
    if target is not None:
        if out.feats.shape[0] != target.num_active:
            raise RuntimeError(
                f"torchsparse transposed conv returned {out.feats.shape[0]} cells, target has "
                f"{target.num_active}"
            )
        return out.feats, target.coords, target.spatial_shape
    if stride == (1, 1, 1):
        return out.feats, x.coords, x.spatial_shape
    return out.feats, out.coords.long(), tuple(int(v) for v in out.spatial_range[1:])
