#!/usr/bin/env python
"""Overfit the BEV backbone + CenterHead on one real nuScenes frame and score it with the devkit.

A check of the detection path end to end (targets, losses, decoding, LiDAR -> global conversion,
submission file, DetectionEval): the BEV input is a fixed occupancy map of the frame's LiDAR
points (per volume cell: log(1 + point count) and mean intensity / 255, Z folded into the
channels as DetectionModel does), the boxes are the frame's annotations. Prints mAP and NDS.

    python tools/overfit_detection.py --dataroot tests/data/nuscenes_frame

On the bundled frame only car, truck, barrier, pedestrian and traffic_cone keep ground truth
after the devkit's range and point filters, so 0.5 is the highest mAP (over the devkit's ten
classes) it allows; the mAP over those five classes is printed too.
"""

import argparse
import logging
import time

import numpy as np
import torch

from clap.config import get_cfg
from clap.data.classes import DETECTION_CLASSES
from clap.evaluation import NuScenesDetectionEvaluator
from clap.layers import ShapeSpec, VolumeGrid
from clap.modeling import build_bev_backbone, build_det_head


def load_frame(nusc, sample_token: str) -> dict:
    """Points (N, 5), LiDAR-frame boxes (M, 9) and labels (M,) of one key frame, and its
    lidar2ego / ego2global (4, 4) float64. Unknown velocities stay NaN. Boxes without LiDAR
    points are left out, as in training (INPUT.MIN_BOX_LIDAR_POINTS) and in the devkit's ground
    truth, which drops them."""
    from nuscenes.eval.detection.utils import category_to_detection_name
    from nuscenes.utils.geometry_utils import transform_matrix
    from pyquaternion import Quaternion

    sample = nusc.get("sample", sample_token)
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    calib = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", lidar["ego_pose_token"])
    points = np.fromfile(nusc.get_sample_data_path(lidar["token"]), dtype=np.float32)
    points = points.reshape(-1, 5)

    boxes, labels = [], []
    for annotation_token in sample["anns"]:
        annotation = nusc.get("sample_annotation", annotation_token)
        name = category_to_detection_name(annotation["category_name"])
        if name is None or annotation["num_lidar_pts"] == 0:
            continue
        box = nusc.get_box(annotation_token)
        for translation, rotation in ((pose["translation"], pose["rotation"]),
                                      (calib["translation"], calib["rotation"])):
            box.translate(-np.asarray(translation))
            box.rotate(Quaternion(rotation).inverse)
        rotation_matrix = box.rotation_matrix
        width, length, height = box.wlh
        yaw = np.arctan2(rotation_matrix[1, 0], rotation_matrix[0, 0])
        boxes.append([*box.center, length, width, height, yaw, *box.velocity[:2]])
        labels.append(DETECTION_CLASSES.index(name))
    return {
        "sample_token": sample_token,
        "points": points,
        "gt_boxes": torch.tensor(np.asarray(boxes), dtype=torch.float32).reshape(-1, 9),
        "gt_labels": torch.tensor(labels, dtype=torch.long),
        "lidar2ego": transform_matrix(calib["translation"], Quaternion(calib["rotation"])),
        "ego2global": transform_matrix(pose["translation"], Quaternion(pose["rotation"])),
    }


def occupancy_bev(points: np.ndarray, grid: VolumeGrid) -> torch.Tensor:
    """(1, 2 * Z, Y, X) BEV map: per volume cell log(1 + count) and mean intensity / 255,
    channel c * Z + z (the volume (1, 2, Z, Y, X) with Z folded into the channels)."""
    depth, height, width = grid.volume_shape
    xyz = torch.from_numpy(points[:, :3].astype(np.float32))
    cells = grid.points_to_volume_index(xyz)
    inside = ((cells >= 0) & (cells < torch.tensor([width, height, depth]))).all(dim=1)
    cells, intensity = cells[inside], torch.from_numpy(points[inside.numpy(), 3].copy())
    flat = (cells[:, 2] * height + cells[:, 1]) * width + cells[:, 0]
    count = torch.zeros(depth * height * width).index_add_(0, flat, torch.ones(len(flat)))
    total_intensity = torch.zeros_like(count).index_add_(0, flat, intensity / 255.0)
    volume = torch.stack([torch.log1p(count), total_intensity / count.clamp(min=1)])
    return volume.reshape(1, 2, depth, height, width).flatten(1, 2)


