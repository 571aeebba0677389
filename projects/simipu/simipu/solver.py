"""SimIPU's original optimiser split: AdamW for the LiDAR encoder, SGD for the rest."""

import math
from typing import Dict, Iterable, List

import torch
from torch import nn

from clap.solver import get_default_param_groups

__all__ = ["AdamWSGD", "build_split_optimizer"]

_ALGORITHMS = ("adamw", "sgd")


class AdamWSGD(torch.optim.Optimizer):
    """One optimizer whose param groups each follow AdamW or SGD (the group's "algorithm").

    Being a single `torch.optim.Optimizer`, it works unchanged with the trainer, the LR
    scheduler (every group's lr follows the schedule from its own initial lr), gradient
    clipping, AMP and checkpoints. Updates equal those of `torch.optim.AdamW` (decoupled weight
    decay, bias-corrected moments) and `torch.optim.SGD` (L2 weight decay, momentum buffer
    started at the first gradient, no dampening, optional Nesterov).

    Group keys: "algorithm" ("adamw" or "sgd"), "lr", "weight_decay"; AdamW: "betas", "eps";
    SGD: "momentum", "nesterov". Missing keys take the constructor's defaults.
    """

    def __init__(
        self, params: Iterable, lr: float = 1e-3, weight_decay: float = 0.0,
        algorithm: str = "sgd", betas=(0.9, 0.999), eps: float = 1e-8, momentum: float = 0.0,
        nesterov: bool = False,
    ):
        defaults = dict(lr=lr, weight_decay=weight_decay, algorithm=algorithm,
                        betas=tuple(betas), eps=eps, momentum=momentum, nesterov=nesterov)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["algorithm"] not in _ALGORITHMS:
                raise ValueError(f"AdamWSGD: param group algorithm must be one of {_ALGORITHMS}, "
                                 f"got {group['algorithm']!r}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            update = self._adamw if group["algorithm"] == "adamw" else self._sgd
            for param in group["params"]:
                if param.grad is not None:
                    update(param, group)
        return loss

    def _adamw(self, param: torch.Tensor, group: Dict) -> None:
        grad = param.grad
        state = self.state[param]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        lr = group["lr"]
        state["step"] += 1
        step = float(state["step"])
        param.mul_(1.0 - lr * group["weight_decay"])
        state["exp_avg"].lerp_(grad, 1.0 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        bias_correction1 = 1.0 - beta1**step
        bias_correction2 = 1.0 - beta2**step
        denom = (state["exp_avg_sq"].sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
        param.addcdiv_(state["exp_avg"], denom, value=-lr / bias_correction1)

    def _sgd(self, param: torch.Tensor, group: Dict) -> None:
        grad = param.grad
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            state = self.state[param]
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.clone().detach()
            else:
                buffer.mul_(momentum).add_(grad)
            grad = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
        param.add_(grad, alpha=-group["lr"])


def build_split_optimizer(cfg, model: nn.Module) -> AdamWSGD:
    """AdamW groups for `model.lidar_backbone`, SGD groups for every other trainable parameter.

    AdamW: MODEL.SIMIPU.POINT_LR, POINT_WEIGHT_DECAY, SOLVER.BETAS, SOLVER.EPS. SGD:
    MODEL.SIMIPU.IMAGE_LR, IMAGE_MOMENTUM, IMAGE_WEIGHT_DECAY, SOLVER.NESTEROV. Normalisation
    and bias parameters take SOLVER.WEIGHT_DECAY_NORM / WEIGHT_DECAY_BIAS in both (clap's
    `get_default_param_groups`).
    """
    c, solver = cfg.MODEL.SIMIPU, cfg.SOLVER
    point_groups = get_default_param_groups(
        model.lidar_backbone, c.POINT_WEIGHT_DECAY, solver.WEIGHT_DECAY_NORM,
        solver.WEIGHT_DECAY_BIAS,
    )
    point_params = {id(p) for group in point_groups for p in group["params"]}
    other_groups: List[Dict] = []
    for group in get_default_param_groups(
        model, c.IMAGE_WEIGHT_DECAY, solver.WEIGHT_DECAY_NORM, solver.WEIGHT_DECAY_BIAS
    ):
        kept = [(p, n) for p, n in zip(group["params"], group["param_names"])
                if id(p) not in point_params]
        if kept:
            params, names = zip(*kept)
            other_groups.append(dict(group, params=list(params), param_names=list(names)))
    for group in point_groups:
        group["param_names"] = ["lidar_backbone." + name for name in group["param_names"]]
        group.update(algorithm="adamw", lr=c.POINT_LR, betas=tuple(solver.BETAS), eps=solver.EPS)
    for group in other_groups:
        group.update(algorithm="sgd", lr=c.IMAGE_LR, momentum=c.IMAGE_MOMENTUM,
                     nesterov=solver.NESTEROV)
    groups = point_groups + other_groups
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to optimise")
    return AdamWSGD(groups)
