"""Adapter onto spconv 2.x (`spconv.pytorch`); imported lazily.

Written against spconv 2.3: `ops.get_indice_pairs` builds the gather / scatter pairs of one conv
with the native (gather-GEMM-scatter) algorithm, and `functional.indice_subm_conv`,
`indice_conv` and `indice_inverse_conv` apply a weight along them. Coordinates are passed as
this project's `[batch, x, y, z]` with spatial shape (X, Y, Z), so kernel sizes, strides and
paddings pass through unchanged; spconv's weight is (C_out, k0, k1, k2, C_in) with the last
kernel axis fastest, so the (K, C_in, C_out) weight (x fastest) is permuted on each call. The
pairs are kept in `KernelMapCache.spconv_pairs`, so submanifold convs reuse them and a
transposed conv runs on the pairs of the strided conv it inverts.

spconv's CPU build runs the forward pass only (its backward needs CUDA); on the CPU a conv that
would need a gradient is an error here, before anything is computed.
"""

from typing import Sequence

import torch

from .kernel_map import strided_output_shape
from .tensor import SparseTensor

__all__ = ["spconv_conv"]


def _spconv_weight(weight: torch.Tensor, kernel_size: Sequence[int]) -> torch.Tensor:
    """(K, C_in, C_out), x fastest -> spconv's (C_out, kx, ky, kz, C_in)."""
    kx, ky, kz = kernel_size
    c_in, c_out = weight.shape[1:]
    return weight.reshape(kz, ky, kx, c_in, c_out).permute(4, 2, 1, 0, 3).contiguous()


def _pairs(x: SparseTensor, kernel_size, stride, padding, submanifold: bool):
    """(out_coords (M, 4) int32, pairs, pair counts) of one conv from `x`, cached per input."""
    from spconv.core import ConvAlgo
    from spconv.pytorch import ops

    key = (x.stride, kernel_size, stride, padding)
    cached = x.cache.spconv_pairs.get(key)
    if cached is not None and cached[0] is x.coords:
        return cached[1:]
    out_coords, pairs, counts = ops.get_indice_pairs(
        x.coords.int(), x.batch_size, list(x.spatial_shape), ConvAlgo.Native, list(kernel_size),
        list(stride), list(padding), [1, 1, 1], [0, 0, 0], submanifold, False,
    )
    x.cache.spconv_pairs[key] = (x.coords, out_coords, pairs, counts)
    return out_coords, pairs, counts


def spconv_conv(
    x: SparseTensor, weight: torch.Tensor, kernel_size: Sequence[int], stride: Sequence[int],
    padding: Sequence[int], training: bool, target: SparseTensor = None,
):
    """One spconv conv. Returns (feats, coords (N, 4) long, spatial_shape (X, Y, Z)).

    Submanifold when `stride` is all ones; strided otherwise; transposed onto `target`'s cells
    when `target` is given (the tensor the matching strided conv started from, in the same
    forward pass). `training` is unused (spconv keeps no state); it keeps the signature of the
    other adapters.
    """
    from spconv.core import ConvAlgo
    from spconv.pytorch import functional as F

    needs_grad = torch.is_grad_enabled() and (x.feats.requires_grad or weight.requires_grad)
    if needs_grad and not x.feats.is_cuda:
        raise RuntimeError(
            "MODEL.SPARSE_BACKEND 'spconv' on the CPU: spconv computes no gradients there (its "
            "backward needs CUDA); use the 'torch' backend on the CPU, or run under "
            "torch.no_grad()"
        )
    kernel_size, stride, padding = tuple(kernel_size), tuple(stride), tuple(padding)
    filters = _spconv_weight(weight, kernel_size).to(x.feats.dtype)
    feats = x.feats.contiguous()
    if target is not None:
        fine_stride = tuple(s // c for s, c in zip(x.stride, stride))
        cached = target.cache.spconv_pairs.get((fine_stride, kernel_size, stride, padding))
        if cached is None or cached[0] is not target.coords:
            raise RuntimeError(
                "spconv transposed conv: no pairs of a strided conv from stride "
                f"{fine_stride} with kernel {kernel_size} and stride {stride} on the target "
                "tensor; run the matching strided SparseConv3d on it first (same forward pass)"
            )
        _, pairs, counts = cached[1:]
        out = F.indice_inverse_conv(
            feats, filters, pairs, counts, target.num_active, ConvAlgo.Native
        )
        return out, target.coords, target.spatial_shape
    submanifold = stride == (1, 1, 1)
    out_coords, pairs, counts = _pairs(x, kernel_size, stride, padding, submanifold)
    conv = F.indice_subm_conv if submanifold else F.indice_conv
    out = conv(feats, filters, pairs, counts, out_coords.shape[0], ConvAlgo.Native)
    if submanifold:
        return out, x.coords, x.spatial_shape
    spatial_shape = strided_output_shape(x.spatial_shape, kernel_size, stride, padding)
    return out, out_coords.long(), spatial_shape