def detection_config(cell_size: float = 0.4, channels: int = 16, half_extent: float = 51.2):
    """Config of a small BEV backbone + CenterHead: a square grid of +-`half_extent` meters with
    `cell_size`-meter cells (5 height slices of 1.6 m), `channels` wide."""
    cfg = get_cfg()
    cfg.INPUT.POINT_CLOUD_RANGE = [-half_extent, -half_extent, -5.0, half_extent, half_extent, 3.0]
    cfg.INPUT.VOXEL_SIZE = [cell_size / 4, cell_size / 4, 0.2]
    cfg.MODEL.VOLUME_STRIDE = [4, 4, 8]
    cfg.MODEL.BEV_BACKBONE.LAYER_NUMS = [1, 1]
    cfg.MODEL.BEV_BACKBONE.NUM_FILTERS = [channels, 2 * channels]
    cfg.MODEL.BEV_BACKBONE.NUM_UPSAMPLE_FILTERS = [channels, channels]
    cfg.MODEL.DET_HEAD.SHARED_CHANNELS = channels
    cfg.MODEL.DET_HEAD.HEAD_CHANNELS = channels
    return cfg


def run_overfit(cfg, dataroot: str, version: str = "v1.0-mini", eval_set: str = "mini_train",
                iterations: int = 300, learning_rate: float = 1e-2,
                output_dir: str = "output/overfit_detection", seed: int = 0,
                log_period: int = 50) -> dict:
    """Train the BEV backbone + head of `cfg` on the first sample of `dataroot` for
    `iterations` steps, then evaluate on it.

    Returns the evaluator's metrics ({"mAP", "NDS", "AP/<class>", ...}) plus "final_loss".
    """
    from nuscenes import NuScenes

    torch.manual_seed(seed)
    nusc = NuScenes(version=version, dataroot=dataroot, verbose=False)
    frame = load_frame(nusc, nusc.sample[0]["token"])
    grid = VolumeGrid.from_config(cfg)
    bev = occupancy_bev(frame["points"], grid)
    _, height, width = grid.volume_shape
    backbone = build_bev_backbone(cfg, ShapeSpec(channels=bev.shape[1], height=height,
                                                 width=width))
    head = build_det_head(cfg, backbone.output_shape())
    model = torch.nn.ModuleDict({"bev_backbone": backbone, "det_head": head})
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate,
                                                   total_steps=iterations, pct_start=0.1)
    targets = [{"gt_boxes": frame["gt_boxes"], "gt_labels": frame["gt_labels"]}]

    model.train()
    start = time.perf_counter()
    for iteration in range(iterations):
        losses = head(backbone(bev), targets)
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if log_period and (iteration % log_period == 0 or iteration == iterations - 1):
            print(f"iter {iteration:4d}  " + "  ".join(
                f"{k} {v.item():.4f}" for k, v in losses.items()) +
                f"  ({time.perf_counter() - start:.1f} s)", flush=True)

    model.eval()
    with torch.no_grad():
        detections = head.predict(backbone(bev))
    evaluator = NuScenesDetectionEvaluator(dataroot=dataroot, version=version, eval_set=eval_set,
                                           output_dir=output_dir, modalities=("lidar",))
    evaluator.reset()
    evaluator.process(
        {"lidar2ego": torch.from_numpy(frame["lidar2ego"])[None],
         "ego2global": torch.from_numpy(frame["ego2global"])[None]},
        [{"sample_token": frame["sample_token"], **detections[0]}],
    )
    metrics = evaluator.evaluate()
    metrics["final_loss"] = loss.item()
    return metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataroot", default="tests/data/nuscenes_frame")
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--eval-set", default="mini_train")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-2, help="peak learning rate")
    parser.add_argument("--cell-size", type=float, default=0.4, help="BEV cell size, meters")
    parser.add_argument("--channels", type=int, default=16, help="width of backbone and head")
    parser.add_argument("--output-dir", default="output/overfit_detection")
    parser.add_argument("--num-threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.num_threads)
    start = time.perf_counter()
    cfg = detection_config(args.cell_size, args.channels)
    metrics = run_overfit(cfg, args.dataroot, args.version, args.eval_set, args.iterations,
                          args.lr, args.output_dir, args.seed)
    print(f"mAP {metrics['mAP']:.4f}  NDS {metrics['NDS']:.4f}  "
          f"mAP over the classes with ground truth {metrics['mAP_classes_with_gt']:.4f}  "
          f"({time.perf_counter() - start:.1f} s)")
    for name in DETECTION_CLASSES:
        print(f"  AP {name:<22s} {metrics[f'AP/{name}']:.4f}")


if __name__ == "__main__":
    main()
