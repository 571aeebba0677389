"""Peak memory of a block of code: the process's resident set on CPU, allocated memory on CUDA."""

import ctypes
import ctypes.util
import os
import resource
import threading

import torch

__all__ = ["PeakMemory", "max_rss_bytes", "return_large_blocks_on_free"]

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak resident size of this process ("VmHWM", Linux >= 4.0) to the
    current one; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    """The kernel's peak resident size of this process ("VmHWM")."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def return_large_blocks_on_free(threshold: int = 128 * 1024) -> bool:
    """Make glibc serve blocks of `threshold` bytes and more by `mmap` and unmap them when they
    are freed (a fixed threshold; by default it grows up to 32 MB and keeps freed blocks in the
    heap), so that the resident size follows the memory tensors hold. Process-wide; False where
    the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    m_mmap_max, m_mmap_threshold = -4, -3
    return bool(mallopt(m_mmap_max, 65536)) and bool(mallopt(m_mmap_threshold, threshold))


def _release_free_memory() -> None:
    """Hand memory freed by the C allocator back to the system (glibc), so that the resident
    size follows what is allocated."""
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


class PeakMemory:
    """Peak memory while a `with` block runs.

    CPU: the largest resident set size of this process (data-loader worker processes are not
    included): the kernel's own peak ("VmHWM", reset on entry), or where that cannot be reset,
    the resident size sampled by a thread every `interval` seconds. With `release_free_memory`,
    memory the C allocator keeps from before the block is handed back first (glibc
    `malloc_trim`), so that `increase_bytes` counts what the block allocates. CUDA: the peak of
    `torch.cuda.memory_allocated`. `peak_bytes` is the peak, `increase_bytes` the peak minus the
    value at entry.
    """

    def __init__(
        self,
        device: torch.device = torch.device("cpu"),
        interval: float = 0.01,
        release_free_memory: bool = True,
    ):
        self.device = torch.device(device)
        self.interval = interval
        self.release_free_memory = release_free_memory
        self.start_bytes = self.peak_bytes = 0
        self._thread = None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = self.peak_bytes = torch.cuda.memory_allocated(self.device)
            return self
        if self.release_free_memory:
            _release_free_memory()
        self.start_bytes = self.peak_bytes = _rss_bytes()
        if not _reset_peak_rss():
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            return
        if self._thread is None:
            self.peak_bytes = max(self.peak_bytes, _peak_rss_bytes())
            return
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, _rss_bytes())

    @property
    def increase_bytes(self) -> int:
        return self.peak_bytes - self.start_bytes


def max_rss_bytes() -> int:
    """Largest resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
