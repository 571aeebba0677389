"""Training events: the EventStorage that code writes metrics into, and the writers that read it.

Training code (trainer, hooks, models) calls `get_event_storage().put_scalar(...)` and friends;
it never talks to TensorBoard or files. `PeriodicWriter` (clap.engine.hooks) periodically runs
the writers below, which turn the storage content into console lines, `metrics.json` and
TensorBoard event files.
"""

import datetime
import json
import logging
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from fvcore.common.history_buffer import HistoryBuffer

from clap.utils.file_io import PathManager

__all__ = [
    "ConsoleWriter",
    "EventStorage",
    "EventWriter",
    "JSONWriter",
    "TensorboardWriter",
    "get_event_storage",
]

_STORAGE_STACK: List["EventStorage"] = []


def get_event_storage() -> "EventStorage":
    """The innermost EventStorage in use (the trainer opens one around training).

    Raises:
        RuntimeError: when called outside `with EventStorage(...)`.
    """
    if not _STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() was called outside an EventStorage context; "
            "training code runs inside `with EventStorage(start_iter):` (the trainer opens it)"
        )
    return _STORAGE_STACK[-1]


class EventStorage:
    """Scalars (with history), images and histograms produced during training, per iteration.

    Scalars keep a history (fvcore HistoryBuffer: `median(window)`, `avg(window)`,
    `global_avg()`, `latest()`). Images and histograms are kept until a writer consumed them
    (`clear_images`, `clear_histograms`). Use as a context manager so `get_event_storage()`
    finds it.
    """

    def __init__(self, start_iter: int = 0, history_length: int = 100000):
        """
        Args:
            start_iter: the iteration the first events belong to.
            history_length: values kept per scalar (older ones are dropped from the windowed
                statistics; `global_avg` still covers all of them).
        """
        self._history: Dict[str, HistoryBuffer] = defaultdict(lambda: HistoryBuffer(history_length))
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest_scalars: Dict[str, Tuple[float, int]] = {}
        self._start_iter = int(start_iter)
        self._iter = int(start_iter)
        self._prefix = ""
        self._images: List[Tuple[str, torch.Tensor, int]] = []
        self._histograms: List[dict] = []

    # ------------------------------------------------------------------ scalars
    def put_scalar(
        self, name: str, value, smoothing_hint: bool = True, cur_iter: Optional[int] = None
    ) -> None:
        """Record a scalar (python number or 0-d tensor) for the current (or given) iteration.

        Args:
            smoothing_hint: writers show the median over a window when True, the raw latest
                value when False. It must stay the same for a name.
        """
        name = self._prefix + name
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        value = float(value.detach().item()) if isinstance(value, torch.Tensor) else float(value)
        self._history[name].update(value, cur_iter)
        self._latest_scalars[name] = (value, cur_iter)
        previous_hint = self._smoothing_hints.get(name)
        if previous_hint is not None and previous_hint != smoothing_hint:
            raise ValueError(f"Scalar '{name}' was put with smoothing_hint={previous_hint} before")
        self._smoothing_hints[name] = smoothing_hint

    def put_scalars(self, *, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **kwargs):
        """`put_scalar` for every keyword argument: `storage.put_scalars(loss=1.0, acc=0.5)`."""
        for name, value in kwargs.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def history(self, name: str) -> HistoryBuffer:
        """The HistoryBuffer of a scalar (its full name, including any name scope)."""
        if name not in self._history:
            known = ", ".join(sorted(self._history)) or "none"
            raise KeyError(f"No scalar named '{name}' in the EventStorage. Known: {known}")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        """name -> HistoryBuffer of every scalar."""
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """name -> (latest value, iteration it was put at), for every scalar."""
        return dict(self._latest_scalars)

    def recent_values(self, name: str, window_size: int) -> List[Tuple[float, int]]:
        """The last `window_size` (value, iteration) pairs of a scalar put at iterations up to
        the current one (`iter`; later ones belong to an iteration that has not finished)."""
        data = self.history(name).values()
        end = len(data)
        while end > 0 and data[end - 1][1] > self._iter:
            end -= 1
        return [(value, int(it)) for value, it in data[max(0, end - window_size):end]]

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """name -> (value, iteration) for every scalar put in this storage's iterations up to
        the current one (`start_iter` .. `iter`): the value put last, or for scalars with a
        smoothing hint the median of the last `window_size` values (which may include values
        restored from before `start_iter`, see `restore_recent_values`)."""
        result = {}
        for name in self._history:
            values = self.recent_values(name, window_size)
            if not values or values[-1][1] < self._start_iter:
                continue
            value, it = values[-1]
            if self._smoothing_hints[name]:
                value = float(np.median([v for v, _ in values]))
            result[name] = (value, it)
        return result

    def recent_state(self, window_size: int = 20) -> Dict[str, dict]:
        """The last `window_size` values of every scalar up to `iter`, with its smoothing hint:
        {name: {"values": [[value, iteration], ...], "smoothing_hint": bool}} (checkpointable)."""
        return {
            name: {
                "values": [[v, it] for v, it in self.recent_values(name, window_size)],
                "smoothing_hint": self._smoothing_hints[name],
            }
            for name in self._history
        }

    def restore_recent_values(self, state: Dict[str, dict]) -> None:
        """Put back what `recent_state` returned (before any new value), so that the smoothed
        values of a resumed run cover the same window as in an uninterrupted run."""
        for name, entry in state.items():
            for value, it in entry["values"]:
                self._history[name].update(float(value), int(it))
                self._smoothing_hints[name] = bool(entry["smoothing_hint"])

    def smoothing_hints(self) -> Dict[str, bool]:
        return dict(self._smoothing_hints)

    # ------------------------------------------------------------------ images, histograms
    def put_image(self, name: str, image: torch.Tensor) -> None:
        """Record an image for TensorBoard.

        Args:
            image: (C, H, W) with C in {1, 3}, float in [0, 1] or uint8 in [0, 255]. Stored as
                a float (C, H, W) CPU tensor in [0, 1].
        """
        name = self._prefix + name
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(
                f"put_image('{name}'): expected a (C, H, W) tensor with C 1 or 3, got {shape}"
            )
        image = image.detach().cpu()
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        elif image.is_floating_point():
            image = image.float().clamp(0.0, 1.0)
        else:
            raise ValueError(
                f"put_image('{name}'): dtype must be uint8 or floating, got {image.dtype}"
            )
        self._images.append((name, image, self._iter))

    def put_histogram(self, name: str, values: torch.Tensor, bins: int = 64) -> None:
        """Record a histogram of `values` (any shape, finite) with `bins` equal-width bins."""
        name = self._prefix + name
        values = values.detach().float().reshape(-1).cpu()
        if values.numel() == 0:
            raise ValueError(f"put_histogram('{name}'): no values")
        low, high = values.min().item(), values.max().item()
        counts = torch.histc(values, bins=bins, min=low, max=high)
        edges = torch.linspace(low, high, steps=bins + 1)[1:]
        self._histograms.append(
            {
                "tag": name,
                "min": low,
                "max": high,
                "num": values.numel(),
                "sum": values.sum().item(),
                "sum_squares": (values**2).sum().item(),
                "bucket_limits": edges.tolist(),
                "bucket_counts": counts.tolist(),
                "global_step": self._iter,
            }
        )

    @property
    def images(self) -> List[Tuple[str, torch.Tensor, int]]:
        """(name, (C, H, W) float image in [0, 1], iteration) not yet consumed by a writer."""
        return list(self._images)

    @property
    def histograms(self) -> List[dict]:
        """Histogram records (keyword arguments of SummaryWriter.add_histogram_raw)."""
        return list(self._histograms)

    def clear_images(self) -> None:
        self._images = []

    def clear_histograms(self) -> None:
        self._histograms = []

    # ------------------------------------------------------------------ iteration, scopes
    @property
    def iter(self) -> int:
        """The iteration new events belong to (the trainer sets it before each step; after an
        error, to the last completed iteration, so that writers leave the failed one out)."""
        return self._iter

    @property
    def start_iter(self) -> int:
        """The first iteration of this storage."""
        return self._start_iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._iter = int(value)

    @contextmanager
    def name_scope(self, name: str):
        """Prefix every name put inside the block with `name/` (scopes nest)."""
        old_prefix = self._prefix
        self._prefix = f"{old_prefix}{name.rstrip('/')}/"
        try:
            yield
        finally:
            self._prefix = old_prefix

    def __enter__(self) -> "EventStorage":
        _STORAGE_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if not _STORAGE_STACK or _STORAGE_STACK[-1] is not self:
            raise RuntimeError("EventStorage contexts were exited out of order")
        _STORAGE_STACK.pop()


