"""Lower-precision regions inside model components on the CPU (MODEL.CPU_AUTOCAST_DTYPE).

A convolutional encoder computes under `torch.autocast("cpu", dtype)` with its input in the
channels-last layout (oneDNN's fast path for bfloat16 convolutions) and hands float32 outputs in
the default layout to the next component, so everything outside the region (the field, its
second derivative, the NeuS weights, the losses) stays float32. CUDA inputs are left to
SOLVER.AMP.
"""

import contextlib
from typing import Optional

import torch

__all__ = ["cpu_autocast", "parse_cpu_autocast_dtype", "to_float32"]

_DTYPES = {"": None, "bfloat16": torch.bfloat16}


def parse_cpu_autocast_dtype(name: str) -> Optional[torch.dtype]:
    """The dtype named by MODEL.CPU_AUTOCAST_DTYPE ("" -> None: no region)."""
    if name not in _DTYPES:
        raise ValueError(f"MODEL.CPU_AUTOCAST_DTYPE must be one of {list(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


def cpu_autocast(dtype: Optional[torch.dtype], reference: torch.Tensor):
    """`torch.autocast("cpu", dtype)` when `dtype` is set and `reference` is a CPU tensor, else a
    context that does nothing. Entered, it gives the autocast object, or None when it does
    nothing (`with cpu_autocast(dtype, x) as region: ... if region is not None: ...`)."""
    if dtype is None or reference.device.type != "cpu":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=dtype)


def to_float32(tensor: torch.Tensor) -> torch.Tensor:
    """A floating tensor computed in a region as float32 in the default (contiguous) layout;
    unchanged when it already is."""
    return tensor.to(torch.float32, memory_format=torch.contiguous_format)
