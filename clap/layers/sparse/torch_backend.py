"""Pure-torch sparse convolution: gather, one matmul per kernel offset, scatter-add.

Works on any device torch supports; no compiled extension. The autograd function saves only the
input features, the weight and the kernel map (not the gathered rows), and its backward uses the
same map in reverse.
"""

from typing import Sequence

import torch

from .kernel_map import KernelMap, build_kernel_map, strided_output_coords
from .tensor import SparseTensor

__all__ = ["conv_inverse", "conv_strided", "conv_submanifold", "gather_gemm_scatter"]


def _offset_slices(kernel_map: KernelMap):
    start = 0
    for k, count in enumerate(kernel_map.offset_counts):
        if count:
            yield k, slice(start, start + count)
        start += count


class _GatherGemmScatter(torch.autograd.Function):
    """out[o] = sum over pairs (i, o, k) of feats[i] @ weight[k] (+ identity offset term)."""

    @staticmethod
    def forward(ctx, feats, weight, kernel_map: KernelMap, num_out: int, swap: bool):
        with torch.autocast(feats.device.type, enabled=False):
            return _GatherGemmScatter._forward(ctx, feats, weight, kernel_map, num_out, swap)

    @staticmethod
    def _forward(ctx, feats, weight, kernel_map: KernelMap, num_out: int, swap: bool):
        in_idx, out_idx = kernel_map.in_indices, kernel_map.out_indices
        if swap:
            in_idx, out_idx = out_idx, in_idx
        out = feats.new_zeros(num_out, weight.shape[2])
        if kernel_map.identity_offset is not None:
            out += feats @ weight[kernel_map.identity_offset]
        if kernel_map.num_pairs:
            gathered = feats.index_select(0, in_idx)
            products = gathered.new_empty(gathered.shape[0], weight.shape[2])
            for k, rows in _offset_slices(kernel_map):
                torch.mm(gathered[rows], weight[k], out=products[rows])
            out.index_add_(0, out_idx, products)
        ctx.save_for_backward(feats, weight)
        ctx.kernel_map = kernel_map
        ctx.swap = swap
        return out

    @staticmethod
    def backward(ctx, grad_out):
        with torch.autocast(grad_out.device.type, enabled=False):
            return _GatherGemmScatter._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out):
        feats, weight = ctx.saved_tensors
        grad_out = grad_out.to(feats.dtype)
        kernel_map = ctx.kernel_map
        in_idx, out_idx = kernel_map.in_indices, kernel_map.out_indices
        if ctx.swap:
            in_idx, out_idx = out_idx, in_idx
        grad_out = grad_out.contiguous()
        grad_feats = grad_weight = None
        need_feats, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_feats:
            grad_feats = torch.zeros_like(feats)
        if need_weight:
            grad_weight = torch.zeros_like(weight)
        center = kernel_map.identity_offset
        if center is not None:
            if need_feats:
                grad_feats += grad_out @ weight[center].t()
            if need_weight:
                grad_weight[center] = feats.t() @ grad_out
        if kernel_map.num_pairs:
            grad_rows = grad_out.index_select(0, out_idx)
            if need_weight:
                gathered = feats.index_select(0, in_idx)
            if need_feats:
                grad_in_rows = grad_rows.new_empty(grad_rows.shape[0], weight.shape[1])
            for k, rows in _offset_slices(kernel_map):
                if need_weight:
                    torch.mm(gathered[rows].t(), grad_rows[rows], out=grad_weight[k])
                if need_feats:
                    torch.mm(grad_rows[rows], weight[k].t(), out=grad_in_rows[rows])
            if need_feats:
                grad_feats.index_add_(0, in_idx, grad_in_rows)
        return grad_feats, grad_weight, None, None, None


def gather_gemm_scatter(
    feats: torch.Tensor, weight: torch.Tensor, kernel_map: KernelMap, transposed: bool = False
) -> torch.Tensor:
    """Apply a conv weight (K, C_in, C_out) along `kernel_map`.

    `transposed=False`: from the map's input cells to its output cells (result (num_out, C_out)).
    `transposed=True`: the transposed conv, from the map's output cells back to its input cells
    (result (num_in, C_out)); pair (i, o, k) then sends feats[o] @ weight[k] to cell i.
    """
    num_out = kernel_map.num_in if transposed else kernel_map.num_out
    # Under autocast the weight follows the features' dtype (the cast is differentiable).
    return _GatherGemmScatter.apply(feats, weight.to(feats.dtype), kernel_map, num_out, transposed)


def _cached_map(x: SparseTensor, key, in_coords, out_coords, build):
    kernel_map = x.cache.kernel_maps.get(key)
    if (
        kernel_map is None
        or kernel_map.in_coords is not in_coords
        or (out_coords is not None and kernel_map.out_coords is not out_coords)
    ):
        kernel_map = build()
        x.cache.kernel_maps[key] = kernel_map
    return kernel_map


def conv_submanifold(x: SparseTensor, weight: torch.Tensor, kernel_size: Sequence[int]):
    """Submanifold conv: output cells = input cells, centred kernel. Returns feats (N, C_out)."""
    padding = tuple(k // 2 for k in kernel_size)
    key = (x.stride, tuple(kernel_size), (1, 1, 1), padding)
    kernel_map = _cached_map(
        x, key, x.coords, x.coords,
        lambda: build_kernel_map(
            x.coords, x.spatial_shape, x.coords, x.spatial_shape, kernel_size, (1, 1, 1),
            padding, submanifold=True,
        ),
    )
    return gather_gemm_scatter(x.feats, weight, kernel_map)


def conv_strided(
    x: SparseTensor, weight: torch.Tensor, kernel_size: Sequence[int], stride: Sequence[int],
    padding: Sequence[int],
):
    """Generalised strided conv (see `strided_output_coords`). Returns (feats, kernel_map)."""
    key = (x.stride, tuple(kernel_size), tuple(stride), tuple(padding))

    def build():
        out_coords, out_shape = strided_output_coords(
            x.coords, x.spatial_shape, kernel_size, stride, padding
        )
        return build_kernel_map(
            x.coords, x.spatial_shape, out_coords, out_shape, kernel_size, stride, padding
        )

    kernel_map = _cached_map(x, key, x.coords, None, build)
    return gather_gemm_scatter(x.feats, weight, kernel_map), kernel_map


def conv_inverse(
    x: SparseTensor, target: SparseTensor, weight: torch.Tensor, kernel_size: Sequence[int],
    stride: Sequence[int], padding: Sequence[int],
):
    """Transposed conv from coarse `x` onto the cells of the finer `target`.

    Returns feats (N_target, C_out). Reuses the map of the strided conv that produced `x` from
    `target` when it is cached.
    """
    key = (target.stride, tuple(kernel_size), tuple(stride), tuple(padding))
    kernel_map = _cached_map(
        target, key, target.coords, x.coords,
        lambda: build_kernel_map(
            target.coords, target.spatial_shape, x.coords, x.spatial_shape, kernel_size, stride,
            padding,
        ),
    )
    return gather_gemm_scatter(x.feats, weight, kernel_map, transposed=True)
