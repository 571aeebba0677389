"""Process-wide settings that make CPU training fast: torch threads and the C allocator.

Both were measured with `tools/benchmark.py` on the CPU-scale CLAP config (docs/performance.md):

- torch's default of one intra-op thread per core made steps 4-13x slower on a 2-core machine
  whose cores were also busy (data-loader workers, other jobs): every op ends in a barrier where
  the running thread spins until the descheduled one arrives. One thread per training process
  avoids it.
- glibc returns large freed blocks to the system (`mmap` / heap trimming), so the next step's
  tensors of the same size are fresh pages, zeroed by the kernel on first touch. Keeping freed
  memory in the heap for reuse saved 5-13% of the CPU time of a step.
"""

import ctypes
import ctypes.util
import logging

import torch

__all__ = ["configure_cpu_runtime", "keep_freed_memory", "set_torch_threads"]

logger = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Largest trim threshold mallopt takes (an int): freed memory at the top of the heap below this
# is kept.
_NEVER_TRIM = 2**31 - 1


def set_torch_threads(num_threads: int) -> None:
    """`torch.set_num_threads(num_threads)` when it is > 0; 0 keeps torch's default."""
    if num_threads < 0:
        raise ValueError(f"CPU.NUM_THREADS must be >= 0, got {num_threads}")
    if num_threads > 0:
        torch.set_num_threads(num_threads)


def keep_freed_memory() -> bool:
    """Ask glibc to serve every allocation from its heap (no `mmap` per large block) and to
    never trim the heap, so memory freed by tensors is reused without new page faults. The
    resident size then stays at its peak. Returns False (and changes nothing) where the C
    library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))


def configure_cpu_runtime(cfg) -> None:
    """Apply `CPU.NUM_THREADS` and `CPU.KEEP_FREED_MEMORY` when `MODEL.DEVICE` is "cpu"."""
    if str(cfg.MODEL.DEVICE) != "cpu":
        return
    set_torch_threads(cfg.CPU.NUM_THREADS)
    if cfg.CPU.KEEP_FREED_MEMORY and not keep_freed_memory():
        logger.warning("CPU.KEEP_FREED_MEMORY: the C library has no glibc mallopt; ignored")
    logger.info(
        f"CPU runtime: {torch.get_num_threads()} torch threads, keep freed memory: "
        f"{bool(cfg.CPU.KEEP_FREED_MEMORY)}"
    )
