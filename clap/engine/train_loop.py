"""The training loop: a trainer runs iterations, hooks carry the behaviour around them."""

import logging
import math
import time
import weakref
from typing import Callable, Dict, Iterable, List, Optional

import torch

from clap.utils import comm
from clap.utils.events import EventStorage, get_event_storage

__all__ = ["AMPTrainer", "HookBase", "SimpleTrainer", "TrainerBase"]


class HookBase:
    """A hook called by a trainer around training and each iteration.

    Hooks reach the trainer through `self.trainer` (set when registered): `trainer.iter`,
    `trainer.max_iter`, `trainer.model`, `trainer.optimizer`, `trainer.storage` (EventStorage),
    and `trainer.grad_scaler` (None unless AMP with fp16 is on). Hooks change state (parameters,
    statistics, files); they never add to the autograd graph of the loss.

    Call order in an iteration: before_step, (forward, backward), after_backward, (optimizer
    step), after_step. A hook with state to survive a restart returns it from `state_dict` and
    takes it back in `load_state_dict`; the checkpointer saves it under the hook's class name.
    The state must consist of tensors and python primitives (int, float, bool, str, None) in
    dicts, lists and tuples, so that checkpoints load with `torch.load(weights_only=True)`.
    """

    trainer = None

    def before_train(self):
        """Called once before the first iteration."""

    def after_train(self):
        """Called once after the last iteration (also when training stops on an error).

        `trainer.iter == trainer.max_iter` exactly when every iteration ran.
        """

    def before_step(self):
        """Called before each iteration's forward pass."""

    def after_backward(self):
        """Called after the backward pass, before the optimizer step; gradients can be edited.

        With fp16 AMP the gradients are still multiplied by `trainer.grad_scaler.get_scale()`.
        """

    def after_step(self):
        """Called after the optimizer step of each iteration."""

    def state_dict(self) -> dict:
        """State to checkpoint; empty for stateless hooks."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""

    def _bind(self, trainer) -> None:
        self.trainer = weakref.proxy(trainer)


class TrainerBase:
    """Runs `run_step` for iterations [start_iter, max_iter) and calls the hooks around it.

    Attributes:
        iter: the current iteration; after a complete `train` it equals `max_iter`.
        start_iter, max_iter: the range of the last `train` call.
        storage: the EventStorage open during `train`.
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iter: int = 0
        self.start_iter: int = 0
        self.max_iter: int = 0
        self.storage: Optional[EventStorage] = None

    def register_hooks(self, hooks: Iterable[Optional[HookBase]]) -> None:
        """Append hooks (None entries are skipped); they run in the order registered."""
        for hook in hooks:
            if hook is None:
                continue
            if not isinstance(hook, HookBase):
                raise TypeError(f"Expected a HookBase, got {type(hook).__name__}")
            hook._bind(self)
            self._hooks.append(hook)

    @property
    def hooks(self) -> List[HookBase]:
        return list(self._hooks)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations start_iter, ..., max_iter - 1."""
        logger = logging.getLogger(__name__)
        logger.info(f"Starting training from iteration {start_iter}")
        self.iter = self.start_iter = int(start_iter)
        self.max_iter = int(max_iter)
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                # One past the last iteration: in after_train hooks tell a finished run
                # (iter >= max_iter) from one stopped by an error.
                self.iter = max(self.max_iter, self.start_iter)
            except Exception:
                logger.exception(f"Exception during training at iteration {self.iter}:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for hook in self._hooks:
            hook.before_train()

    def after_train(self) -> None:
        # After an error at iteration k only iterations up to k - 1 are complete: writers then
        # leave out what iteration k had put.
        finished = self.iter >= self.max_iter
        self.storage.iter = self.iter if finished else self.iter - 1
        for hook in self._hooks:
            hook.after_train()

    def before_step(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.before_step()

    def after_backward(self) -> None:
        for hook in self._hooks:
            hook.after_backward()

    def after_step(self) -> None:
        for hook in self._hooks:
            hook.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """{"iteration": int, "hooks": {hook class name: hook state}} (stateless hooks left out)."""
        hook_states = {}
        for hook in self._hooks:
            state = hook.state_dict()
            if not state:
                continue
            name = type(hook).__qualname__
            if name in hook_states:
                raise ValueError(
                    f"Two registered hooks of class {name} have state; hook states are keyed by "
                    "class name, so give one of them its own subclass"
                )
            hook_states[name] = state
        return {"iteration": self.iter, "hooks": hook_states}

    def load_state_dict(self, state_dict: dict) -> None:
        logger = logging.getLogger(__name__)
        self.iter = int(state_dict["iteration"])
        hook_states = dict(state_dict.get("hooks", {}))
        for hook in self._hooks:
            name = type(hook).__qualname__
            if name in hook_states:
                hook.load_state_dict(hook_states.pop(name))
        for name in hook_states:
            logger.warning(f"The checkpoint has state for hook {name}, which is not registered")


class SimpleTrainer(TrainerBase):
    """One optimisation step per iteration: load a batch, forward, sum the losses, backward,
    `after_backward` hooks, optional gradient clipping, optimizer step.

    The model's forward takes the batch and returns a dict of scalar tensors; keys starting with
    "loss_" are summed into the loss (other keys are only logged). Every iteration writes each
    term, "total_loss" and "data_time" (seconds waiting for the batch) to the EventStorage, on
    the main rank averaged over ranks. A non-finite loss raises FloatingPointError on every rank
    before the backward pass, so the model is left as it was after the previous iteration.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        grad_clipper: Optional[Callable[[List[torch.nn.Parameter]], Optional[torch.Tensor]]] = None,
    ):
        """
        Args:
            model: a module in training mode (possibly wrapped in DistributedDataParallel).
            data_loader: an iterable of batches; it is iterated once, lazily, at the first step,
                so it may be replaced (`trainer.data_loader = ...`) before training starts.
            optimizer: the optimizer of the model's parameters.
            grad_clipper: `f(parameters) -> total gradient norm or None`, called after the
                `after_backward` hooks on the optimizer's parameters that have a gradient
                (see clap.solver.build_grad_clipper).
        """
        super().__init__()
        model.train()
        self.model = model
        self.data_loader = data_loader
        self._data_loader_iter_obj = None
        self.optimizer = optimizer
        self.grad_clipper = grad_clipper

    @property
    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        return None

    @property
    def _data_loader_iter(self):
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def _next_batch(self):
        start = time.perf_counter()
        batch = next(self._data_loader_iter)
        return batch, time.perf_counter() - start

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError("SimpleTrainer.run_step: the model is in eval mode")
        batch, data_time = self._next_batch()
        loss_dict = self.model(batch)
        losses = self._sum_losses(loss_dict)
        self._write_metrics(loss_dict, data_time)
        self.optimizer.zero_grad(set_to_none=True)
        losses.backward()
        self.after_backward()
        self._clip_gradients()
        self.optimizer.step()

    def _sum_losses(self, loss_dict) -> torch.Tensor:
        if not isinstance(loss_dict, dict):
            raise TypeError(
                f"The model's forward must return a dict of losses in training mode, "
                f"got {type(loss_dict).__name__}"
            )
        loss_terms = [v for k, v in loss_dict.items() if k.startswith("loss_")]
        if not loss_terms:
            raise KeyError(
                f"The model returned no loss (no key starts with 'loss_'): {sorted(loss_dict)}"
            )
        return sum(loss_terms)

    def _trainable_parameters_with_grad(self) -> List[torch.nn.Parameter]:
        groups = self.optimizer.param_groups
        return [p for group in groups for p in group["params"] if p.grad is not None]

    def _clip_gradients(self) -> None:
        if self.grad_clipper is None:
            return
        total_norm = self.grad_clipper(self._trainable_parameters_with_grad())
        if total_norm is not None and comm.is_main_process():
            get_event_storage().put_scalar("grad_norm", total_norm)

    def _write_metrics(self, loss_dict: Dict[str, torch.Tensor], data_time: float) -> None:
        """Check every rank's loss terms for NaN / Inf and log the averages on the main rank."""
        names = sorted(loss_dict)
        values = torch.stack([loss_dict[k].detach().float().reshape(()) for k in names])
        local = dict(zip(names, values.cpu().tolist()))
        local["data_time"] = data_time
        # Every rank gathers every rank's values, so a NaN on one rank stops all of them.
        per_rank = comm.all_gather(local)
        self._check_finite(per_rank)
        if not comm.is_main_process():
            return
        storage = get_event_storage()
        storage.put_scalar("data_time", max(r["data_time"] for r in per_rank))
        averaged = {k: sum(r[k] for r in per_rank) / len(per_rank) for k in names}
        total = sum(v for k, v in averaged.items() if k.startswith("loss_"))
        storage.put_scalar("total_loss", total)
        storage.put_scalars(**averaged)

    def _check_finite(self, per_rank: List[Dict[str, float]]) -> None:
        for rank, metrics in enumerate(per_rank):
            loss_terms = {k: v for k, v in metrics.items() if k.startswith("loss_")}
            total = sum(loss_terms.values())
            if not math.isfinite(total):
                terms = ", ".join(f"{k}={v:.6g}" for k, v in loss_terms.items())
                where = f" on rank {rank}" if len(per_rank) > 1 else ""
                raise FloatingPointError(
                    f"Loss became non-finite at iteration {self.iter}{where}: "
                    f"total_loss={total:.6g}; terms: {terms}"
                )

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.optimizer.load_state_dict(state_dict["optimizer"])


