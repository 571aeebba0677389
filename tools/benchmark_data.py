#!/usr/bin/env python
"""Samples per second of the data mapper (+ collate) through a DataLoader.

    python tools/benchmark_data.py --root tests/data/nuscenes_frame --split mini_train \
        --num-samples 40 --workers 0,2

By default the real nuScenes frame of the tests (6 x 1600x900 JPEGs, one LiDAR sweep) is
repeated; the training mapper (random augmentation) at the configured INPUT.IMAGE_SIZE is used.
"""

import argparse
import logging
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.config.config import get_cfg  # noqa: E402
from clap.data.benchmark import benchmark_data_loading  # noqa: E402
from clap.data.catalog import DatasetCatalog  # noqa: E402
from clap.data.datasets.nuscenes import dataset_name, register_from_config  # noqa: E402
from clap.data.mapper import build_mapper  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default="", help="yaml config (optional)")
    parser.add_argument("--root", default=os.path.join(_REPO, "tests", "data", "nuscenes_frame"))
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--split", default="all")
    parser.add_argument("--num-samples", type=int, default=40, help="timed samples per run")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument(
        "--workers", default="0,2", help="comma-separated DataLoader worker counts to time"
    )
    parser.add_argument("--test-mapper", action="store_true", help="inference mapper (no aug)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None):
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    torch.set_num_threads(1)
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.DATASETS.ROOT, cfg.DATASETS.VERSION = args.root, args.version
    register_from_config(cfg)
    dataset_dicts = DatasetCatalog.get(dataset_name(args.version, args.split))
    mapper = build_mapper(cfg, is_train=not args.test_mapper)
    mode = "inference" if args.test_mapper else "training"
    print(
        f"{len(dataset_dicts)} distinct samples, image size {tuple(cfg.INPUT.IMAGE_SIZE)}, "
        f"{len(mapper.camera_names(dataset_dicts[0]))} cameras, {mode} mapper"
    )
    print(f"{'workers':>8} {'batch':>6} {'samples':>8} {'seconds':>8} {'samples/s':>10}")
    for num_workers in (int(v) for v in args.workers.split(",")):
        result = benchmark_data_loading(
            dataset_dicts, mapper, num_workers, args.num_samples, args.batch_size
        )
        print(
            f"{num_workers:>8d} {args.batch_size:>6d} {result['num_samples']:>8d} "
            f"{result['seconds']:>8.2f} {result['samples_per_second']:>10.2f}"
        )


if __name__ == "__main__":
    main()
