import torch
from fvcore.common.registry import Registry

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """
Registry for meta-architectures: the whole model.

A registered class is called as `cls(cfg)` and returns an `nn.Module` whose
`forward(batch: dict)` takes a collated batch (see docs/data.md) and returns, in training mode,
a dict[str, Tensor] of scalar losses (keys start with "loss_"; the trainer sums them), and in
eval mode a list with one prediction dict per sample.
"""


def build_model(cfg) -> torch.nn.Module:
    """Build `cfg.MODEL.META_ARCHITECTURE` and move it to `cfg.MODEL.DEVICE`."""
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    model.to(torch.device(cfg.MODEL.DEVICE))
    return model
