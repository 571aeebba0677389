"""`SparseTensor`: active voxels of a batch of 3D grids, with their features."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple

import torch

__all__ = ["KernelMapCache", "SparseTensor"]


@dataclass
class KernelMapCache:
    """Neighbour maps shared by every tensor derived from one input within one forward pass.

    `kernel_maps` maps `(input stride, kernel_size, conv stride, padding)` to the pure-torch
    `KernelMap` built for it; successive convolutions with the same key (e.g. all submanifold
    convs of one stage) reuse it. Each map remembers the coordinate tensors it was built for and
    is only reused for those very tensors. `torchsparse_caches` holds torchsparse's own cache
    object when that backend runs, so its kernel maps are shared the same way; `spconv_pairs`
    maps the same keys to spconv's pairs, `(input coords, output coords, pairs, pair counts)`.
    """

    kernel_maps: Dict[Tuple, Any] = field(default_factory=dict)
    torchsparse_caches: Any = None
    spconv_pairs: Dict[Tuple, Any] = field(default_factory=dict)


class SparseTensor:
    """Features on the active cells of a batch of sparse 3D grids.

    Args:
        feats: (N, C) float features, one row per active cell.
        coords: (N, 4) integer `[batch, x, y, z]`: batch index and cell index on this tensor's
            own grid (a cell at stride s covers s input voxels along that axis). Rows are unique.
        spatial_shape: number of cells (X, Y, Z) of this tensor's grid.
        batch_size: number of samples B (samples may have no active cell).
        stride: (x, y, z) size of one cell in input voxels.
        backend: "torch" (pure-torch kernels), "torchsparse" or "spconv"; every conv on this
            tensor and on the tensors derived from it runs on this backend.
        cache: kernel-map cache to share; a new one when None (a new forward pass).
    """

    def __init__(
        self,
        feats: torch.Tensor,
        coords: torch.Tensor,
        spatial_shape: Sequence[int],
        batch_size: int,
        stride: Sequence[int] = (1, 1, 1),
        backend: str = "torch",
        cache: Optional[KernelMapCache] = None,
    ):
        if feats.dim() != 2 or coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(
                f"SparseTensor needs feats (N, C) and coords (N, 4); got {tuple(feats.shape)} and "
                f"{tuple(coords.shape)}"
            )
        if feats.shape[0] != coords.shape[0]:
            raise ValueError(
                f"SparseTensor: {feats.shape[0]} feature rows but {coords.shape[0]} coordinates"
            )
        if backend not in ("torch", "torchsparse", "spconv"):
            raise ValueError(
                f"SparseTensor backend must be 'torch', 'torchsparse' or 'spconv', got {backend!r}"
            )
        self.feats = feats
        self.coords = coords.long()
        self.spatial_shape = tuple(int(v) for v in spatial_shape)
        self.batch_size = int(batch_size)
        self.stride = tuple(int(v) for v in stride)
        self.backend = backend
        self.cache = cache if cache is not None else KernelMapCache()

    @property
    def num_active(self) -> int:
        return self.feats.shape[0]

    def replace_feats(self, feats: torch.Tensor) -> "SparseTensor":
        """The same active cells (and cache) with new features (N, C')."""
        return SparseTensor(
            feats, self.coords, self.spatial_shape, self.batch_size, self.stride, self.backend,
            self.cache,
        )

    def to_dense(self, volume_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Scatter into a dense volume (B, C, Z, Y, X), zeros at inactive cells.

        Args:
            volume_shape: (Z, Y, X) of the result; cells beyond it are cropped and missing
                cells zero-padded (at the high end of each axis). Default: `spatial_shape`
                reversed.
        """
        if volume_shape is None:
            volume_shape = self.spatial_shape[::-1]
        z_n, y_n, x_n = (int(v) for v in volume_shape)
        b, x, y, z = self.coords.unbind(1)
        inside = (x < x_n) & (y < y_n) & (z < z_n)
        flat = ((b * z_n + z) * y_n + y) * x_n + x
        channels = self.feats.shape[1]
        dense = self.feats.new_zeros(self.batch_size * z_n * y_n * x_n, channels)
        dense = dense.index_copy(0, flat[inside], self.feats[inside])
        dense = dense.view(self.batch_size, z_n, y_n, x_n, channels)
        return dense.permute(0, 4, 1, 2, 3).contiguous()

    def __repr__(self) -> str:
        return (
            f"SparseTensor(num_active={self.num_active}, channels={self.feats.shape[1]}, "
            f"spatial_shape={self.spatial_shape}, stride={self.stride}, "
            f"batch_size={self.batch_size}, backend={self.backend})"
        )
