#!/usr/bin/env python
"""LiDAR-only or camera-only rendering pre-training (same flags as tools/train_net.py).

    python projects/single_modal/train_net.py \
        --config-file projects/single_modal/configs/synthetic/lidar_only_cpu.yaml
    python projects/single_modal/train_net.py --config-file cfg.yaml --num-gpus 8 OUTPUT_DIR out/run
    python projects/single_modal/train_net.py --config-file cfg.yaml --resume

The model is clap's CLAP meta-architecture with one modality; the data sets of DATASETS.ROOT /
DATASETS.VERSION are registered when the training loader is built.
"""

import os
import sys

# The repository root (for clap) and this project folder (for single_modal), however started.
_PROJECT_ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_PROJECT_ROOT)))
sys.path.insert(0, _PROJECT_ROOT)

from single_modal import add_single_modal_config  # noqa: E402

import clap.modeling  # noqa: E402,F401  (registers clap's components)
from clap.engine import launch_main, setup_config, train_or_evaluate  # noqa: E402


def setup(args):
    """The frozen config: clap's defaults, the project's additions, the file, the overrides."""
    return setup_config(args, add_single_modal_config)


def main(args):
    if args.eval_only:
        raise SystemExit(
            "The single-modal models are pre-training models: there is nothing to evaluate. "
            "Load their encoders into a detector, or merge a LiDAR-only and a camera-only "
            "checkpoint with projects/single_modal/tools/merge_weights.py (see "
            "projects/single_modal/README.md)."
        )
    return train_or_evaluate(setup(args), args)


if __name__ == "__main__":
    launch_main(main)
