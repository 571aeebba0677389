#!/usr/bin/env python
"""Train (or, with --eval-only, evaluate) a model described by a config file.

    python tools/train_net.py --config-file configs/synthetic/clap_cpu.yaml
    python tools/train_net.py --config-file cfg.yaml --num-gpus 2 OUTPUT_DIR output/run1
    python tools/train_net.py --config-file cfg.yaml --resume          # continue a run
    python tools/train_net.py --config-file cfg.yaml --eval-only MODEL.WEIGHTS model.pth

See `python tools/train_net.py --help` for every flag.
"""

import os
import sys

# Running the file directly puts tools/ on the path, not the project root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import clap.modeling  # noqa: E402,F401  (registers every model component)
from clap.checkpoint import ClapCheckpointer  # noqa: E402
from clap.config import get_cfg  # noqa: E402
from clap.engine import DefaultTrainer, default_argument_parser, default_setup, launch  # noqa: E402


def setup(args):
    """The frozen config: defaults, then the config file, then the command-line overrides."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args, trainer_class=DefaultTrainer):
    """Evaluate (--eval-only) or train; `trainer_class` lets a project pass its DefaultTrainer
    subclass (its own loaders, evaluators, hooks) and reuse this entry point."""
    cfg = setup(args)
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


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    print("Command line arguments:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
