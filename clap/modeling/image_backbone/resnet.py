"""ResNet-18/34/50 with torchvision's module names, so torchvision checkpoints load as they are."""

import logging
from typing import Dict, List, Sequence

import torch
from torch import nn

from clap.config import configurable
from clap.layers import ShapeSpec, cpu_autocast, parse_cpu_autocast_dtype, to_float32
from clap.utils.file_io import PathManager

from .build import IMAGE_BACKBONE_REGISTRY
from .layers import FrozenBatchNorm2d, mask_image_patches

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "read_torchvision_state_dict"]

logger = logging.getLogger(__name__)

# depth -> (block type, blocks per stage)
_ARCHITECTURES = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
                  50: ("bottleneck", (3, 4, 6, 3))}
_STAGE_NAMES = ("res2", "res3", "res4", "res5")
_STAGE_STRIDES = {"stem": 4, "res2": 4, "res3": 8, "res4": 16, "res5": 32}


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    raise ValueError(f"MODEL.IMAGE_BACKBONE.NORM must be 'BN' or 'FrozenBN', got {norm!r}")


def _downsample(in_channels: int, out_channels: int, stride: int, norm: str):
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        _norm(norm, out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs (the first strided) and a residual; output channels = `channels`."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, channels, stride, norm)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand to 4 x `channels`, and a residual."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, norm: str):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = _norm(norm, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = _norm(norm, channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = _norm(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out_channels, stride, norm)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def read_torchvision_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Tensors of a local torchvision-format checkpoint (a state dict, or {"state_dict": ...})."""
    if not PathManager.exists(path):
        raise FileNotFoundError(f"MODEL.IMAGE_BACKBONE.WEIGHTS: no file at {path}")
    with PathManager.open(path, "rb") as f:
        checkpoint = torch.load(f, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(checkpoint).__name__}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in checkpoint.items()}


@IMAGE_BACKBONE_REGISTRY.register()
class ResNet(nn.Module):
    """ResNet (torchvision layout, v1.5: stride on the 3x3 conv) returning stage outputs.

    Stages: stem (conv1 7x7/2, bn1, relu, maxpool 3x3/2; stride 4), res2..res5 = layer1..layer4
    (strides 4, 8, 16, 32). `freeze_at` k freezes the first k of [stem, res2, res3, res4, res5]
    (no gradients, their batch norms frozen). In training with `mask_ratio` > 0, random patches
    of the input are zeroed first (see `mask_image_patches`).
    """

    @configurable
    def __init__(
        self, *, depth: int = 50, out_features: Sequence[str] = _STAGE_NAMES,
        norm: str = "FrozenBN", freeze_at: int = 0, mask_ratio: float = 0.0,
        mask_patch_size: int = 32, weights: str = "", cpu_autocast_dtype: str = "",
    ):
        """
        Args:
            depth: 18, 34 or 50.
            out_features: stage names to return, from "stem", "res2", ..., "res5".
            norm: "BN" or "FrozenBN".
            freeze_at: number of leading stages to freeze (0: none).
            mask_ratio: fraction of patches zeroed in training.
            mask_patch_size: patch edge, pixels.
            weights: local torchvision-format checkpoint to load ("" for random init).
            cpu_autocast_dtype: "bfloat16" computes CPU inputs under autocast, channels-last
                (outputs float32; clap/layers/autocast.py), "" in float32.
        """
        super().__init__()
        if depth not in _ARCHITECTURES:
            raise ValueError(f"MODEL.IMAGE_BACKBONE.DEPTH must be one of "
                             f"{sorted(_ARCHITECTURES)}, got {depth}")
        unknown = [f for f in out_features if f not in _STAGE_STRIDES]
        if unknown:
            raise ValueError(f"MODEL.IMAGE_BACKBONE.OUT_FEATURES: unknown {unknown}; choose from "
                             f"{list(_STAGE_STRIDES)}")
        self.out_features = list(out_features)
        self.mask_ratio = float(mask_ratio)
        self.mask_patch_size = int(mask_patch_size)
        self.cpu_autocast_dtype = parse_cpu_autocast_dtype(cpu_autocast_dtype)
        block_type, blocks_per_stage = _ARCHITECTURES[depth]
        block = BasicBlock if block_type == "basic" else Bottleneck

        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = _norm(norm, 64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        self._channels = {"stem": 64}
        for index, (name, blocks) in enumerate(zip(_STAGE_NAMES, blocks_per_stage)):
            channels = 64 * 2**index
            layers = []
            for b in range(blocks):
                stride = 2 if (b == 0 and index > 0) else 1
                layers.append(block(in_channels, channels, stride, norm))
                in_channels = channels * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
            self._channels[name] = in_channels
        self._freeze(freeze_at)
        if weights:
            self.load_torchvision_checkpoint(weights)

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.IMAGE_BACKBONE
        return {
            "depth": c.DEPTH,
            "out_features": list(c.OUT_FEATURES),
            "norm": c.NORM,
            "freeze_at": c.FREEZE_AT,
            "mask_ratio": c.MASK_RATIO,
            "mask_patch_size": c.MASK_PATCH_SIZE,
            "weights": c.WEIGHTS,
            "cpu_autocast_dtype": cfg.MODEL.CPU_AUTOCAST_DTYPE,
        }

    def _stage_modules(self) -> List[List[nn.Module]]:
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3],
                [self.layer4]]

    def _freeze(self, freeze_at: int):
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"MODEL.IMAGE_BACKBONE.FREEZE_AT must be in [0, 5], got {freeze_at}")
        for modules in self._stage_modules()[:freeze_at]:
            for module in modules:
                for p in module.parameters():
                    p.requires_grad_(False)
        if freeze_at >= 1:
            self.bn1 = FrozenBatchNorm2d.convert(self.bn1)
        for index in range(1, freeze_at):
            FrozenBatchNorm2d.convert(getattr(self, f"layer{index}"))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._channels[name], stride=_STAGE_STRIDES[name])
            for name in self.out_features
        }

    def forward(self, images: torch.Tensor, return_mask: bool = False):
        """
        Args:
            images: (N, 3, H, W) normalised images.
            return_mask: also return the patch mask (None when no masking ran).
        Returns:
            dict name -> (N, C, H / stride, W / stride) (ceil); with `return_mask`, also the
            patch mask (N, ceil(H / p), ceil(W / p)) bool.
        """
        patch_mask = None
        if self.training and self.mask_ratio > 0:
            images, patch_mask = mask_image_patches(images, self.mask_patch_size, self.mask_ratio)
        outputs = {}
        with cpu_autocast(self.cpu_autocast_dtype, images) as region:
            if region is not None:
                images = images.contiguous(memory_format=torch.channels_last)
            x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
            if "stem" in self.out_features:
                outputs["stem"] = x
            for index, name in enumerate(_STAGE_NAMES):
                x = getattr(self, f"layer{index + 1}")(x)
                if name in self.out_features:
                    outputs[name] = x
        if region is not None:
            outputs = {name: to_float32(x) for name, x in outputs.items()}
        return (outputs, patch_mask) if return_mask else outputs

    def load_torchvision_checkpoint(self, path_or_state_dict) -> Dict[str, List[str]]:
        """Load torchvision ResNet weights (a local file path or a state dict).

        torchvision names (`conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`,
        `layer2.0.downsample.1.weight`, ...) are this module's names; the classifier `fc.*` is
        ignored and `num_batches_tracked` of frozen norms is dropped. A shape mismatch is an
        error naming the key.
        Returns:
            {"missing": keys of this module not in the checkpoint, "unexpected": checkpoint keys
            with no counterpart, "ignored": the fc.* keys}; also logged.
        """
        if isinstance(path_or_state_dict, str):
            state_dict = read_torchvision_state_dict(path_or_state_dict)
            source = path_or_state_dict
        else:
            state_dict = dict(path_or_state_dict)
            source = "state dict"
        ignored = sorted(k for k in state_dict if k.startswith("fc."))
        for k in ignored:
            state_dict.pop(k)
        incompatible = self.load_state_dict(state_dict, strict=False)
        report = {
            "missing": sorted(incompatible.missing_keys),
            "unexpected": sorted(incompatible.unexpected_keys),
            "ignored": ignored,
        }
        logger.info(
            "Loaded torchvision ResNet weights from %s: %d tensors, %d missing, %d unexpected, "
            "%d ignored", source, len(state_dict) - len(report["unexpected"]),
            len(report["missing"]), len(report["unexpected"]), len(ignored),
        )
        if report["missing"]:
            logger.warning("Keys missing from %s: %s", source, report["missing"])
        if report["unexpected"]:
            logger.warning("Unexpected keys in %s: %s", source, report["unexpected"])
        return report
