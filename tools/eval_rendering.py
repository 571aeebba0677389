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

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.data.build import build_test_loader  # noqa: E402
from clap.evaluation.checkpoint_tool import (  # noqa: E402
    batches_for_frames,
    checkpoint_argument_parser,
    load_checkpoint_model,
    setup_checkpoint_evaluation,
    write_json,
)
from clap.evaluation.rendering import evaluate_rendering  # noqa: E402


def parse_args(argv=None):
    parser = checkpoint_argument_parser(__doc__)
    parser.add_argument(
        "--rays", type=int, default=None,
        help="LiDAR rays per frame (default: MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS)",
    )
    parser.add_argument(
        "--pixels", type=int, default=None,
        help="pixels per camera (default: MODEL.RAY_SAMPLER.NUM_PIXELS_PER_CAMERA)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg, dataset = setup_checkpoint_evaluation(args)
    sampler_cfg = cfg.MODEL.RAY_SAMPLER
    rays = sampler_cfg.NUM_LIDAR_RAYS if args.rays is None else args.rays
    pixels = sampler_cfg.NUM_PIXELS_PER_CAMERA if args.pixels is None else args.pixels
    model = load_checkpoint_model(cfg, args.weights)
    result = evaluate_rendering(
        model,
        build_test_loader(cfg, dataset),
        num_lidar_rays=rays,
        num_pixels_per_camera=pixels,
        seed=args.seed,
        max_batches=batches_for_frames(cfg, args.max_frames),
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
    write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
