"""MAE-style block masking of input voxels."""

from typing import Optional

import torch

__all__ = ["sample_block_mask"]


def sample_block_mask(
    voxel_coords: torch.Tensor, block_size: int, mask_ratio: float,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Drop a random fraction of occupied blocks of each sample.

    The input voxel grid is cut into cubes of `block_size` voxels per axis. For every sample,
    `round(mask_ratio * n)` of its n occupied blocks (halves rounded to even) are drawn uniformly
    without replacement, and all voxels in them are dropped.

    Args:
        voxel_coords: (V, 4) int `[batch, x, y, z]` on the input voxel grid.
        block_size: block edge in input voxels.
        mask_ratio: fraction of occupied blocks to drop, in [0, 1].
        generator: optional random generator on the device of `voxel_coords`.
    Returns:
        keep: (V,) bool, False for dropped voxels.
    """
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"MASK_RATIO must be in [0, 1], got {mask_ratio}")
    if block_size < 1:
        raise ValueError(f"MASK_BLOCK_SIZE must be >= 1 voxel, got {block_size}")
    device = voxel_coords.device
    if voxel_coords.shape[0] == 0 or mask_ratio == 0.0:
        return torch.ones(voxel_coords.shape[0], dtype=torch.bool, device=device)
    blocks = voxel_coords.long().clone()
    blocks[:, 1:] = torch.div(blocks[:, 1:], block_size, rounding_mode="floor")
    unique_blocks, block_of_voxel = torch.unique(blocks, dim=0, return_inverse=True)
    block_batch = unique_blocks[:, 0]
    num_blocks = unique_blocks.shape[0]

    scores = torch.rand(num_blocks, generator=generator, device=device)
    # Sort by (sample, random score): within a sample, rank = position in this order.
    order = torch.argsort(block_batch.double() * 2.0 + scores.double())
    per_sample = torch.bincount(block_batch, minlength=int(block_batch.max()) + 1)
    first_of_sample = torch.cumsum(per_sample, 0) - per_sample
    rank = torch.empty_like(order)
    rank[order] = torch.arange(num_blocks, device=device)
    rank = rank - first_of_sample[block_batch]
    num_dropped = torch.round(per_sample.double() * mask_ratio).long()
    dropped_block = rank < num_dropped[block_batch]
    return ~dropped_block[block_of_voxel]
