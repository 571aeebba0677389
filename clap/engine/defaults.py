"""The default training set-up: command line, logging / seeding set-up and DefaultTrainer.

The training scripts use them through `clap.engine.entry_point`: `launch_main` parses
`default_argument_parser`'s command line and starts the processes, `setup_config` builds the
config and calls `default_setup`, `train_or_evaluate` builds `DefaultTrainer(cfg)` (or a
subclass), calls `resume_or_load(args.resume)` and `train()`.
"""

import argparse
import logging
import os
import weakref
from collections import OrderedDict
from typing import Dict, List, Optional

import torch
from torch.nn.parallel import DistributedDataParallel

from clap.checkpoint import ClapCheckpointer
from clap.data.build import build_test_loader, build_train_loader
from clap.engine import hooks
from clap.engine.inference import inference_on_dataset
from clap.engine.train_loop import AMPTrainer, HookBase, SimpleTrainer, TrainerBase
from clap.solver import build_grad_clipper, build_lr_scheduler, build_optimizer
from clap.solver.build import log_param_groups
from clap.utils import comm
from clap.utils.cpu_runtime import configure_cpu_runtime
from clap.utils.env import collect_env_info, seed_all_rng, set_rng_states
from clap.utils.events import ConsoleWriter, EventWriter, JSONWriter, TensorboardWriter
from clap.utils.file_io import PathManager
from clap.utils.logger import setup_logger

__all__ = [
    "DefaultTrainer",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
]

_AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line shared by the training tools (detectron2's flags)."""
    parser = argparse.ArgumentParser(
        epilog=epilog
        or (
            "Examples:\n"
            "  Train on 2 GPUs (or 2 CPU processes without a GPU):\n"
            "    tools/train_net.py --num-gpus 2 --config-file cfg.yaml\n"
            "  Change config keys from the command line:\n"
            "    tools/train_net.py --config-file cfg.yaml SOLVER.BASE_LR 0.001\n"
            "  Evaluate a checkpoint:\n"
            "    tools/train_net.py --config-file cfg.yaml --eval-only MODEL.WEIGHTS model.pth\n"
            "  Multiple machines: run on each machine with its --machine-rank and the same\n"
            "    --num-machines and --dist-url tcp://<address of machine 0>:<port>"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a yaml config")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint named in OUTPUT_DIR/last_checkpoint, if there is one "
        "(model, optimizer, scheduler, hook states, iteration, data position, RNG states); "
        "otherwise start from MODEL.WEIGHTS",
    )
    parser.add_argument("--eval-only", action="store_true", help="evaluate only, no training")
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="processes per machine: one per GPU; on a machine without GPU, CPU processes (gloo)",
    )
    parser.add_argument("--num-machines", type=int, default=1, help="number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="rank of this machine (0 .. num-machines - 1)"
    )
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="rendezvous of the process group, e.g. tcp://127.0.0.1:29500; 'auto' picks a free "
        "local port (single machine only)",
    )
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. SOLVER.MAX_ITER 100 OUTPUT_DIR out",
    )
    return parser


def default_setup(cfg, args) -> None:
    """Prepare a run: OUTPUT_DIR, logging (console on rank 0, OUTPUT_DIR/log.txt[.rank<r>]),
    apply the CPU runtime settings (`CPU.*`, CPU runs only), log the environment, the arguments
    and the config, write OUTPUT_DIR/config.yaml (rank 0), seed every RNG with SEED + rank (a
    negative SEED draws one), and set cuDNN autotuning."""
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if output_dir:
        PathManager.mkdirs(output_dir)
    setup_logger(output_dir or None, distributed_rank=rank, name="fvcore")
    logger = setup_logger(output_dir or None, distributed_rank=rank, name="clap")
    logger.info(f"Rank of this process: {rank}. World size: {comm.get_world_size()}")
    configure_cpu_runtime(cfg)
    logger.info("Environment:\n" + collect_env_info())
    logger.info(f"Command line arguments: {args}")
    config_file = getattr(args, "config_file", "")
    if config_file:
        with PathManager.open(config_file, "r") as f:
            logger.info(f"Contents of {config_file}:\n{f.read()}")
    logger.info(f"Full config:\n{cfg.dump()}")
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        with PathManager.open(path, "w") as f:
            f.write(cfg.dump())
        logger.info(f"Full config saved to {path}")
    seed = seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    logger.info(f"Seeded every RNG of rank {rank} with {seed}")
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK


def default_writers(output_dir: str, max_iter: int) -> List[EventWriter]:
    """Console, OUTPUT_DIR/metrics.json and TensorBoard (event files in OUTPUT_DIR)."""
    PathManager.mkdirs(output_dir)
    return [
        ConsoleWriter(max_iter),
        JSONWriter(os.path.join(output_dir, "metrics.json")),
        TensorboardWriter(output_dir),
    ]


