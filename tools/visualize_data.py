#!/usr/bin/env python
"""Draw what a model sees after the data mapper: LiDAR points over every camera image, and a
bird's-eye view with the ground-truth boxes, as PNG files.

    python tools/visualize_data.py --root tests/data/nuscenes_frame --split mini_train \
        --num-samples 1 --output output/vis
    python tools/visualize_data.py --config-file configs/x.yaml --train --output output/vis \
        INPUT.IMAGE_SIZE "(256, 704)"

Per sample `<index>_<token>_cameras.png` (camera grid with points coloured by depth),
`<index>_<token>_bev.png` and `<index>_<token>_overview.png` (both side by side) are written.
"""

import argparse
import logging
import os
import sys

import cv2
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.config.config import get_cfg  # noqa: E402
from clap.data.box_ops import box_corners  # noqa: E402
from clap.data.catalog import DatasetCatalog  # noqa: E402
from clap.data.datasets.nuscenes import dataset_name, register_from_config  # noqa: E402
from clap.data.mapper import build_mapper  # noqa: E402
from clap.utils.visualizer import (  # noqa: E402
    CLASS_COLORS,
    draw_bev,
    draw_points_on_image,
    ego_forward_angle,
    image_grid,
    label_image,
    save_image,
)

# Grid places of the six nuScenes cameras: front row left to right, then the back row as seen
# from behind the car.
_CAMERA_LAYOUT = (
    "CAM_FRONT_LEFT",
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_BACK_RIGHT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default="", help="yaml config (optional)")
    parser.add_argument("--root", default="", help="nuScenes-format root (DATASETS.ROOT)")
    parser.add_argument("--version", default="", help="version folder (DATASETS.VERSION)")
    parser.add_argument(
        "--split", default="", help="split to show (default: the first DATASETS.TRAIN set)"
    )
    parser.add_argument("--num-samples", type=int, default=4, help="samples to draw")
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("--train", action="store_true", help="apply the training augmentation")
    parser.add_argument("--seed", type=int, default=0, help="seed of the augmentation")
    parser.add_argument("--bev-pixels-per-meter", type=float, default=8.0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser.parse_args(argv)


def setup_config(args):
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.root:
        cfg.DATASETS.ROOT = args.root
    if args.version:
        cfg.DATASETS.VERSION = args.version
    cfg.freeze()
    return cfg


def render_sample(sample: dict, camera_names, point_cloud_range, pixels_per_meter: float):
    """Camera grid, BEV and overview images (RGB uint8) of one mapped sample."""
    points = sample["points"].numpy()
    drawn = {}
    for index, name in enumerate(camera_names):
        image = sample["images"][index].numpy().transpose(1, 2, 0)
        image = draw_points_on_image(image, points, sample["lidar2img"][index].numpy())
        drawn[name] = label_image(image, name)
    if set(_CAMERA_LAYOUT) == set(camera_names):
        ordered = [drawn[name] for name in _CAMERA_LAYOUT]
    else:
        ordered = [drawn[name] for name in camera_names]
    cameras = image_grid(ordered, columns=min(3, len(ordered))) if ordered else None
    boxes = sample["gt_boxes"].numpy()
    bev = draw_bev(
        points,
        box_corners(boxes)[:, :4, :2] if len(boxes) else None,
        CLASS_COLORS[sample["gt_labels"].numpy()],
        point_cloud_range,
        pixels_per_meter,
        up_direction=ego_forward_angle(
            sample["aug_matrix"].double().numpy(), sample["lidar2ego"].numpy()
        ),
    )
    if cameras is None:
        return None, bev, bev
    scale = cameras.shape[0] / bev.shape[0]
    bev_resized = cv2.resize(bev, (max(1, int(round(bev.shape[1] * scale))), cameras.shape[0]))
    gap = np.zeros((cameras.shape[0], 4, 3), dtype=np.uint8)
    return cameras, bev, np.concatenate([cameras, gap, bev_resized], axis=1)


def main(argv=None):
    logging.basicConfig(level=logging.INFO)
    args = parse_args(argv)
    cfg = setup_config(args)
    register_from_config(cfg)
    if args.split:
        name = dataset_name(cfg.DATASETS.VERSION, args.split)
    elif cfg.DATASETS.TRAIN:
        name = cfg.DATASETS.TRAIN[0]
    else:
        raise SystemExit("Give --split or set DATASETS.TRAIN")
    dataset_dicts = DatasetCatalog.get(name)
    torch.manual_seed(args.seed)
    mapper = build_mapper(cfg, is_train=args.train)
    os.makedirs(args.output, exist_ok=True)
    written = []
    for index, dataset_dict in enumerate(tqdm(dataset_dicts[: args.num_samples], desc="samples")):
        sample = mapper(dataset_dict)
        cameras, bev, overview = render_sample(
            sample, mapper.camera_names(dataset_dict), cfg.INPUT.POINT_CLOUD_RANGE,
            args.bev_pixels_per_meter,
        )
        stem = os.path.join(args.output, f"{index:04d}_{sample['sample_token']}")
        images = {"bev": bev, "overview": overview}
        if cameras is not None:
            images["cameras"] = cameras
        for kind, image in images.items():
            save_image(f"{stem}_{kind}.png", image)
            written.append(f"{stem}_{kind}.png")
    print(f"Wrote {len(written)} images of {name} to {args.output}")
    return written


if __name__ == "__main__":
    main()
