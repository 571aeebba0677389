from .build import (
    build_grad_clipper,
    build_lr_multiplier,
    build_lr_scheduler,
    build_optimizer,
    get_default_param_groups,
)
from .lr_scheduler import LinearWarmupParamScheduler, ParamSchedulerLR

__all__ = [
    "LinearWarmupParamScheduler",
    "ParamSchedulerLR",
    "build_grad_clipper",
    "build_lr_multiplier",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_param_groups",
]
