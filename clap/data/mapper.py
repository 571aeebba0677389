"""Dataset dict (docs/data.md) -> one model-ready sample: points, voxels, images, calibration."""

import logging
import os
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch

from clap.config.config import configurable
from clap.data.datasets.nuscenes import CAMERA_CHANNELS
from clap.data.transforms import (
    ColorJitter,
    GlobalRotScaleFlipTranslate,
    PointCloudTransform,
    ResizeCropFlip,
    boxes_in_range_mask,
    points_in_range_mask,
)
from clap.data.voxelize import voxelize

__all__ = ["NuScenesMapper", "build_mapper", "load_lidar_points", "load_image"]

logger = logging.getLogger(__name__)

# A nuScenes .pcd.bin stores float32 x, y, z, intensity, ring index per point.
_PCD_BIN_CHANNELS = 5


def load_lidar_points(path: str) -> np.ndarray:
    """Read a nuScenes `.pcd.bin` file -> (N, 4) float32: x, y, z (meters), intensity.

    The ring index (5th value) is dropped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LiDAR file {path} not found")
    size = os.path.getsize(path)
    if size % (4 * _PCD_BIN_CHANNELS) != 0:
        raise ValueError(
            f"LiDAR file {path} has {size} bytes, not a multiple of {4 * _PCD_BIN_CHANNELS} "
            f"({_PCD_BIN_CHANNELS} float32 per point: x, y, z, intensity, ring index)"
        )
    return np.fromfile(path, dtype=np.float32).reshape(-1, _PCD_BIN_CHANNELS)[:, :4]


_REDUCED_READ_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def load_image(path: str, reduction: int = 1) -> np.ndarray:
    """Read an image file with OpenCV -> (H, W, 3) uint8 in OpenCV's BGR order.

    `reduction` (1, 2, 4 or 8) decodes at that fraction of the full size (fast for JPEG).
    """
    image = cv2.imread(path, _REDUCED_READ_FLAGS[reduction])
    if image is None:
        reason = "is not a readable image" if os.path.isfile(path) else "not found"
        raise FileNotFoundError(f"Camera image {path} {reason}; expected a colour image file")
    return image


class NuScenesMapper:
    """Turns one per-sample dict into the tensors a model consumes (one sample of a batch).

    Steps: key-frame points plus up to `num_sweeps` sweeps (moved into the key LiDAR frame, time
    lag in channel 5), non-finite points dropped (and logged); each camera image resized /
    cropped / flipped (intrinsics follow) and colour-jittered in training; in training a global
    rotation / scale / mirror / translation of points and boxes, folded into `lidar2cam`,
    `lidar2img` and `aug_matrix`; points and boxes outside `point_cloud_range` dropped; points
    averaged into input voxels.

    Returns a dict with (N_cam = len(camera_names(dataset_dict)), (H, W) = image size):
        sample_token: str
        points: (N, 5) float32 x, y, z, intensity, time lag (s)
        voxel_features: (V, 5) float32; voxel_coords: (V, 3) int32 `[x, y, z]`;
        voxel_num_points: (V,) int32
        images: (N_cam, 3, H, W) uint8 RGB
        intrinsics (N_cam, 3, 3), lidar2cam (N_cam, 4, 4), lidar2img (N_cam, 4, 4),
        image_aug_matrix (N_cam, 3, 3) (source pixel -> fed pixel): float32
        image_size: (H, W)
        gt_boxes: (M, 9) float32; gt_labels: (M,) int64
        aug_matrix: (4, 4) float32 (augmented = aug_matrix @ original)
        lidar2ego, ego2global: (4, 4) float64
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        cameras: Optional[Sequence[str]],
        num_sweeps: int,
        image_augmentation: ResizeCropFlip,
        point_cloud_range: Sequence[float],
        voxel_size: Sequence[float],
        max_points_per_voxel: int,
        max_voxels: int,
        color_jitter: Optional[ColorJitter] = None,
        point_augmentation: Optional[GlobalRotScaleFlipTranslate] = None,
        min_box_lidar_points: int = 0,
    ):
        """
        Args:
            is_train: training mode (random augmentation, box filtering by point count).
            cameras: camera channels, in output order; None: every camera of each sample
                (`camera_names`); empty: no images.
            num_sweeps: earlier LiDAR sweeps merged into the key frame at most.
            image_augmentation: draws each camera's resize / crop / flip.
            point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max), meters.
            voxel_size: (x, y, z), meters.
            max_points_per_voxel, max_voxels: voxelization limits.
            color_jitter: photometric jitter, applied when training (None: none).
            point_augmentation: global point augmentation, applied when training (None: none).
            min_box_lidar_points: training drops boxes with fewer annotated LiDAR points.
        """
        self.is_train = is_train
        self.cameras = None if cameras is None else list(cameras)
        self.num_sweeps = int(num_sweeps)
        self.image_augmentation = image_augmentation
        self.color_jitter = color_jitter
        self.point_augmentation = point_augmentation
        self.point_cloud_range = [float(v) for v in point_cloud_range]
        self.voxel_size = [float(v) for v in voxel_size]
        self.max_points_per_voxel = int(max_points_per_voxel)
        self.max_voxels = int(max_voxels)
        self.min_box_lidar_points = int(min_box_lidar_points)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict:
        inp = cfg.INPUT
        return {
            "is_train": is_train,
            "cameras": _cameras_from_config(cfg),
            "num_sweeps": inp.NUM_SWEEPS,
            "image_augmentation": ResizeCropFlip(
                inp.IMAGE_SIZE,
                inp.RESIZE_SCALE,
                inp.CROP_BOTTOM_RANGE,
                inp.IMAGE_FLIP_PROB,
                is_train,
            ),
            "color_jitter": ColorJitter(*inp.COLOR_JITTER) if is_train else None,
            "point_augmentation": (
                GlobalRotScaleFlipTranslate(
                    inp.ROTATION, inp.SCALE, inp.FLIP_X_PROB, inp.FLIP_Y_PROB, inp.TRANSLATION_STD
                )
                if is_train
                else None
            ),
            "point_cloud_range": inp.POINT_CLOUD_RANGE,
            "voxel_size": inp.VOXEL_SIZE,
            "max_points_per_voxel": inp.MAX_POINTS_PER_VOXEL,
            "max_voxels": inp.MAX_VOXELS_TRAIN if is_train else inp.MAX_VOXELS_TEST,
            "min_box_lidar_points": inp.MIN_BOX_LIDAR_POINTS if is_train else 0,
        }

    def __call__(self, dataset_dict: dict) -> Dict[str, object]:
        # Training draws from torch's generator: DataLoader seeds it per worker, so workers differ
        # and a run repeats under torch.manual_seed. Inference draws nothing.
        seed = int(torch.randint(0, 2**62, (1,)).item()) if self.is_train else 0
        rng = np.random.default_rng(seed)
        points = self._load_points(dataset_dict)
        cameras = self._load_cameras(dataset_dict, rng)
        boxes, labels = self._ground_truth(dataset_dict)

        point_transform = PointCloudTransform(np.eye(4))
        if self.is_train and self.point_augmentation is not None:
            point_transform = self.point_augmentation.get_transform(rng)
            points = point_transform.apply_points(points)
            boxes = point_transform.apply_boxes(boxes)
        lidar2cam = point_transform.apply_lidar2cam(cameras["lidar2cam"])
        projection = np.tile(np.eye(4), (len(cameras["intrinsics"]), 1, 1))
        projection[:, :3, :3] = cameras["intrinsics"]

        points = points[points_in_range_mask(points, self.point_cloud_range)]
        in_range = boxes_in_range_mask(boxes, self.point_cloud_range)
        boxes, labels = boxes[in_range], labels[in_range]
        voxel_features, voxel_coords, voxel_num_points = voxelize(
            points,
            self.point_cloud_range,
            self.voxel_size,
            self.max_points_per_voxel,
            self.max_voxels,
        )
        height, width = self.image_augmentation.output_size
        return {
            "sample_token": dataset_dict["sample_token"],
            "points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
            "voxel_features": torch.from_numpy(voxel_features),
            "voxel_coords": torch.from_numpy(voxel_coords),
            "voxel_num_points": torch.from_numpy(voxel_num_points),
            "images": torch.from_numpy(cameras["images"]),
            "intrinsics": _float32(cameras["intrinsics"]),
            "lidar2cam": _float32(lidar2cam),
            "lidar2img": _float32(projection @ lidar2cam),
            "image_aug_matrix": _float32(cameras["image_aug_matrix"]),
            "image_size": (height, width),
            "gt_boxes": _float32(boxes),
            "gt_labels": torch.from_numpy(labels.astype(np.int64)),
            "aug_matrix": _float32(point_transform.matrix),
            "lidar2ego": torch.tensor(dataset_dict["lidar2ego"], dtype=torch.float64),
            "ego2global": torch.tensor(dataset_dict["ego2global"], dtype=torch.float64),
        }

    def _load_points(self, dataset_dict: dict) -> np.ndarray:
        """(N, 5) float32: key frame then sweeps, x, y, z, intensity, time lag (s)."""
        key = load_lidar_points(dataset_dict["lidar_path"])
        if len(key) == 0:
            logger.warning(
                "Sample %s: its key-frame point cloud %s is empty (0 points)",
                dataset_dict["sample_token"],
                dataset_dict["lidar_path"],
            )
        clouds: List[np.ndarray] = [np.concatenate([key, np.zeros_like(key[:, :1])], axis=1)]
        for sweep in dataset_dict["sweeps"][: self.num_sweeps]:
            points = load_lidar_points(sweep["path"])
            transform = np.asarray(sweep["sweep2lidar"], dtype=np.float64)
            xyz = points[:, :3].astype(np.float64) @ transform[:3, :3].T + transform[:3, 3]
            lag = np.full((len(points), 1), sweep["time_lag"], dtype=np.float32)
            clouds.append(np.concatenate([xyz.astype(np.float32), points[:, 3:4], lag], axis=1))
        points = np.concatenate(clouds, axis=0)
        finite = np.isfinite(points).all(axis=1)
        if not finite.all():
            logger.warning(
                "Dropped %d non-finite points of %d (sample %s, %s and its sweeps)",
                int((~finite).sum()),
                len(points),
                dataset_dict["sample_token"],
                dataset_dict["lidar_path"],
            )
            points = points[finite]
        return points

    def camera_names(self, dataset_dict: dict) -> List[str]:
        """The camera channels loaded for this sample, in output order: `cameras`, or (None)
        every camera of the sample, nuScenes channels first in `CAMERA_CHANNELS` order, then any
        other by name."""
        if self.cameras is not None:
            return self.cameras
        known = {name: index for index, name in enumerate(CAMERA_CHANNELS)}
        return sorted(dataset_dict["cameras"], key=lambda name: (known.get(name, len(known)), name))

    def _load_cameras(self, dataset_dict: dict, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        """Augmented images (N_cam, 3, H, W) uint8 RGB and their calibration (float64)."""
        height, width = self.image_augmentation.output_size
        names = self.camera_names(dataset_dict)
        images = np.zeros((len(names), 3, height, width), dtype=np.uint8)
        intrinsics = np.zeros((len(names), 3, 3))
        lidar2cam = np.zeros((len(names), 4, 4))
        image_aug = np.zeros((len(names), 3, 3))
        for index, name in enumerate(names):
            if name not in dataset_dict["cameras"]:
                raise KeyError(
                    f"sample {dataset_dict['sample_token']} has no camera {name}; it has "
                    f"{sorted(dataset_dict['cameras'])} (INPUT.CAMERAS lists the cameras to load)"
                )
            camera = dataset_dict["cameras"][name]
            image, transform = self._read_and_transform(camera, rng)
            if self.is_train and self.color_jitter is not None and self.color_jitter.enabled:
                image = self.color_jitter.get_transform(rng).apply_image(image, "BGR")
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            images[index] = image.transpose(2, 0, 1)
            intrinsics[index] = transform.apply_intrinsics(np.asarray(camera["intrinsics"]))
            lidar2cam[index] = camera["lidar2cam"]
            image_aug[index] = transform.matrix
        return {
            "images": images,
            "intrinsics": intrinsics,
            "lidar2cam": lidar2cam,
            "image_aug_matrix": image_aug,
        }

    def _read_and_transform(self, camera: dict, rng: np.random.Generator):
        """Read one camera image (reduced while decoding when the recorded size allows) and
        apply its drawn transform -> (H, W, 3) uint8 BGR image, ImageTransform."""
        recorded_size = tuple(int(v) for v in camera.get("image_size", (0, 0)))
        if min(recorded_size) > 0:
            transform = self.image_augmentation.get_transform(recorded_size, rng)
            reduction = transform.decode_reduction
            image = load_image(camera["path"], reduction)
            if image.shape[:2] == (recorded_size[0] // reduction, recorded_size[1] // reduction):
                return transform.apply_image(image), transform
            if reduction > 1:
                image = load_image(camera["path"])
            if image.shape[:2] != recorded_size:
                logger.warning(
                    "Image %s is %s, its sample_data record says %s; using the file's size",
                    camera["path"],
                    image.shape[:2],
                    recorded_size,
                )
        else:
            image = load_image(camera["path"])
        transform = self.image_augmentation.get_transform(image.shape[:2], rng)
        return transform.apply_image(image), transform

    def _ground_truth(self, dataset_dict: dict):
        boxes = np.asarray(dataset_dict["gt_boxes"], dtype=np.float64).reshape(-1, 9)
        labels = np.asarray(dataset_dict["gt_labels"], dtype=np.int64)
        if self.min_box_lidar_points > 0:
            keep = np.asarray(dataset_dict["num_lidar_pts"]) >= self.min_box_lidar_points
            boxes, labels = boxes[keep], labels[keep]
        return boxes, labels


def _cameras_from_config(cfg) -> Optional[List[str]]:
    """INPUT.CAMERAS; when empty, every camera of the data (None) for a model with the camera
    modality (MODEL.MODALITIES), no images ([]) for one without."""
    if cfg.INPUT.CAMERAS:
        return list(cfg.INPUT.CAMERAS)
    return None if "camera" in cfg.MODEL.MODALITIES else []


def _float32(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def build_mapper(cfg, is_train: bool = True) -> NuScenesMapper:
    """The mapper for training (random augmentation) or inference (deterministic)."""
    return NuScenesMapper(cfg, is_train=is_train)
