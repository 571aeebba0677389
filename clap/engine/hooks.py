"""Hooks of the default training loop: timing, LR schedule, checkpoints, evaluation, writers.

Recommended order (DefaultTrainer.build_hooks): IterationTimer, LRScheduler, model hooks,
EvalHook, PeriodicCheckpointer, PeriodicWriter -- so that a checkpoint written at iteration i
contains every state change of iteration i and is written after that iteration's evaluation (a
run killed in between evaluates again when resumed), and writers see the evaluation results.
"""

import datetime
import logging
import numbers
import os
import re
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from fvcore.common.checkpoint import PeriodicCheckpointer as _FvcorePeriodicCheckpointer

from clap.checkpoint import remove_stale_temporaries
from clap.engine.train_loop import HookBase
from clap.utils import comm
from clap.utils.env import get_rng_states, set_rng_states
from clap.utils.events import EventWriter

__all__ = [
    "EvalHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "flatten_results",
    "preserved_rng_states",
]

logger = logging.getLogger(__name__)


class IterationTimer(HookBase):
    """Puts "time" (seconds of each iteration, from before_step to after_step) into the storage
    and logs the total training time at the end. Register it first, so that its after_step
    runs before the other hooks' (their time is not counted in "time")."""

    def __init__(self, warmup_iter: int = 3):
        """
        Args:
            warmup_iter: iterations left out of the reported average speed (the first
                iterations include one-off set-up such as starting data workers).
        """
        self._warmup_iter = warmup_iter
        self._step_start = 0.0
        self._train_start = 0.0
        self._timed_seconds = 0.0
        self._timed_iters = 0

    def before_train(self):
        self._train_start = time.perf_counter()
        self._timed_seconds, self._timed_iters = 0.0, 0

    def before_step(self):
        self._step_start = time.perf_counter()

    def after_step(self):
        seconds = time.perf_counter() - self._step_start
        if self.trainer.iter - self.trainer.start_iter >= self._warmup_iter:
            self._timed_seconds += seconds
            self._timed_iters += 1
        self.trainer.storage.put_scalar("time", seconds)

    def after_train(self):
        total = time.perf_counter() - self._train_start
        message = f"Total training time: {datetime.timedelta(seconds=int(total))}"
        if self._timed_iters > 0:
            per_iter = self._timed_seconds / self._timed_iters
            message += f" ({self._timed_iters} timed iterations, {per_iter:.4f} s / it)"
        logger.info(message)