class AMPTrainer(SimpleTrainer):
    """SimpleTrainer with the forward pass under `torch.autocast`.

    bfloat16 needs no loss scaling (and works on CPU). float16 uses a `torch.amp.GradScaler`:
    the loss is scaled before backward, `after_backward` hooks see scaled gradients, gradients
    are unscaled before clipping, and steps with Inf / NaN gradients are skipped.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        grad_clipper=None,
        precision: torch.dtype = torch.bfloat16,
        grad_scaler: Optional[torch.amp.GradScaler] = None,
    ):
        """
        Args:
            precision: torch.bfloat16 or torch.float16 (autocast dtype).
            grad_scaler: the scaler for float16; None builds one for the model's device. Not
                used with bfloat16.
        """
        super().__init__(model, data_loader, optimizer, grad_clipper)
        if precision not in (torch.bfloat16, torch.float16):
            raise ValueError(f"AMPTrainer: precision must be bfloat16 or float16, got {precision}")
        self.precision = precision
        self.device_type = next(model.parameters()).device.type
        if precision == torch.float16 and grad_scaler is None:
            grad_scaler = torch.amp.GradScaler(self.device_type)
        self._grad_scaler = grad_scaler if precision == torch.float16 else None

    @property
    def grad_scaler(self) -> Optional[torch.amp.GradScaler]:
        return self._grad_scaler

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError("AMPTrainer.run_step: the model is in eval mode")
        batch, data_time = self._next_batch()
        with torch.autocast(device_type=self.device_type, dtype=self.precision):
            loss_dict = self.model(batch)
            losses = self._sum_losses(loss_dict)
        self._write_metrics(loss_dict, data_time)
        self.optimizer.zero_grad(set_to_none=True)
        if self._grad_scaler is None:
            losses.backward()
            self.after_backward()
            self._clip_gradients()
            self.optimizer.step()
            return
        self._grad_scaler.scale(losses).backward()
        self.after_backward()
        if self.grad_clipper is not None:
            self._grad_scaler.unscale_(self.optimizer)
            self._clip_gradients()
        self._grad_scaler.step(self.optimizer)
        self._grad_scaler.update()

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self._grad_scaler is not None:
            state["grad_scaler"] = self._grad_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        if self._grad_scaler is not None and "grad_scaler" in state_dict:
            self._grad_scaler.load_state_dict(state_dict["grad_scaler"])
