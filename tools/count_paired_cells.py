#!/usr/bin/env python
"""Count, per training frame, the volume cells that CLAP's prototype head pairs under a config's
masking: cells holding a kept LiDAR voxel and seen by a camera at an unmasked pixel
(docs/prototypes.md, "Which cells are paired").

    python tools/count_paired_cells.py --config-file configs/synthetic/clap_cpu.yaml --frames 5
    python tools/count_paired_cells.py --config-file configs/nuscenes/clap.yaml --frames 3 \
        MODEL.DEVICE cpu DATASETS.ROOT tests/data/nuscenes_frame DATASETS.VERSION v1.0-mini \
        DATASETS.TRAIN "('nuscenes_v1.0-mini_mini_train',)"

Frames come from the training loader (augmentation and masking as in training, torch seed
`--seed`), the encoders at their initialisation: which cells are paired depends on the inputs and
the masks, not on the weights. Prints one line per frame and the mean.
"""

import argparse
import os
import sys
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.config import get_cfg  # noqa: E402
from clap.data import build_train_loader  # noqa: E402
from clap.modeling import build_model  # noqa: E402

COUNTS = ("paired", "lidar_observed", "camera_observed")


def count_paired_cells(cfg, num_frames: int, seed: int = 0) -> List[Dict[str, int]]:
    """Per frame: "paired", "lidar_observed", "camera_observed" and "cells" (the volume's cells)
    for the first `num_frames` training frames of `cfg` (a CLAP config with both modalities)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.SOLVER.IMS_PER_BATCH = 1
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.freeze()
    torch.manual_seed(seed)
    model = build_model(cfg).train()
    if getattr(model, "prototype_head", None) is None:
        raise ValueError(f"MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} with "
                         f"MODALITIES {list(cfg.MODEL.MODALITIES)} pairs no cells: the prototype "
                         "head needs both the LiDAR and the camera encoder")
    frames = []
    loader = iter(build_train_loader(cfg))
    for _ in range(num_frames):
        with torch.no_grad():
            volumes = model.encode(next(loader))
        observed = {k: volumes[k] for k in COUNTS[1:]}
        paired = observed["lidar_observed"] & observed["camera_observed"]
        frame = {"paired": int(paired.sum())}
        frame.update({k: int(v.sum()) for k, v in observed.items()})
        frame["cells"] = paired.numel()
        frames.append(frame)
    return frames


def main(argv=None) -> List[Dict[str, int]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    frames = count_paired_cells(cfg, args.frames, args.seed)
    for index, frame in enumerate(frames):
        print(f"frame {index}: " + ", ".join(f"{k} {v}" for k, v in frame.items()))
    mean = {k: sum(f[k] for f in frames) / len(frames) for k in COUNTS}
    print("mean: " + ", ".join(f"{k} {v:.1f}" for k, v in mean.items()))
    return frames


if __name__ == "__main__":
    main()
