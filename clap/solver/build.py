"""Optimizer, learning-rate schedule and gradient clipping built from the SOLVER config."""

import logging
from typing import Callable, Dict, List, Optional

import torch
from fvcore.common.param_scheduler import (
    ConstantParamScheduler,
    CosineParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
)

from .lr_scheduler import LinearWarmupParamScheduler, ParamSchedulerLR

__all__ = [
    "build_grad_clipper",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_param_groups",
    "NORM_MODULE_TYPES",
]

# Modules whose parameters are normalisation scales / shifts (no weight decay by default).
NORM_MODULE_TYPES = (
    torch.nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm*
    torch.nn.GroupNorm,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
    torch.nn.RMSNorm,
)


def get_default_param_groups(
    model: torch.nn.Module,
    weight_decay: float,
    weight_decay_norm: float,
    weight_decay_bias: float,
) -> List[Dict]:
    """Split the trainable parameters into optimizer param groups by weight decay.

    Parameters of normalisation layers (NORM_MODULE_TYPES) get `weight_decay_norm`, other
    parameters named "bias" get `weight_decay_bias`, the rest `weight_decay`. A parameter shared
    by several modules appears once; frozen parameters (requires_grad=False) are left out.

    Returns:
        list of {"params": [...], "weight_decay": float, "param_names": [...]}, one per distinct
        weight decay, in a deterministic order (so optimizer states line up across runs).
    """
    seen = set()
    groups: Dict[float, Dict] = {}
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            if isinstance(module, NORM_MODULE_TYPES):
                decay = weight_decay_norm
            elif param_name == "bias":
                decay = weight_decay_bias
            else:
                decay = weight_decay
            group = groups.setdefault(
                float(decay), {"params": [], "weight_decay": float(decay), "param_names": []}
            )
            group["params"].append(param)
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            group["param_names"].append(full_name)
    return list(groups.values())


def _fused_kernel_available(groups: List[dict]) -> Optional[bool]:
    """True when every parameter is a floating CPU or CUDA tensor (torch's fused optimizer
    kernels), else None (torch's default implementation)."""
    params = [p for group in groups for p in group["params"]]
    supported = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return True if supported else None


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by `SOLVER.OPTIMIZER` ("AdamW" or "SGD") over the model's trainable
    parameters, with no weight decay on normalisation and bias parameters by default
    (`SOLVER.WEIGHT_DECAY_NORM`, `SOLVER.WEIGHT_DECAY_BIAS`)."""
    solver = cfg.SOLVER
    groups = get_default_param_groups(
        model, solver.WEIGHT_DECAY, solver.WEIGHT_DECAY_NORM, solver.WEIGHT_DECAY_BIAS
    )
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to optimise")
    name = solver.OPTIMIZER
    # One fused kernel over all parameters instead of a loop of per-tensor ops (on CPU, the
    # clap_cpu model's AdamW step: 31 -> 10 ms; docs/performance.md).
    fused = _fused_kernel_available(groups)
    if name == "AdamW":
        return torch.optim.AdamW(
            groups, lr=solver.BASE_LR, betas=tuple(solver.BETAS), eps=solver.EPS, fused=fused
        )
    if name == "SGD":
        return torch.optim.SGD(
            groups, lr=solver.BASE_LR, momentum=solver.MOMENTUM, nesterov=solver.NESTEROV,
            fused=fused,
        )
    raise ValueError(f"SOLVER.OPTIMIZER: unknown optimizer '{name}', expected 'AdamW' or 'SGD'")


def build_lr_multiplier(cfg) -> ParamScheduler:
    """The schedule's factor on BASE_LR as a function of progress in [0, 1).

    `SOLVER.LR_SCHEDULER_NAME`: "cosine" (from 1 down to BASE_LR_END / BASE_LR),
    "multistep" (times GAMMA at each of SOLVER.STEPS) or "constant"; then a linear warm-up from
    WARMUP_FACTOR over WARMUP_ITERS iterations.
    """
    solver = cfg.SOLVER
    name = solver.LR_SCHEDULER_NAME
    max_iter = solver.MAX_ITER
    if name == "cosine":
        end_factor = solver.BASE_LR_END / solver.BASE_LR if solver.BASE_LR > 0 else 0.0
        schedule = CosineParamScheduler(1.0, end_factor)
    elif name == "multistep":
        steps = [int(s) for s in solver.STEPS]
        if any(s <= 0 or s >= max_iter for s in steps) or steps != sorted(set(steps)):
            raise ValueError(
                f"SOLVER.STEPS must be increasing iterations in (0, SOLVER.MAX_ITER={max_iter}), "
                f"got {list(solver.STEPS)}"
            )
        schedule = MultiStepParamScheduler(
            values=[solver.GAMMA**k for k in range(len(steps) + 1)],
            milestones=steps,
            num_updates=max_iter,
        )
    elif name == "constant":
        schedule = ConstantParamScheduler(1.0)
    else:
        raise ValueError(
            f"SOLVER.LR_SCHEDULER_NAME: unknown schedule '{name}', "
            "expected 'cosine', 'multistep' or 'constant'"
        )
    if solver.WARMUP_ITERS > 0:
        warmup_length = min(solver.WARMUP_ITERS / max_iter, 1.0)
        schedule = LinearWarmupParamScheduler(schedule, solver.WARMUP_FACTOR, warmup_length)
    return schedule


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> ParamSchedulerLR:
    """A per-iteration LR scheduler following `build_lr_multiplier(cfg)` over SOLVER.MAX_ITER."""
    return ParamSchedulerLR(optimizer, build_lr_multiplier(cfg), cfg.SOLVER.MAX_ITER)


def build_grad_clipper(
    cfg,
) -> Optional[Callable[[List[torch.nn.Parameter]], Optional[torch.Tensor]]]:
    """`f(parameters)` clipping their gradients as `SOLVER.CLIP_GRADIENTS` says, or None.

    CLIP_TYPE "norm": rescale so the total NORM_TYPE-norm is at most CLIP_VALUE; f returns the
    total norm before clipping. CLIP_TYPE "value": clamp each entry to [-CLIP_VALUE, CLIP_VALUE];
    f returns None.
    """
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return None
    if clip.CLIP_TYPE == "norm":

        def clip_norm(parameters):
            return torch.nn.utils.clip_grad_norm_(parameters, clip.CLIP_VALUE, clip.NORM_TYPE)

        return clip_norm
    if clip.CLIP_TYPE == "value":

        def clip_value(parameters):
            torch.nn.utils.clip_grad_value_(parameters, clip.CLIP_VALUE)
            return None

        return clip_value
    raise ValueError(
        f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE: unknown '{clip.CLIP_TYPE}', expected 'norm' or 'value'"
    )


def log_param_groups(optimizer: torch.optim.Optimizer) -> None:
    """Log how many parameters each group holds and its weight decay."""
    logger = logging.getLogger(__name__)
    for index, group in enumerate(optimizer.param_groups):
        count = sum(p.numel() for p in group["params"])
        logger.info(
            f"Param group {index}: {len(group['params'])} tensors, {count} values, "
            f"lr {group['lr']:.3g}, weight decay {group['weight_decay']:.3g}"
        )
