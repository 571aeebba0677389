#!/usr/bin/env python
"""Probe a pre-training: frozen LiDAR and image backbones, the rest of a detector trained on
their cached features (same flags as tools/train_net.py).

    python projects/probe/train_net.py --config-file configs/synthetic/detection_cpu.yaml \
        MODEL.PRETRAINED_ENCODERS output/clap/model_final.pth \
        PROBE.CACHE_DIR output/probe_cache/clap OUTPUT_DIR output/probe/clap

Without MODEL.PRETRAINED_ENCODERS the backbones are frozen at their random initialisation
(PROBE.ENCODER_SEED). The features of DATASETS.TRAIN (after DATASETS.TRAIN_FRACTION) and
DATASETS.TEST are computed once into PROBE.CACHE_DIR; later runs with the same backbones
(other seeds, fractions or iterations) reuse them. See projects/probe/README.md.
"""

import os
import sys

# The repository root (for clap) and this project folder (for probe), however started.
_PROJECT_ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_PROJECT_ROOT)))
sys.path.insert(0, _PROJECT_ROOT)

from probe import ProbeTrainer, add_probe_config  # noqa: E402

import clap.modeling  # noqa: E402,F401  (registers clap's components)
from clap.engine import launch_main, setup_config  # noqa: E402


def setup(args):
    """The frozen config: clap's defaults, the probe's keys, the file, the overrides."""
    return setup_config(args, add_probe_config)


def main(args):
    cfg = setup(args)
    if cfg.MODEL.META_ARCHITECTURE != "DetectionModel":
        raise SystemExit(f"The probe trains a DetectionModel; {args.config_file} builds "
                         f"{cfg.MODEL.META_ARCHITECTURE}")
    trainer = ProbeTrainer(cfg)
    if args.eval_only:
        trainer.resume_or_load(resume=True)
        return ProbeTrainer.test(cfg, trainer.model)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    launch_main(main)
