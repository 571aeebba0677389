"""The training loop: a trainer runs iterations, hooks carry the behaviour around them."""

import weakref


class HookBase:
    """A hook called by a trainer around training and each iteration.

    Hooks reach the trainer through `self.trainer` (set when registered): `trainer.iter`,
    `trainer.max_iter`, `trainer.model`, `trainer.optimizer`, `trainer.storage` (EventStorage),
    and `trainer.grad_scaler` (None unless AMP with fp16 is on). Hooks change state (parameters,
    statistics, files); they never add to the autograd graph of the loss.

    Call order in an iteration: before_step, (forward, backward), after_backward, (optimizer
    step), after_step. A hook with state to survive a restart returns it from `state_dict` and
    takes it back in `load_state_dict`; the checkpointer saves it under the hook's class name.
    """

    trainer = None

    def before_train(self):
        """Called once before the first iteration."""

    def after_train(self):
        """Called once after the last iteration (also when training stops on an error)."""

    def before_step(self):
        """Called before each iteration's forward pass."""

    def after_backward(self):
        """Called after the backward pass, before the optimizer step; gradients can be edited."""

    def after_step(self):
        """Called after the optimizer step of each iteration."""

    def state_dict(self) -> dict:
        """State to checkpoint; empty for stateless hooks."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""

    def _bind(self, trainer) -> None:
        self.trainer = weakref.proxy(trainer)