class LRScheduler(HookBase):
    """Steps a torch LR scheduler after every optimizer step and logs the learning rate ("lr",
    of the param group with the most values) used in that iteration. Its state is the
    scheduler's state."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.scheduler = scheduler
        groups = scheduler.optimizer.param_groups
        sizes = [sum(p.numel() for p in g["params"]) for g in groups]
        self._logged_group = max(range(len(groups)), key=lambda i: sizes[i])

    def after_step(self):
        lr = self.scheduler.optimizer.param_groups[self._logged_group]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self.scheduler.step()

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])


class PeriodicCheckpointer(_FvcorePeriodicCheckpointer, HookBase):
    """Saves `<prefix>_<iteration:07d>.pth` every `period` iterations and `<prefix>_final.pth`
    after the last one, each with the iteration and every rank's RNG states (so a resumed run
    continues the same random streams).

    Runs on every rank (gathering the RNG states is a collective); only the checkpointer of the
    main rank writes. With `max_to_keep`, older periodic files in the folder are deleted (found
    by name, so this also holds across restarts); the final file is always kept. Temporary
    files of checkpoint writes interrupted by a kill are deleted when training starts and at
    each such rotation.
    """

    def __init__(
        self, checkpointer, period: int, max_to_keep: Optional[int] = None, file_prefix="model"
    ):
        if period <= 0:
            raise ValueError(f"Checkpoint period must be positive, got {period}")
        super().__init__(checkpointer, period, None, max_to_keep or None, file_prefix)

    def before_train(self):
        self.max_iter = self.trainer.max_iter
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        if self.checkpointer.save_to_disk and self.checkpointer.save_dir:
            remove_stale_temporaries(self.checkpointer.save_dir)

    def after_step(self):
        iteration = self.trainer.iter
        if (iteration + 1) % self.period == 0 or iteration >= self.max_iter - 1:
            self.step(iteration, rng_states=comm.all_gather(get_rng_states()))

    def step(self, iteration: int, **kwargs: Any) -> None:
        iteration = int(iteration)
        extra = {"iteration": iteration, **kwargs}
        if (iteration + 1) % self.period == 0:
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", **extra)
            self._delete_old_checkpoints()
        if self.max_iter is not None and iteration >= self.max_iter - 1:
            self.checkpointer.save(f"{self.file_prefix}_final", **extra)

    def _delete_old_checkpoints(self) -> None:
        if self.max_to_keep is None or not self.checkpointer.save_to_disk:
            return
        self._remove_stale_temporaries()
        pattern = re.compile(rf"^{re.escape(self.file_prefix)}_(\d{{7}})\.pth$")
        save_dir = self.checkpointer.save_dir
        periodic = sorted(
            (int(m.group(1)), name)
            for name in os.listdir(save_dir)
            if (m := pattern.match(name)) is not None
        )
        for _, name in periodic[: -self.max_to_keep]:
            os.remove(os.path.join(save_dir, name))


@contextmanager
def preserved_rng_states():
    """Run a block without changing any global RNG (python, numpy, torch, CUDA) of the caller."""
    states = get_rng_states()
    try:
        yield
    finally:
        set_rng_states(states)


def flatten_results(results: Mapping, prefix: str = "") -> Dict[str, float]:
    """{"a": {"b": 1.0}} -> {"a/b": 1.0}. Values must be numbers (or 0-d tensors).

    Raises:
        TypeError: naming the key of a value that is not a number.
    """
    flat = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, prefix=f"{name}/"))
            continue
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"Evaluation result '{name}' is a {type(value).__name__}, not a number")
        flat[name] = float(value)
    return flat


class EvalHook(HookBase):
    """Calls `eval_function() -> dict` every `eval_period` iterations and after the last one,
    and puts the flattened results ("dataset/metric": number) into the storage.

    The evaluation leaves the training RNG streams untouched, so evaluating does not change
    how training continues.
    """

    def __init__(
        self,
        eval_period: int,
        eval_function: Callable[[], Optional[Mapping]],
        eval_after_train: bool = True,
    ):
        """
        Args:
            eval_period: iterations between evaluations; 0 evaluates only at the end.
            eval_function: runs on every rank; returns nested dicts of numbers on the main rank
                (other ranks may return None or {}).
            eval_after_train: also evaluate after the last iteration.
        """
        self._period = eval_period
        self._function = eval_function
        self._eval_after_train = eval_after_train

    def _evaluate(self) -> None:
        with preserved_rng_states():
            results = self._function()
        if results:
            flat = flatten_results(results)
            self.trainer.storage.put_scalars(**flat, smoothing_hint=False)
        comm.synchronize()

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter < self.trainer.max_iter:
            self._evaluate()

    def after_train(self):
        if self._eval_after_train and self.trainer.iter >= self.trainer.max_iter:
            self._evaluate()
        # drop the references so the evaluation's data and model can be freed
        self._function = None


class PeriodicWriter(HookBase):
    """Runs the writers every `period` iterations, after the last iteration and at the end of
    training (then closes them). Images and histograms in the storage are dropped after each
    write, on every rank (register it on every rank, with writers on the main rank only).

    Its state is the last `window_size` values of every scalar, so that a resumed run's
    smoothed values (medians over the last values) continue the window of the interrupted run
    instead of restarting it.
    """

    def __init__(self, writers: Sequence[EventWriter], period: int = 20, window_size: int = 20):
        """
        Args:
            writers: run on each write.
            period: iterations between writes.
            window_size: values per scalar kept in checkpoints (the writers' smoothing window).
        """
        self._writers: List[EventWriter] = list(writers)
        for writer in self._writers:
            if not isinstance(writer, EventWriter):
                raise TypeError(f"Expected an EventWriter, got {type(writer).__name__}")
        self._period = period
        self._window_size = window_size
        self._restored: Optional[Dict[str, dict]] = None

    def _write(self) -> None:
        for writer in self._writers:
            writer.write()
        self.trainer.storage.clear_images()
        self.trainer.storage.clear_histograms()

    def before_train(self):
        if self._restored:
            self.trainer.storage.restore_recent_values(self._restored)
        self._restored = None

    def after_step(self):
        iteration = self.trainer.iter
        if (iteration + 1) % self._period == 0 or iteration == self.trainer.max_iter - 1:
            self._write()

    def after_train(self):
        self._write()
        for writer in self._writers:
            writer.close()

    def state_dict(self) -> dict:
        storage = self.trainer.storage if self.trainer is not None else None
        if storage is None:
            return {}
        return {"recent_scalars": storage.recent_state(self._window_size)}

    def load_state_dict(self, state: dict) -> None:
        self._restored = state.get("recent_scalars")
