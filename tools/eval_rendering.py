#!/usr/bin/env python
"""Held-out rendering error of a CLAP pre-training checkpoint on uniformly drawn rays of a test
set: the same rays for every checkpoint at the same --seed (docs/rendering.md, "Held-out
rendering").

    python tools/eval_rendering.py --config-file configs/synthetic/clap_cpu.yaml \
        --weights output/synthetic/clap_cpu/model_final.pth \
        --dataset nuscenes_v1.0-mini_mini_val --max-frames 20 --json out.json

Prints one line with the range L1 (meters), the RGB L1 and what they were averaged over, and
writes them as JSON with --json.
"""

import argparse
import json
import logging
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.checkpoint import ClapCheckpointer  # noqa: E402
from clap.config import get_cfg  # noqa: E402
from clap.data.build import build_test_loader  # noqa: E402
from clap.evaluation.rendering import evaluate_rendering  # noqa: E402
from clap.modeling import build_model  # noqa: E402
from clap.utils.cpu_runtime import configure_cpu_runtime  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="yaml config")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint to load")
    parser.add_argument(
        "--dataset", default="", help="registered data set (default: DATASETS.TEST[0])"
    )
    parser.add_argument(
        "--rays", type=int, default=None,
        help="LiDAR rays per frame (default: MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS)",
    )
    parser.add_argument(
        "--pixels", type=int, default=None,
        help="pixels per camera (default: MODEL.RAY_SAMPLER.NUM_PIXELS_PER_CAMERA)",
    )
    parser.add_argument(
        "--max-frames", type=int, default=0,
        help="only the first N frames, in whole batches of TEST.BATCH_SIZE (0: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="picks the rays")
    parser.add_argument("--json", default="", metavar="OUT", help="write the result here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts or []))
    cfg.freeze()
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
    if not dataset:
        raise ValueError(f"{args.config_file} has no DATASETS.TEST: name a data set with --dataset")
    configure_cpu_runtime(cfg)
    sampler_cfg = cfg.MODEL.RAY_SAMPLER
    rays = sampler_cfg.NUM_LIDAR_RAYS if args.rays is None else args.rays
    pixels = sampler_cfg.NUM_PIXELS_PER_CAMERA if args.pixels is None else args.pixels
    model = build_model(cfg)
    ClapCheckpointer(model).load(args.weights, checkpointables=[])
    result = evaluate_rendering(
        model,
        build_test_loader(cfg, dataset),
        num_lidar_rays=rays,
        num_pixels_per_camera=pixels,
        seed=args.seed,
        max_batches=math.ceil(args.max_frames / cfg.TEST.BATCH_SIZE),
    )
    print(
        f"{dataset}, {result['num_frames']} frames: range L1 {result['range_l1_m']:.4f} m over "
        f"{result['num_lidar_rays']} LiDAR rays, RGB L1 {result['rgb_l1']:.4f} over "
        f"{result['num_pixels']} pixels"
    )
    result.update(
        config_file=args.config_file, weights=args.weights, dataset=dataset, opts=args.opts,
        rays_per_frame=rays, pixels_per_camera=pixels, seed=args.seed,
    )
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
