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
from clap.engine import DefaultTrainer, launch_main, setup_config, train_or_evaluate  # noqa: E402


def setup(args):
    """The frozen config: defaults, then the config file, then the command-line overrides."""
    return setup_config(args)


def main(args, trainer_class=DefaultTrainer):
    """Evaluate (--eval-only) or train; `trainer_class` lets a project pass its DefaultTrainer
    subclass (its own loaders, evaluators, hooks) and reuse this entry point."""
    return train_or_evaluate(setup(args), args, trainer_class)


if __name__ == "__main__":
    launch_main(main)
