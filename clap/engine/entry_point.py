"""The main of the training scripts (tools/train_net.py and the projects' train_net.py).

A script keeps only what is its own (config additions, its trainer, what it refuses):

    def setup(args):
        return setup_config(args, add_my_config)

    def main(args):
        return train_or_evaluate(setup(args), args, MyTrainer)

    if __name__ == "__main__":
        launch_main(main)
"""

from typing import Any, Callable, Optional, Sequence

from clap.checkpoint import ClapCheckpointer
from clap.config import get_cfg

from .defaults import DefaultTrainer, default_argument_parser, default_setup
from .launch import launch

__all__ = ["setup_config", "train_or_evaluate", "launch_main"]


def setup_config(args, *add_config: Callable) -> Any:
    """The frozen config of a run, after `default_setup` (output folder, logging, seeds).

    Order: `get_cfg()`, each `add_config(cfg)` (a project's extra keys), `args.config_file`
    (with its `_BASE_` chain), then the command line's KEY VALUE pairs `args.opts`.
    """
    cfg = get_cfg()
    for add in add_config:
        add(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def train_or_evaluate(cfg, args, trainer_class=DefaultTrainer):
    """With `args.eval_only`: load MODEL.WEIGHTS (or, with `args.resume`, the last checkpoint of
    OUTPUT_DIR) and return `trainer_class.test`'s results (an empty DATASETS.TEST, or no
    evaluator for any of its sets, is an error). Otherwise train (resuming with
    `args.resume`) and return what `train()` returns."""
    if args.eval_only:
        if not cfg.DATASETS.TEST:
            raise ValueError(
                "--eval-only needs data sets to evaluate: DATASETS.TEST is empty in "
                f"{args.config_file or 'the config'}; add e.g. "
                "DATASETS.TEST \"('nuscenes_v1.0-mini_mini_val',)\" to the command line"
            )
        model = trainer_class.build_model(cfg)
        ClapCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = trainer_class.test(cfg, model)
        if not results:
            raise ValueError(
                f"--eval-only evaluated nothing: no evaluator for DATASETS.TEST "
                f"{list(cfg.DATASETS.TEST)} (see the warnings above)"
            )
        return results
    trainer = trainer_class(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def launch_main(main: Callable, *main_args: Any, argv: Optional[Sequence[str]] = None) -> None:
    """Parse the command line (`default_argument_parser`) and run `main(args, *main_args)` in
    every process `launch` starts (`--num-gpus`, `--num-machines`, ...)."""
    args = default_argument_parser().parse_args(argv)
    print("Command line arguments:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args, *main_args),
    )
