#!/usr/bin/env python
"""Generate the synthetic driving data set in the nuScenes layout.

Example:
    python tools/make_synthetic_nuscenes.py --out datasets/synthetic_nuscenes \
        --scenes 10 --samples-per-scene 10 --image-scale 0.25 --sweeps 1 --seed 0

The same arguments always give byte-identical files. See docs/synthetic.md.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from clap.data.synthetic import generate_dataset  # noqa: E402
from clap.data.synthetic.constants import LIDAR_RANGE_NOISE  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="data set root folder")
    parser.add_argument("--scenes", type=int, default=10, help="number of scenes")
    parser.add_argument(
        "--samples-per-scene", type=int, default=10, help="key frames per scene (2 Hz)"
    )
    parser.add_argument(
        "--image-scale", type=float, default=0.25, help="images are (1600 x 900) * scale pixels"
    )
    parser.add_argument(
        "--sweeps",
        type=int,
        default=1,
        help="non-key 20 Hz LiDAR sweeps before each key frame but the first (0-9)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", default="v1.0-mini", choices=["v1.0-mini", "v1.0-trainval"])
    parser.add_argument(
        "--lidar-noise",
        type=float,
        default=LIDAR_RANGE_NOISE,
        help="standard deviation of the LiDAR range noise (m)",
    )
    parser.add_argument(
        "--debug-depth",
        action="store_true",
        help="also write each camera's z-depth map to depth/<CHANNEL>/*.npy",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="scenes generated in parallel (output does not depend on it)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing data set in --out"
    )
    return parser.parse_args(argv)


def _folder_size(root: str) -> int:
    return sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, files in os.walk(root)
        for name in files
    )


def main(argv=None):
    args = parse_args(argv)
    wall, cpu = time.perf_counter(), time.process_time()
    counts = generate_dataset(
        args.out,
        num_scenes=args.scenes,
        samples_per_scene=args.samples_per_scene,
        image_scale=args.image_scale,
        num_sweeps=args.sweeps,
        seed=args.seed,
        version=args.version,
        debug_depth=args.debug_depth,
        progress=True,
        lidar_range_noise=args.lidar_noise,
        overwrite=args.overwrite,
        num_workers=args.workers,
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"Wrote {args.out} ({args.version}): "
        + ", ".join(f"{n} {table}" for table, n in counts.items())
    )
    if args.workers > 1:
        print("(CPU time of this process only; the worker processes are not counted)")
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s, {_folder_size(args.out) / 2**20:.1f} MiB on disk")


if __name__ == "__main__":
    main()
