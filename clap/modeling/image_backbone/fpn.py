"""Feature pyramid network on top of a ResNet."""

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clap.config import configurable
from clap.layers import ShapeSpec

from .build import IMAGE_BACKBONE_REGISTRY
from .resnet import ResNet

__all__ = ["FPN", "ResNetFPN"]


class FPN(nn.Module):
    """Top-down pyramid: 1x1 lateral convs, nearest up-sampling and sum, 3x3 output convs.

    Input level "resN" (stride s) gives output level "pN" (same stride) with `out_channels`.
    Only the requested output levels are built: level "pN" needs the lateral convs of "resN"
    and of every coarser input (the top-down path), and its own 3x3 output conv. Inputs finer
    than the finest requested level get no lateral conv, and levels not requested no output
    conv, so every parameter is used by the forward (DistributedDataParallel requires it).
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        out_channels: int,
        out_features: Optional[Sequence[str]] = None,
    ):
        """
        Args:
            input_shape: ResNet stages "resN" -> ShapeSpec.
            out_channels: channels of every output level.
            out_features: the levels "pN" to build and return; None: one per input stage.
        """
        super().__init__()
        if not input_shape or not all(name.startswith("res") for name in input_shape):
            raise ValueError(f"FPN takes ResNet stages 'res2'..'res5' "
                             f"(MODEL.IMAGE_BACKBONE.OUT_FEATURES), got {list(input_shape)}")
        stages = sorted(input_shape, key=lambda name: input_shape[name].stride)
        levels = ["p" + name[len("res"):] for name in stages]
        if out_features is None:
            out_features = levels
        unknown = [name for name in out_features if name not in levels]
        if unknown or not out_features:
            raise ValueError(
                f"FPN output levels {list(out_features)}: each must be one of {levels} (one per "
                "ResNet stage of MODEL.IMAGE_BACKBONE.OUT_FEATURES), and at least one is needed"
            )
        first = min(levels.index(name) for name in out_features)
        self.in_features = stages[first:]
        self.out_features = [name for name in levels[first:] if name in out_features]
        self._output_index = {name: index for index, name in enumerate(levels[first:])}
        self.strides = [input_shape[stages[levels.index(name)]].stride
                        for name in self.out_features]
        self.out_channels = out_channels
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(input_shape[name].channels, out_channels, 1) for name in self.in_features
        )
        self.output_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in self.out_features
        )
        for conv in list(self.lateral_convs) + list(self.output_convs):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self.out_channels, stride=stride)
            for name, stride in zip(self.out_features, self.strides)
        }

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """dict "resN" -> (N, C_N, H / s, W / s) to dict "pN" -> (N, out_channels, H / s, W / s)
        for the output levels."""
        merged: List[torch.Tensor] = []
        top_down = None
        for index in reversed(range(len(self.in_features))):
            lateral = self.lateral_convs[index](features[self.in_features[index]])
            if top_down is not None:
                lateral = lateral + F.interpolate(top_down, size=lateral.shape[-2:],
                                                  mode="nearest")
            top_down = lateral
            merged.insert(0, lateral)
        return {
            name: conv(merged[self._output_index[name]])
            for name, conv in zip(self.out_features, self.output_convs)
        }


@IMAGE_BACKBONE_REGISTRY.register()
class ResNetFPN(nn.Module):
    """`ResNet` (as `bottom_up`) followed by an `FPN`; returns the pyramid levels "pN" that the
    model reads (MODEL.IMAGE_BACKBONE.FPN.OUT_FEATURES, by default the lift's
    MODEL.VIEW_TRANSFORM.IN_FEATURES)."""

    @configurable
    def __init__(
        self,
        *,
        bottom_up: ResNet,
        fpn_out_channels: int = 256,
        out_features: Optional[Sequence[str]] = None,
    ):
        """
        Args:
            bottom_up: the ResNet; its output stages feed the FPN.
            fpn_out_channels: channels of every pyramid level.
            out_features: pyramid levels built and returned; None: one per ResNet stage.
        """
        super().__init__()
        self.bottom_up = bottom_up
        self.fpn = FPN(bottom_up.output_shape(), fpn_out_channels, out_features)

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.IMAGE_BACKBONE
        return {
            "bottom_up": ResNet(cfg),
            "fpn_out_channels": c.FPN.OUT_CHANNELS,
            "out_features": list(c.FPN.OUT_FEATURES or cfg.MODEL.VIEW_TRANSFORM.IN_FEATURES),
        }

    @property
    def out_features(self) -> Sequence[str]:
        return self.fpn.out_features

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return self.fpn.output_shape()

    def forward(self, images: torch.Tensor, return_mask: bool = False):
        """(N, 3, H, W) normalised images -> dict "pN" -> (N, C_fpn, H / s, W / s).

        With `return_mask`, also the bottom-up's patch mask (see `ResNet.forward`).
        """
        features, patch_mask = self.bottom_up(images, return_mask=True)
        outputs = self.fpn(features)
        return (outputs, patch_mask) if return_mask else outputs

    def load_torchvision_checkpoint(self, path_or_state_dict) -> Dict[str, List[str]]:
        """Load torchvision ResNet weights into `bottom_up` (see `ResNet`); same report."""
        return self.bottom_up.load_torchvision_checkpoint(path_or_state_dict)
