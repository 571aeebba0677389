"""Sparse 3D convolution with three backends (pure torch, torchsparse, spconv), one weight layout.

See docs/encoders.md for the definitions of each op and the weight layout.
"""

from .backend import BACKENDS, resolve_sparse_backend, spconv_available, torchsparse_available
from .kernel_map import (
    KernelMap,
    build_kernel_map,
    kernel_offsets,
    sparse_weight_to_dense,
    strided_output_coords,
    strided_output_shape,
)
from .modules import SparseBatchNorm, SparseConv3d, SparseInverseConv3d, SparseReLU, SubMConv3d
from .tensor import KernelMapCache, SparseTensor

__all__ = [
    "BACKENDS", "KernelMap", "KernelMapCache", "SparseBatchNorm", "SparseConv3d",
    "SparseInverseConv3d", "SparseReLU", "SparseTensor", "SubMConv3d", "build_kernel_map",
    "kernel_offsets", "resolve_sparse_backend", "sparse_weight_to_dense", "spconv_available",
    "strided_output_coords", "strided_output_shape", "torchsparse_available",
]
