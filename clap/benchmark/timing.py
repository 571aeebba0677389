"""Small timing helpers shared by the benchmarks."""

import statistics
from typing import Sequence

import torch

__all__ = ["synchronize", "median", "to_device"]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: Sequence[float]) -> float:
    """Median of `values`; NaN for none."""
    return float(statistics.median(values)) if values else float("nan")


def to_device(value, device: torch.device):
    """`value` (tensors inside nested dicts / lists / tuples) moved to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device) for v in value)
    return value
