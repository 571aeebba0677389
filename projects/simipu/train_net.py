#!/usr/bin/env python
"""Pre-train clap's LiDAR and image encoders with SimIPU (same flags as tools/train_net.py).

    python projects/simipu/train_net.py \
        --config-file projects/simipu/configs/synthetic/simipu_cpu.yaml
    python projects/simipu/train_net.py --config-file cfg.yaml --num-gpus 8 OUTPUT_DIR out/run1
    python projects/simipu/train_net.py --config-file cfg.yaml --resume

The data sets of DATASETS.ROOT / DATASETS.VERSION are registered before training.
"""

import os
import sys

# The repository root (for clap) and this project folder (for simipu), however it is started.
_PROJECT_ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_PROJECT_ROOT)))
sys.path.insert(0, _PROJECT_ROOT)

from simipu import add_simipu_config, build_split_optimizer  # noqa: E402  (registers SimIPU)

import clap.modeling  # noqa: E402,F401  (registers clap's components)
from clap.config import get_cfg  # noqa: E402
from clap.data.datasets import register_from_config  # noqa: E402
from clap.engine import DefaultTrainer, default_argument_parser, default_setup, launch  # noqa: E402
from clap.solver.build import log_param_groups  # noqa: E402


class SimIPUTrainer(DefaultTrainer):
    """DefaultTrainer with SimIPU's optional AdamW / SGD split (MODEL.SIMIPU.OPTIMIZER_SPLIT)."""

    @classmethod
    def build_optimizer(cls, cfg, model):
        if not cfg.MODEL.SIMIPU.OPTIMIZER_SPLIT:
            return super().build_optimizer(cfg, model)
        optimizer = build_split_optimizer(cfg, model)
        log_param_groups(optimizer)
        return optimizer


def setup(args):
    """The frozen config: clap's defaults plus MODEL.SIMIPU, the file, the overrides."""
    cfg = get_cfg()
    add_simipu_config(cfg)
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    register_from_config(cfg)
    if args.eval_only:
        raise SystemExit("SimIPU is a pre-training model: there is nothing to evaluate. Load its "
                         "encoders into a detector (see projects/simipu/README.md).")
    trainer = SimIPUTrainer(cfg)
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
