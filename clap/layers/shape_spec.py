"""Shapes passed between components at build time."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ShapeSpec:
    """The shape of a feature tensor, without the batch dimension.

    For a 2D feature map (N, C, H, W): `channels`, `height`, `width` and `stride` (pixels of the
    input image per feature cell). For a 3D volume (B, C, Z, Y, X): `channels`, `depth` (Z),
    `height` (Y), `width` (X). Unknown fields stay None.
    """

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    depth: Optional[int] = None
    stride: Optional[int] = None