class EventWriter:
    """Turns the content of the current EventStorage into some output when `write()` is called."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release files; the writer is not used afterwards."""


class JSONWriter(EventWriter):
    """Appends one JSON object per iteration to a file: {"iteration": i, name: value, ...}.

    Scalars with a smoothing hint are written as their median over the last `window_size`
    values. Only completed iterations are written (not the one an error stopped). A resumed run
    appends to the same file, so iterations after the resumed checkpoint that had been written
    before the interruption appear twice. Read with `[json.loads(line) for line in open(path)]`.
    """

    def __init__(self, json_file: str, window_size: int = 20):
        self._file = PathManager.open(json_file, "a")
        self._window_size = window_size
        self._last_written_iter = -1

    def write(self) -> None:
        storage = get_event_storage()
        by_iter = defaultdict(dict)
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_written_iter:
                by_iter[it][name] = value
        for it in sorted(by_iter):
            self._file.write(json.dumps({"iteration": it, **by_iter[it]}, sort_keys=True) + "\n")
        if by_iter:
            self._last_written_iter = max(by_iter)
        self._file.flush()
        try:
            os.fsync(self._file.fileno())
        except (AttributeError, OSError):
            pass

    def close(self) -> None:
        self._file.close()


class TensorboardWriter(EventWriter):
    """Writes scalars, images and histograms to TensorBoard event files in `log_dir`."""

    def __init__(self, log_dir: str, window_size: int = 20, **summary_writer_kwargs):
        from torch.utils.tensorboard import SummaryWriter

        self._window_size = window_size
        self._writer = SummaryWriter(log_dir, **summary_writer_kwargs)
        self._last_written_iter = -1

    def write(self) -> None:
        storage = get_event_storage()
        newest = self._last_written_iter
        for name, (value, it) in storage.latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_written_iter:
                self._writer.add_scalar(name, value, it)
                newest = max(newest, it)
        self._last_written_iter = newest
        for name, image, it in storage.images:
            self._writer.add_image(name, image, it, dataformats="CHW")
        for record in storage.histograms:
            self._writer.add_histogram_raw(**record)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class ConsoleWriter(EventWriter):
    """Logs one line per call: ETA, iteration, losses, time, data time, lr and peak GPU memory,
    for the current iteration of the storage (the last completed one after an error; nothing
    when that line was logged already).

    Losses, "time" and "data_time" are medians over the last `window_size` values; "lr" is the
    value of the iteration. Expects the scalars "time" (IterationTimer), "data_time" (trainer)
    and "lr" (LRScheduler hook); missing ones are left out of the line.
    """

    def __init__(self, max_iter: int, window_size: int = 20):
        self.logger = logging.getLogger(__name__)
        self._max_iter = max_iter
        self._window_size = window_size
        self._last_write: Optional[Tuple[int, float]] = None  # (iteration, wall time)
        self._last_written_iter = -1

    def _eta_seconds(self, storage: EventStorage, iteration: int) -> Optional[float]:
        remaining = self._max_iter - iteration - 1
        times = storage.recent_values("time", 1000) if "time" in storage.histories() else []
        if times:
            return float(np.median([v for v, _ in times])) * remaining
        now = time.perf_counter()
        eta = None
        if self._last_write is not None and iteration > self._last_write[0]:
            seconds_per_iter = (now - self._last_write[1]) / (iteration - self._last_write[0])
            eta = seconds_per_iter * remaining
        self._last_write = (iteration, now)
        return eta

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if iteration >= self._max_iter or iteration <= self._last_written_iter:
            return  # training finished (the last iteration was written), or written already
        values = {
            name: value
            for name, (value, it) in storage.latest_with_smoothing_hint(self._window_size).items()
            if it == iteration
        }
        if not values:
            return  # no iteration completed in this storage yet
        self._last_written_iter = iteration
        eta = self._eta_seconds(storage, iteration)
        parts = []
        if eta is not None:
            parts.append(f"eta: {datetime.timedelta(seconds=int(eta))}")
        parts.append(f"iter: {iteration}")
        for name in sorted(values):
            if "loss" in name:
                parts.append(f"{name}: {values[name]:.4g}")
        for name in ("time", "data_time"):
            if name in values:
                parts.append(f"{name}: {values[name]:.4f}")
        if "lr" in values:
            parts.append(f"lr: {values['lr']:.5g}")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            parts.append(f"max_mem: {torch.cuda.max_memory_allocated() / 1024**2:.0f}M")
        self.logger.info("  ".join(parts))