def create_ddp_model(model: torch.nn.Module, find_unused_parameters: bool = False):
    """Wrap the model in DistributedDataParallel when there is more than one process."""
    if comm.get_world_size() == 1:
        return model
    on_gpu = next(model.parameters()).is_cuda
    return DistributedDataParallel(
        model,
        device_ids=[comm.get_local_rank()] if on_gpu else None,
        broadcast_buffers=False,
        find_unused_parameters=find_unused_parameters,
    )


class DefaultTrainer(TrainerBase):
    """The standard training run, built from the config.

    Builds model, optimizer (`build_optimizer`), LR schedule, DDP wrapper, a SimpleTrainer (or
    AMPTrainer with SOLVER.AMP.ENABLED), a ClapCheckpointer on OUTPUT_DIR, and the hooks of
    `build_hooks`. The training loader is built when training starts (`build_train_loader`),
    at the sample position of the first iteration to run.

    Extra hooks from the model: if the (unwrapped) model has a method
    `build_hooks(cfg) -> list[HookBase]`, its hooks are registered after LRScheduler and before
    PeriodicCheckpointer (see `build_model_hooks`), so their state changes of an iteration are
    in that iteration's checkpoint and their state is restored on resume.

    Every `build_*` / `test` classmethod can be overridden in a subclass.
    """

    def __init__(self, cfg):
        super().__init__()
        if not logging.getLogger("clap").handlers:
            setup_logger()
        self.cfg = cfg
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.unwrapped_model = model
        ddp_model = create_ddp_model(model, cfg.DDP_FIND_UNUSED_PARAMETERS)
        grad_clipper = build_grad_clipper(cfg)
        if cfg.SOLVER.AMP.ENABLED:
            if cfg.SOLVER.AMP.DTYPE not in _AMP_DTYPES:
                raise ValueError(
                    f"SOLVER.AMP.DTYPE: unknown '{cfg.SOLVER.AMP.DTYPE}', expected one of "
                    f"{sorted(_AMP_DTYPES)}"
                )
            precision = _AMP_DTYPES[cfg.SOLVER.AMP.DTYPE]
            self._trainer = AMPTrainer(
                ddp_model, None, optimizer, grad_clipper, precision=precision
            )
        else:
            self._trainer = SimpleTrainer(ddp_model, None, optimizer, grad_clipper)
        # One hook list for both: the wrapped trainer calls `after_backward` on the hooks
        # registered here, whose `trainer` is this object.
        self._trainer._hooks = self._hooks
        self.checkpointer = ClapCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self._rng_states_to_restore = None
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ views of the trainer
    @property
    def model(self) -> torch.nn.Module:
        """The model as trained (DDP-wrapped with several processes)."""
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer

    @property
    def grad_scaler(self):
        return self._trainer.grad_scaler

    @property
    def data_loader(self):
        """The training loader, built on first use at the current start iteration."""
        if self._trainer.data_loader is None:
            loader = self.build_train_loader(self.cfg, start_iter=self.start_iter)
            self._trainer.data_loader = loader
        return self._trainer.data_loader

    # ------------------------------------------------------------------ running
    def resume_or_load(self, resume: bool = True) -> None:
        """With `resume` and a checkpoint named in OUTPUT_DIR/last_checkpoint: restore model,
        optimizer, scheduler, hook states, grad scaler, iteration, RNG states and (through the
        start iteration) the data position. Otherwise load only the model weights of
        MODEL.WEIGHTS (if set) and start at iteration 0."""
        logger = logging.getLogger(__name__)
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        self._rng_states_to_restore = None
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1
            rng_states = extra.get("rng_states")
            if rng_states is not None and len(rng_states) == comm.get_world_size():
                self._rng_states_to_restore = rng_states[comm.get_rank()]
            else:
                logger.warning(
                    "The checkpoint has no RNG states for this number of processes; random "
                    "streams (dropout, ray sampling, ...) will differ from an uninterrupted run"
                )
        else:
            self.start_iter = 0
        self._trainer.data_loader = None  # rebuilt at the new start position

    def train(self) -> None:
        """Train from `start_iter` to SOLVER.MAX_ITER."""
        self.data_loader  # noqa: B018 -- built here, at the sample position of start_iter
        if self._rng_states_to_restore is not None:
            set_rng_states(self._rng_states_to_restore)
            self._rng_states_to_restore = None
        super().train(self.start_iter, self.max_iter)

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def state_dict(self) -> dict:
        self._trainer.iter = self.iter
        return self._trainer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self._trainer.load_state_dict(state_dict)
        self.iter = self._trainer.iter

    # ------------------------------------------------------------------ hooks
    def build_model_hooks(self) -> List[HookBase]:
        """Hooks the model asks for: `unwrapped_model.build_hooks(cfg)` when it has one."""
        build = getattr(self.unwrapped_model, "build_hooks", None)
        if build is None:
            return []
        model_hooks = list(build(self.cfg))
        for hook in model_hooks:
            if not isinstance(hook, HookBase):
                raise TypeError(
                    f"{type(self.unwrapped_model).__name__}.build_hooks returned a "
                    f"{type(hook).__name__}, not a HookBase"
                )
        return model_hooks

    def build_hooks(self) -> List[HookBase]:
        """IterationTimer, LRScheduler, the model's hooks, EvalHook (when DATASETS.TEST is set:
        every TEST.EVAL_PERIOD iterations and at the end), PeriodicCheckpointer and
        PeriodicWriter (console, metrics.json, TensorBoard on the main rank; every
        SOLVER.LOG_PERIOD iterations)."""
        cfg = self.cfg
        hook_list: List[HookBase] = [hooks.IterationTimer(), hooks.LRScheduler(self.scheduler)]
        hook_list.extend(self.build_model_hooks())
        # Evaluation before the checkpoint of the same iteration: a run killed between the two
        # resumes from an earlier checkpoint and evaluates again, instead of skipping it.
        if len(cfg.DATASETS.TEST) > 0:
            hook_list.append(
                hooks.EvalHook(cfg.TEST.EVAL_PERIOD, lambda: self.test(self.cfg, self.model))
            )
        hook_list.append(
            hooks.PeriodicCheckpointer(
                self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, max_to_keep=cfg.SOLVER.MAX_TO_KEEP
            )
        )
        writers = self.build_writers() if comm.is_main_process() else []
        hook_list.append(hooks.PeriodicWriter(writers, period=cfg.SOLVER.LOG_PERIOD))
        return hook_list

    def build_writers(self) -> List[EventWriter]:
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    # ------------------------------------------------------------------ builders
    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        # Imported here: model packages may import clap.engine (for their hooks) at import time.
        from clap.modeling import build_model

        model = build_model(cfg)
        logger = logging.getLogger(__name__)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info(f"Model ({trainable} trainable parameters):\n{model}")
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
        optimizer = build_optimizer(cfg, model)
        log_param_groups(optimizer)
        return optimizer

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        return build_train_loader(cfg, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str):
        """The evaluator of a test set (see clap.engine.inference for its interface).

        Data sets named `nuscenes_<version>_<split>` (or `nuscenes_<split>`) get
        `clap.evaluation.build_evaluator(cfg, dataset_name, output_dir)`: a
        NuScenesDetectionEvaluator scoring with nuscenes-devkit's DetectionEval, writing to
        `<OUTPUT_DIR>/inference/<dataset_name>`. Other names raise NotImplementedError, which
        `test` turns into a skipped data set; a trainer subclass may handle them.
        """
        if dataset_name.startswith("nuscenes_"):
            from clap.evaluation import build_evaluator

            output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
            return build_evaluator(cfg, dataset_name, output_dir)
        raise NotImplementedError(
            f"No evaluator for '{dataset_name}': only nuscenes_<version>_<split> data sets are "
            "evaluated; override DefaultTrainer.build_evaluator for others"
        )

    @classmethod
    def test(cls, cfg, model: torch.nn.Module, evaluators: Optional[list] = None) -> Dict:
        """Evaluate the model on every data set of DATASETS.TEST.

        Args:
            evaluators: one per test set; None builds them with `build_evaluator`.
        Returns:
            dataset name -> metrics (nested dicts of numbers) on the main rank.
        """
        logger = logging.getLogger(__name__)
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(
                f"{len(evaluators)} evaluators for {len(cfg.DATASETS.TEST)} data sets in "
                "DATASETS.TEST"
            )
        results = OrderedDict()
        for index, dataset_name in enumerate(cfg.DATASETS.TEST):
            if evaluators is not None:
                evaluator = evaluators[index]
            else:
                try:
                    evaluator = cls.build_evaluator(cfg, dataset_name)
                except NotImplementedError as error:
                    logger.warning(f"Skipping evaluation of '{dataset_name}': {error}")
                    continue
            data_loader = cls.build_test_loader(cfg, dataset_name)
            dataset_results = inference_on_dataset(model, data_loader, evaluator)
            if comm.is_main_process():
                logger.info(f"Evaluation results on '{dataset_name}': {dataset_results}")
            results[dataset_name] = dataset_results or {}
        return results
