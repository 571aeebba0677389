#!/usr/bin/env python
"""Over-fit a learnable feature volume + NeuSRenderHead to one real nuScenes key frame.

A check that the neural field and the renderer can learn a real scene: LiDAR rays and pixels
are split into training and held-out sets; a feature volume and the render head are optimised
on training rays only, and the held-out range L1 (meters) and RGB L1 (colour in [0, 1]) are
printed before the first step and after the last one.

    python tools/overfit_render.py --iterations 300

Reads the frame with nuscenes-devkit (default: tests/data/nuscenes_frame), not through the
project's data pipeline.
"""

import argparse
import os
import time

import cv2
import numpy as np
import torch
from pyquaternion import Quaternion
from tqdm import tqdm

from clap.layers.volume import VolumeGrid
from clap.modeling.render_head.neus import NeuSRenderHead
from clap.modeling.render_head.rays import camera_rays, lidar_rays

DEFAULT_DATAROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "nuscenes_frame"
)
CAMERAS = (
    "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"
)


def _pose(record) -> np.ndarray:
    """4 x 4 transform of a devkit `calibrated_sensor` / `ego_pose` record (sensor -> parent)."""
    transform = np.eye(4)
    transform[:3, :3] = Quaternion(record["rotation"]).rotation_matrix
    transform[:3, 3] = record["translation"]
    return transform


