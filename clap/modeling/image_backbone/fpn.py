"""Feature pyramid network on top of a ResNet."""

from typing import Dict, List, Sequence

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
    """

    def __init__(self, input_shape: Dict[str, ShapeSpec], out_channels: int):
        super().__init__()
        if not input_shape or not all(name.startswith("res") for name in input_shape):
            raise ValueError(f"FPN takes ResNet stages 'res2'..'res5' "
                             f"(MODEL.IMAGE_BACKBONE.OUT_FEATURES), got {list(input_shape)}")
        self.in_features = sorted(input_shape, key=lambda name: input_shape[name].stride)
        self.out_features = ["p" + name[len("res"):] for name in self.in_features]
        self.strides = [input_shape[name].stride for name in self.in_features]
        self.out_channels = out_channels
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(input_shape[name].channels, out_channels, 1) for name in self.in_features
        )
        self.output_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in self.in_features
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
        outputs: List[torch.Tensor] = []
        top_down = None
        for index in reversed(range(len(self.in_features))):
            lateral = self.lateral_convs[index](features[self.in_features[index]])
            if top_down is not None:
                lateral = lateral + F.interpolate(top_down, size=lateral.shape[-2:],
                                                  mode="nearest")
            top_down = lateral
            outputs.insert(0, self.output_convs[index](lateral))
        return dict(zip(self.out_features, outputs))


@IMAGE_BACKBONE_REGISTRY.register()
class ResNetFPN(nn.Module):
    """`ResNet` (as `bottom_up`) followed by an `FPN`; returns the pyramid levels "pN"."""

    @configurable
    def __init__(self, *, bottom_up: ResNet, fpn_out_channels: int = 256):
        super().__init__()
        self.bottom_up = bottom_up
        self.fpn = FPN(bottom_up.output_shape(), fpn_out_channels)

    @classmethod
    def from_config(cls, cfg):
        return {
            "bottom_up": ResNet(cfg),
            "fpn_out_channels": cfg.MODEL.IMAGE_BACKBONE.FPN.OUT_CHANNELS,
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
