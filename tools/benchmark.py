#!/usr/bin/env python
"""Time a training step by component, the render head against the number of rays, ray samplers
side by side at one budget, or the trilinear sampler against grid_sample.

    python tools/benchmark.py --config-file configs/synthetic/clap_cpu.yaml --iters 5 \
        --warmup 2 --json out.json DATASETS.ROOT tests/data/nuscenes_frame
    python tools/benchmark.py --config-file configs/synthetic/clap_cpu.yaml --compare-uniform ...
    python tools/benchmark.py --config-file configs/synthetic/clap_cpu.yaml --baseline \
        --compare-uniform DATASETS.ROOT tests/data/nuscenes_frame
    python tools/benchmark.py --config-file configs/synthetic/clap_cpu.yaml --trilinear
    python tools/benchmark.py --config-file configs/nuscenes/clap.yaml --ray-scaling \
        MODEL.DEVICE cpu DATASETS.ROOT tests/data/nuscenes_frame DATASETS.VERSION v1.0-mini \
        DATASETS.TRAIN "('nuscenes_v1.0-mini_mini_train',)"
    python tools/benchmark.py --config-file configs/nuscenes/clap.yaml \
        --samplers Curvature,DepthAware MODEL.DEVICE cpu DATASETS.ROOT ...

Prints a table (medians in milliseconds) and writes the full result as JSON with --json. See
docs/performance.md for what each number means.
"""

import argparse
import json
import logging
import os
import shlex
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import clap.modeling  # noqa: E402,F401  (registers every model component)
from clap.benchmark import (  # noqa: E402
    benchmark_ray_samplers,
    benchmark_ray_scaling,
    benchmark_training,
    benchmark_trilinear,
    format_ray_samplers_table,
    format_ray_scaling_table,
    format_training_table,
    format_trilinear_table,
)
from clap.config import get_cfg  # noqa: E402
from clap.utils.cpu_runtime import configure_cpu_runtime  # noqa: E402
from clap.utils.env import seed_all_rng  # noqa: E402

# The reference settings of --baseline: float32 encoders (MODEL.CPU_AUTOCAST_DTYPE off).
BASELINE_OPTS = "MODEL.CPU_AUTOCAST_DTYPE ''"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="yaml config")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (torch.set_num_threads), overriding CPU.NUM_THREADS; 0 keeps "
        "the config's",
    )
    parser.add_argument("--json", default="", metavar="OUT", help="write the result here")
    parser.add_argument(
        "--compare-uniform",
        action="store_true",
        help="alternate curvature and uniform sampling step by step (use_uniform switch) and "
        "report the cost of curvature sampling",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also build the model with --baseline-opts on top of the config and alternate its "
        "steps with the config's (same process, same seed): the speed-up of the new settings",
    )
    parser.add_argument(
        "--baseline-opts",
        default=BASELINE_OPTS,
        metavar="'KEY VALUE ...'",
        help=f"overrides of the baseline (default: {BASELINE_OPTS!r}, the float32 encoders)",
    )
    parser.add_argument(
        "--data-samples",
        type=int,
        default=0,
        help="also time the data loader alone on this many samples (clap.data.benchmark)",
    )
    parser.add_argument(
        "--ray-scaling",
        action="store_true",
        help="time the render head alone against the number of LiDAR rays instead",
    )
    parser.add_argument(
        "--rays",
        default="1024,2048,4096,8192,16384,32768",
        help="comma-separated LiDAR ray counts of --ray-scaling",
    )
    parser.add_argument(
        "--no-all-points",
        action="store_true",
        help="--ray-scaling without the row rendering every candidate point",
    )
    parser.add_argument(
        "--samplers",
        default="",
        help="comma-separated RAY_SAMPLER names: time choosing and rendering the config's ray "
        "budget with each instead (e.g. Curvature,DepthAware)",
    )
    parser.add_argument(
        "--trilinear",
        action="store_true",
        help="time the trilinear sampler against grid_sample on the config's render volume "
        "(B = 1, the field's channels) at --points points instead",
    )
    parser.add_argument(
        "--points",
        type=int,
        default=0,
        help="points of --trilinear (default: NUM_LIDAR_RAYS x samples per ray)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def setup(args, extra_opts=()):
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts or []) + list(extra_opts))
    cfg.freeze()
    return cfg


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    cfg = setup(args)
    configure_cpu_runtime(cfg)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else None)
    if args.trilinear:
        from clap.layers import VolumeGrid

        head = cfg.MODEL.RENDER_HEAD
        channels = head.FIELD_CONV_CHANNELS or cfg.MODEL.FUSION.OUT_CHANNELS
        samples = head.NUM_UNIFORM_SAMPLES + head.NUM_IMPORTANCE_SAMPLES
        result = benchmark_trilinear(
            (1, channels) + tuple(VolumeGrid.from_config(cfg).volume_shape),
            args.points or cfg.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS * samples,
            num_iterations=args.iters,
            device=cfg.MODEL.DEVICE,
        )
        print(format_trilinear_table(result))
    elif args.samplers:
        result = benchmark_ray_samplers(
            cfg, [name for name in args.samplers.split(",") if name], num_iterations=args.iters
        )
        print(format_ray_samplers_table(result))
    elif args.ray_scaling:
        result = benchmark_ray_scaling(
            cfg,
            [int(n) for n in args.rays.split(",") if n],
            num_iterations=args.iters,
            all_points=not args.no_all_points,
        )
        print(format_ray_scaling_table(result))
    else:
        result = benchmark_training(
            cfg,
            num_iterations=args.iters,
            num_warmup=args.warmup,
            compare_uniform=args.compare_uniform,
            data_loader_samples=args.data_samples,
            baseline_cfg=setup(args, shlex.split(args.baseline_opts)) if args.baseline else None,
        )
        print(format_training_table(result))
    result["command"] = {"config_file": args.config_file, "opts": list(args.opts or [])}
    if args.baseline:
        result["command"]["baseline_opts"] = shlex.split(args.baseline_opts)
    if args.json:
        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
