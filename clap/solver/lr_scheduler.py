"""Learning-rate schedules: fvcore ParamSchedulers (functions of training progress in [0, 1])
driven by a torch LR scheduler that is stepped once per iteration."""

from typing import List

import torch
from fvcore.common.param_scheduler import ParamScheduler

__all__ = ["LinearWarmupParamScheduler", "ParamSchedulerLR"]


class LinearWarmupParamScheduler(ParamScheduler):
    """Multiplies a schedule by a factor that grows linearly from `warmup_factor` to 1 over the
    first `warmup_length` of training (a fraction in [0, 1]), then stays 1."""

    def __init__(self, scheduler: ParamScheduler, warmup_factor: float, warmup_length: float):
        if not 0.0 <= warmup_length <= 1.0:
            raise ValueError(
                f"warmup_length is a fraction of training in [0, 1], got {warmup_length}"
            )
        self._scheduler = scheduler
        self._warmup_factor = float(warmup_factor)
        self._warmup_length = float(warmup_length)

    def __call__(self, where: float) -> float:
        value = self._scheduler(where)
        if where < self._warmup_length:
            alpha = where / self._warmup_length
            value *= self._warmup_factor * (1.0 - alpha) + alpha
        return value


class ParamSchedulerLR(torch.optim.lr_scheduler.LRScheduler):
    """Sets every param group's lr to `initial lr x multiplier(iteration / max_iter)`.

    Call `step()` once after each optimizer step (the LRScheduler hook does). Its state holds
    only numbers (the multiplier is rebuilt from the config), so it can be saved in a checkpoint
    loaded with `weights_only=True`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multiplier: ParamScheduler,
        max_iter: int,
        last_iter: int = -1,
    ):
        """
        Args:
            multiplier: progress in [0, 1) -> factor on each group's initial lr.
            max_iter: total iterations; iteration i uses multiplier(i / max_iter).
            last_iter: -1 for a new schedule.
        """
        if max_iter <= 0:
            raise ValueError(f"ParamSchedulerLR: max_iter must be positive, got {max_iter}")
        self._multiplier = multiplier
        self._max_iter = int(max_iter)
        super().__init__(optimizer, last_epoch=last_iter)

    def get_lr(self) -> List[float]:
        # After the last iteration `last_epoch` reaches max_iter; keep the last value there.
        where = min(self.last_epoch, self._max_iter - 1) / self._max_iter
        factor = self._multiplier(where)
        return [base_lr * factor for base_lr in self.base_lrs]

    def state_dict(self) -> dict:
        return {
            "base_lrs": list(self.base_lrs),
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": list(self._last_lr),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self._last_lr = list(state_dict["_last_lr"])
