#!/usr/bin/env python
"""Pre-train clap's LiDAR and image encoders with SimIPU (same flags as tools/train_net.py).

    python projects/simipu/train_net.py \
        --config-file projects/simipu/configs/synthetic/simipu_cpu.yaml
    python projects/simipu/train_net.py --config-file cfg.yaml --num-gpus 8 OUTPUT_DIR out/run1
    python projects/simipu/train_net.py --config-file cfg.yaml --resume

The data sets of DATASETS.ROOT / DATASETS.VERSION are registered when the training loader is
built.
"""

import os
import sys

# The repository root (for clap) and this project folder (for simipu), however it is started.
_PROJECT_ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_PROJECT_ROOT)))
sys.path.insert(0, _PROJECT_ROOT)

from simipu import add_simipu_config, build_split_optimizer  # noqa: E402  (registers SimIPU)

import clap.modeling  # noqa: E402,F401  (registers clap's components)
from clap.engine import DefaultTrainer, launch_main, setup_config, train_or_evaluate  # noqa: E402
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
    return setup_config(args, add_simipu_config)


def main(args):
    if args.eval_only:
        raise SystemExit("SimIPU is a pre-training model: there is nothing to evaluate. Load its "
                         "encoders into a detector (see projects/simipu/README.md).")
    return train_or_evaluate(setup(args), args, SimIPUTrainer)


if __name__ == "__main__":
    launch_main(main)
