"""Image-side helpers: frozen batch norm, normalisation, random patch masking."""

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ["FrozenBatchNorm2d", "mask_image_patches", "normalize_images"]


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (all buffers, no gradients).

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel. State-dict
    keys match `nn.BatchNorm2d` (a checkpoint's `num_batches_tracked` is accepted and ignored).
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every `nn.BatchNorm2d` in `module` (or module itself) by a frozen copy."""
        if isinstance(module, nn.BatchNorm2d):
            frozen = cls(module.num_features, module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            converted = cls.convert(child)
            if converted is not child:
                setattr(module, name, converted)
        return module


def normalize_images(
    images: torch.Tensor, pixel_mean: Sequence[float], pixel_std: Sequence[float]
) -> torch.Tensor:
    """(..., 3, H, W) RGB 0-255 -> (images - MODEL.PIXEL_MEAN) / MODEL.PIXEL_STD per channel.

    The meta-architecture calls this before the image backbone (backbones take normalised
    images, so masked patches filled with 0 show the mean colour).
    """
    mean = images.new_tensor(pixel_mean).view(-1, 1, 1)
    std = images.new_tensor(pixel_std).view(-1, 1, 1)
    return (images - mean) / std


def mask_image_patches(
    images: torch.Tensor, patch_size: int, mask_ratio: float,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Set a random set of square patches of each image to 0 (the mean colour once normalised).

    The image is tiled from the top-left corner by `patch_size` x `patch_size` pixel patches
    (border patches may be cut). For each image, `round(mask_ratio * n)` of its n patches are
    drawn uniformly without replacement.

    Args:
        images: (N, 3, H, W) normalised images.
    Returns:
        masked images (N, 3, H, W) and patch_mask (N, ceil(H / p), ceil(W / p)) bool, True for
        masked patches.
    """
    if not 0.0 <= mask_ratio <= 1.0:
        raise ValueError(f"MODEL.IMAGE_BACKBONE.MASK_RATIO must be in [0, 1], got {mask_ratio}")
    n, _, height, width = images.shape
    rows, cols = math.ceil(height / patch_size), math.ceil(width / patch_size)
    num_patches = rows * cols
    num_masked = int(round(mask_ratio * num_patches))
    scores = torch.rand(n, num_patches, generator=generator, device=images.device)
    rank = scores.argsort(dim=1).argsort(dim=1)
    patch_mask = (rank < num_masked).view(n, rows, cols)
    pixel_mask = patch_mask.repeat_interleave(patch_size, dim=1).repeat_interleave(
        patch_size, dim=2
    )[:, :height, :width]
    return images * (~pixel_mask).unsqueeze(1).to(images.dtype), patch_mask