def load_nuscenes_frame(dataroot: str, image_scale: float = 0.25, point_cloud_range=None):
    """The first key frame of a devkit data set as a batch of one sample (docs/data.md).

    Args:
        dataroot: nuScenes-format folder with `v1.0-mini`.
        image_scale: images (and intrinsics) are resized by this factor.
        point_cloud_range: optional (x_min, y_min, z_min, x_max, y_max, z_max) meters: points
            outside are dropped.

    Returns:
        (batch, nusc): the batch (float32 tensors; time lag column 0: all key-frame points; the
        raw file's 5th column, the ring index, is dropped) and the devkit handle.
    """
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes(version="v1.0-mini", dataroot=dataroot, verbose=False)
    sample = nusc.sample[0]
    lidar_data = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    points = np.fromfile(os.path.join(dataroot, lidar_data["filename"]), dtype=np.float32)
    points = points.reshape(-1, 5).copy()
    points[:, 4] = 0.0
    if point_cloud_range is not None:
        lo, hi = np.asarray(point_cloud_range[:3]), np.asarray(point_cloud_range[3:])
        points = points[np.all((points[:, :3] >= lo) & (points[:, :3] < hi), axis=1)]
    lidar2global = _pose(nusc.get("ego_pose", lidar_data["ego_pose_token"])) @ _pose(
        nusc.get("calibrated_sensor", lidar_data["calibrated_sensor_token"])
    )

    images, lidar2cams, intrinsics = [], [], []
    for name in CAMERAS:
        camera_data = nusc.get("sample_data", sample["data"][name])
        sensor = nusc.get("calibrated_sensor", camera_data["calibrated_sensor_token"])
        cam2global = _pose(nusc.get("ego_pose", camera_data["ego_pose_token"])) @ _pose(sensor)
        lidar2cams.append(np.linalg.inv(cam2global) @ lidar2global)
        image = cv2.imread(os.path.join(dataroot, camera_data["filename"]), cv2.IMREAD_COLOR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        height = int(round(image.shape[0] * image_scale))
        width = int(round(image.shape[1] * image_scale))
        scale_x, scale_y = width / image.shape[1], height / image.shape[0]
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        images.append(image.transpose(2, 0, 1))
        # Pixel centres at integer coordinates: u' = s (u + 1/2) - 1/2.
        camera_matrix = np.asarray(sensor["camera_intrinsic"], dtype=np.float64)
        scaling = np.array(
            [[scale_x, 0, 0.5 * scale_x - 0.5], [0, scale_y, 0.5 * scale_y - 0.5], [0, 0, 1]]
        )
        intrinsics.append(scaling @ camera_matrix)

    lidar2cam = np.stack(lidar2cams)
    intrinsic = np.stack(intrinsics)
    padded = np.tile(np.eye(4), (len(CAMERAS), 1, 1))
    padded[:, :3, :3] = intrinsic
    batch = {
        "points": torch.from_numpy(points),
        "points_batch": torch.zeros(points.shape[0], dtype=torch.long),
        "images": torch.from_numpy(np.stack(images)).float().unsqueeze(0),
        "lidar2cam": torch.from_numpy(lidar2cam).float().unsqueeze(0),
        "intrinsics": torch.from_numpy(intrinsic).float().unsqueeze(0),
        "lidar2img": torch.from_numpy(padded @ lidar2cam).float().unsqueeze(0),
        "image_size": tuple(images[0].shape[1:]),
        "aug_matrix": torch.eye(4).unsqueeze(0),
        "batch_size": 1,
    }
    return batch, nusc


def _render_in_chunks(head, volume, rays, with_rgb, chunk=4096):
    """Render rays in eval mode, chunk by chunk; returns (range (R,), rgb (R, 3) or None)."""
    ranges, colours = [], []
    for start in range(0, rays["origins"].shape[0], chunk):
        part = slice(start, start + chunk)
        with torch.no_grad():
            out = head.render_rays(
                volume,
                rays["origins"][part],
                rays["directions"][part],
                rays["batch_index"][part],
                with_rgb,
            )
        ranges.append(out["range"])
        if with_rgb:
            colours.append(out["rgb"])
    return torch.cat(ranges), (torch.cat(colours) if with_rgb else None)


def held_out_errors(head, volume, lidar, camera):
    """Held-out range L1 (meters, over rays ending inside the scene box) and RGB L1."""
    head.eval()
    rendered_range, _ = _render_in_chunks(head, volume, lidar, with_rgb=False)
    _, rendered_rgb = _render_in_chunks(head, volume, camera, with_rgb=True)
    head.train()
    range_l1 = (rendered_range - lidar["target_range"]).abs().mean().item()
    rgb_l1 = (rendered_rgb - camera["target_rgb"]).abs().mean().item()
    return range_l1, rgb_l1


def overfit(
    batch,
    iterations: int = 300,
    num_lidar_rays: int = 512,
    num_pixels_per_camera: int = 64,
    num_held_out_rays: int = 2048,
    num_held_out_pixels: int = 256,
    channels: int = 16,
    cell_size: float = 1.0,
    num_uniform_samples: int = 48,
    num_importance_samples: int = 16,
    learning_rate: float = 0.01,
    seed: int = 0,
    show_progress: bool = True,
):
    """Optimise a feature volume + render head on training rays; return held-out errors.

    The volume spans INPUT.POINT_CLOUD_RANGE's default (+-54 m, z -5..3 m) with `cell_size`
    meter cells. Returns a dict: `range_l1_first`, `range_l1_last` (meters), `rgb_l1_first`,
    `rgb_l1_last`, `seconds`.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    grid = VolumeGrid(
        point_cloud_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0),
        voxel_size=(cell_size, cell_size, cell_size),
        volume_stride=(1, 1, 1),
    )
    head = NeuSRenderHead(
        volume_grid=grid,
        in_channels=channels,
        field_conv_channels=0,
        num_uniform_samples=num_uniform_samples,
        num_importance_samples=num_importance_samples,
    )
    volume = torch.nn.Parameter(0.01 * torch.randn(1, channels, *grid.volume_shape))

    # LiDAR rays: a fixed held-out subset of the points inside the scene box, the rest trains.
    box_min, box_max = head.box_min, head.box_max
    inside = ((batch["points"][:, :3] > box_min) & (batch["points"][:, :3] < box_max)).all(1)
    rows = inside.nonzero(as_tuple=True)[0]
    rows = rows[torch.randperm(rows.numel(), generator=generator)]
    held_out_rows, train_rows = rows[:num_held_out_rays], rows[num_held_out_rays:]
    held_out_lidar = lidar_rays(batch, held_out_rows.view(1, -1))

    # Pixels: a fixed held-out set per camera; training pixels are drawn from the others.
    _, num_cameras, _, height, width = batch["images"].shape
    order = torch.stack(
        [torch.randperm(height * width, generator=generator) for _ in range(num_cameras)]
    )
    held_out_flat, train_flat = order[:, :num_held_out_pixels], order[:, num_held_out_pixels:]

    def to_uv(flat):
        return torch.stack([flat % width, flat // width], dim=-1).unsqueeze(0)

    held_out_camera = camera_rays(batch, to_uv(held_out_flat), with_target_range=False)

    optimizer = torch.optim.Adam(
        [
            {"params": [volume], "lr": learning_rate},
            {"params": list(head.parameters()), "lr": learning_rate * 0.5},
        ]
    )
    range_first, rgb_first = held_out_errors(head, volume, held_out_lidar, held_out_camera)
    start = time.time()
    for _ in tqdm(range(iterations), disable=not show_progress, desc="overfit"):
        chosen = train_rows[torch.randint(train_rows.numel(), (num_lidar_rays,))]
        pick = torch.randint(train_flat.shape[1], (num_cameras, num_pixels_per_camera))
        rays = {
            "lidar": lidar_rays(batch, chosen.view(1, -1)),
            "camera": camera_rays(
                batch, to_uv(train_flat.gather(1, pick)), with_target_range=False
            ),
        }
        losses = head.render(volume, rays)
        total = sum(v for k, v in losses.items() if k.startswith("loss_"))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    seconds = time.time() - start
    range_last, rgb_last = held_out_errors(head, volume, held_out_lidar, held_out_camera)
    return {
        "range_l1_first": range_first,
        "range_l1_last": range_last,
        "rgb_l1_first": rgb_first,
        "rgb_l1_last": rgb_last,
        "seconds": seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--dataroot", default=DEFAULT_DATAROOT)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--lidar-rays", type=int, default=512, help="training LiDAR rays/step")
    parser.add_argument("--pixels-per-camera", type=int, default=64, help="training pixels/step")
    parser.add_argument("--image-scale", type=float, default=0.25)
    parser.add_argument("--channels", type=int, default=16, help="feature volume channels")
    parser.add_argument("--cell-size", type=float, default=1.0, help="volume cell size, meters")
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    batch, _ = load_nuscenes_frame(args.dataroot, args.image_scale)
    result = overfit(
        batch,
        iterations=args.iterations,
        num_lidar_rays=args.lidar_rays,
        num_pixels_per_camera=args.pixels_per_camera,
        channels=args.channels,
        cell_size=args.cell_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    range_drop = 1.0 - result["range_l1_last"] / result["range_l1_first"]
    rgb_drop = 1.0 - result["rgb_l1_last"] / result["rgb_l1_first"]
    print(f"iterations: {args.iterations} ({result['seconds']:.1f} s)")
    print(
        f"held-out range L1 (m): {result['range_l1_first']:.3f} -> {result['range_l1_last']:.3f}"
        f" ({100 * range_drop:.1f}% lower)"
    )
    print(
        f"held-out RGB L1:       {result['rgb_l1_first']:.4f} -> {result['rgb_l1_last']:.4f}"
        f" ({100 * rgb_drop:.1f}% lower)"
    )


if __name__ == "__main__":
    main()
