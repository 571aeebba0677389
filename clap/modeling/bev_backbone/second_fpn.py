"""SECOND-style BEV backbone: strided conv stages, up-sampled to one resolution and concatenated."""

from fractions import Fraction
from typing import Sequence, Tuple

import torch
from torch import nn

from clap.config import configurable
from clap.layers import ShapeSpec, cpu_autocast, parse_cpu_autocast_dtype, to_float32

from .build import BEV_BACKBONE_REGISTRY


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


@BEV_BACKBONE_REGISTRY.register()
class SecondFPN(nn.Module):
    """Stages of 3x3 convs (the first of each strided), and one up-sampling per stage.

    Stage i down-samples by `layer_strides[i]` (cumulative stride S_i = product of the strides up
    to i) and its output is up-sampled by `upsample_strides[i]` with a transposed conv; every
    ratio s = S_i / upsample_strides[i] must be the same, the output stride: an integer, or the
    inverse of one for an output finer than the input (e.g. strides [1, 2] up-sampled by [2, 4]:
    s = 1/2, twice the input's cells per axis). The up-sampled maps are concatenated:
    (B, sum(num_upsample_filters), Y / s, X / s).
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        input_size: Tuple[int, int],
        layer_nums: Sequence[int],
        layer_strides: Sequence[int],
        num_filters: Sequence[int],
        upsample_strides: Sequence[int],
        num_upsample_filters: Sequence[int],
        cpu_autocast_dtype: str = "",
    ):
        """
        Args:
            in_channels: channels C of the input BEV map.
            input_size: (Y, X) cells of the input BEV map.
            layer_nums: extra 3x3 convs per stage (after the strided one).
            layer_strides: stride of each stage's first conv.
            num_filters: channels of each stage.
            upsample_strides: up-sampling factor of each stage's output.
            num_upsample_filters: channels of each up-sampled map.
            cpu_autocast_dtype: "bfloat16" computes CPU inputs under autocast, channels-last
                (output float32; clap/layers/autocast.py), "" in float32.
        """
        super().__init__()
        lengths = {len(layer_nums), len(layer_strides), len(num_filters), len(upsample_strides),
                   len(num_upsample_filters)}
        if len(lengths) != 1:
            raise ValueError("MODEL.BEV_BACKBONE: LAYER_NUMS, LAYER_STRIDES, NUM_FILTERS, "
                             "UPSAMPLE_STRIDES and NUM_UPSAMPLE_FILTERS need one entry per stage")
        cumulative, output_strides = 1, set()
        for stride, upsample in zip(layer_strides, upsample_strides):
            cumulative *= stride
            output_stride = Fraction(cumulative, upsample)
            if output_stride.numerator != 1 and output_stride.denominator != 1:
                raise ValueError(f"MODEL.BEV_BACKBONE: stage stride {cumulative} over its "
                                 f"UPSAMPLE_STRIDES entry {upsample} is neither an integer nor "
                                 "the inverse of one")
            output_strides.add(output_stride)
        if len(output_strides) != 1:
            raise ValueError("MODEL.BEV_BACKBONE: every stage must end at the same stride after "
                             f"up-sampling, got {sorted(str(s) for s in output_strides)}")
        if input_size[0] % cumulative or input_size[1] % cumulative:
            raise ValueError(f"BEV map {tuple(input_size)} is not divisible by the deepest stage "
                             f"stride {cumulative} (MODEL.BEV_BACKBONE.LAYER_STRIDES)")
        self.output_stride = output_strides.pop()  # Fraction
        self.input_size = tuple(input_size)
        self.out_channels = int(sum(num_upsample_filters))
        self.cpu_autocast_dtype = parse_cpu_autocast_dtype(cpu_autocast_dtype)

        self.stages = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        channels = in_channels
        for num_layers, stride, filters, upsample, up_filters in zip(
            layer_nums, layer_strides, num_filters, upsample_strides, num_upsample_filters
        ):
            layers = _conv_bn_relu(channels, filters, stride)
            for _ in range(num_layers):
                layers += _conv_bn_relu(filters, filters)
            self.stages.append(nn.Sequential(*layers))
            self.upsamples.append(nn.Sequential(
                nn.ConvTranspose2d(filters, up_filters, upsample, stride=upsample, bias=False),
                nn.BatchNorm2d(up_filters),
                nn.ReLU(inplace=True),
            ))
            channels = filters

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        bev = cfg.MODEL.BEV_BACKBONE
        return {
            "in_channels": input_shape.channels,
            "input_size": (input_shape.height, input_shape.width),
            "layer_nums": tuple(bev.LAYER_NUMS),
            "layer_strides": tuple(bev.LAYER_STRIDES),
            "num_filters": tuple(bev.NUM_FILTERS),
            "upsample_strides": tuple(bev.UPSAMPLE_STRIDES),
            "num_upsample_filters": tuple(bev.NUM_UPSAMPLE_FILTERS),
            "cpu_autocast_dtype": cfg.MODEL.CPU_AUTOCAST_DTYPE,
        }

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        """(B, C, Y, X) -> (B, out_channels, Y / s, X / s), s the output stride."""
        outputs = []
        with cpu_autocast(self.cpu_autocast_dtype, bev) as region:
            features = bev
            if region is not None:
                features = features.contiguous(memory_format=torch.channels_last)
            for stage, upsample in zip(self.stages, self.upsamples):
                features = stage(features)
                outputs.append(upsample(features))
            output = torch.cat(outputs, dim=1)
        return output if region is None else to_float32(output)

    def output_shape(self) -> ShapeSpec:
        height, width = (int(n / self.output_stride) for n in self.input_size)
        stride = int(self.output_stride) if self.output_stride.denominator == 1 else None
        return ShapeSpec(channels=self.out_channels, height=height, width=width, stride=stride)
