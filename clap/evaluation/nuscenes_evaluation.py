"""nuScenes 3D detection metrics (mAP, NDS) with nuscenes-devkit's own DetectionEval."""

import json
import logging
import os
import re
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist

from clap.config import configurable
from clap.data.classes import DETECTION_CLASSES

from .evaluator import DatasetEvaluator

logger = logging.getLogger(__name__)

# Attribute written for a class: (at rest, moving), chosen by the predicted speed.
_VEHICLE_ATTRIBUTES = ("vehicle.parked", "vehicle.moving")
DEFAULT_ATTRIBUTES = {
    "car": _VEHICLE_ATTRIBUTES,
    "truck": _VEHICLE_ATTRIBUTES,
    "construction_vehicle": _VEHICLE_ATTRIBUTES,
    "bus": _VEHICLE_ATTRIBUTES,
    "trailer": _VEHICLE_ATTRIBUTES,
    "barrier": ("", ""),
    "motorcycle": ("cycle.without_rider", "cycle.with_rider"),
    "bicycle": ("cycle.without_rider", "cycle.with_rider"),
    "pedestrian": ("pedestrian.standing", "pedestrian.moving"),
    "traffic_cone": ("", ""),
}
# Speed (m/s) above which the "moving" attribute is written.
MOVING_SPEED = 0.2
# devkit name of each TP error -> reported key.
_TP_ERROR_KEYS = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE",
                  "vel_err": "mAVE", "attr_err": "mAAE"}
_DATASET_NAME = re.compile(r"^nuscenes_(?:(?P<version>v\d+\.\d+-[A-Za-z]+)_)?(?P<split>\w+)$")


def rotation_matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(M, 3, 3) rotation matrices -> (M, 4) unit quaternions (w, x, y, z) with w >= 0."""
    m = np.asarray(rotation, dtype=np.float64).reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    # Four candidate squared components; the largest gives the best-conditioned formula.
    candidates = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                           1 - m00 + m11 - m22, 1 - m00 - m11 + m22], axis=1)
    case = np.argmax(candidates, axis=1)
    root = np.sqrt(np.maximum(candidates[np.arange(len(m)), case], 0.0)) * 2  # 4 * |component|
    quaternion = np.empty((len(m), 4))
    d21, d02, d10 = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    s01, s02, s12 = m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1]
    rows = (
        (root / 4, d21 / root, d02 / root, d10 / root),
        (d21 / root, root / 4, s01 / root, s02 / root),
        (d02 / root, s01 / root, root / 4, s12 / root),
        (d10 / root, s02 / root, s12 / root, root / 4),
    )
    for index, row in enumerate(rows):
        selected = case == index
        quaternion[selected] = np.stack(row, axis=1)[selected]
    quaternion *= np.where(quaternion[:, :1] < 0, -1.0, 1.0)
    return quaternion / np.linalg.norm(quaternion, axis=1, keepdims=True)


def lidar_boxes_to_global(boxes: np.ndarray, lidar2ego: np.ndarray,
                          ego2global: np.ndarray) -> Dict[str, np.ndarray]:
    """Boxes of docs/data.md in the LiDAR frame -> the global frame of nuScenes, in float64.

    The box orientation is the rotation matrix `R_lidar2global @ Rz(yaw)` as a quaternion (so
    any tilt of the sensor or the ego pose is kept), the velocity (vx, vy, 0) is rotated by
    `R_lidar2global` and its xy part kept.

    Args:
        boxes: (M, 9) x, y, z, l, w, h, yaw, vx, vy in the LiDAR frame.
        lidar2ego, ego2global: (4, 4) homogeneous transforms.
    Returns:
        {"translation" (M, 3) meters, "size" (M, 3) as nuScenes' (width, length, height),
        "rotation" (M, 4) quaternion (w, x, y, z), "velocity" (M, 2) m/s}.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 9)
    lidar2global = np.asarray(ego2global, np.float64) @ np.asarray(lidar2ego, np.float64)
    rotation, translation = lidar2global[:3, :3], lidar2global[:3, 3]
    cos_yaw, sin_yaw = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    yaw_rotation = np.zeros((len(boxes), 3, 3))
    yaw_rotation[:, 0, 0], yaw_rotation[:, 0, 1] = cos_yaw, -sin_yaw
    yaw_rotation[:, 1, 0], yaw_rotation[:, 1, 1] = sin_yaw, cos_yaw
    yaw_rotation[:, 2, 2] = 1.0
    velocity = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], axis=1)
    return {
        "translation": boxes[:, :3] @ rotation.T + translation,
        "size": boxes[:, [4, 3, 5]],
        "rotation": rotation_matrix_to_quaternion(rotation[None] @ yaw_rotation),
        "velocity": (velocity @ rotation.T)[:, :2],
    }


def to_submission_boxes(sample_token: str, boxes: np.ndarray, scores: np.ndarray,
                        labels: np.ndarray, lidar2ego: np.ndarray, ego2global: np.ndarray,
                        class_names: Sequence[str] = DETECTION_CLASSES) -> List[dict]:
    """One sample's detections (LiDAR frame) as entries of the nuScenes submission format."""
    converted = lidar_boxes_to_global(boxes, lidar2ego, ego2global)
    entries = []
    for index, (score, label) in enumerate(zip(np.asarray(scores).tolist(),
                                               np.asarray(labels).tolist())):
        name = class_names[int(label)]
        velocity = converted["velocity"][index]
        at_rest, moving = DEFAULT_ATTRIBUTES[name]
        speed = float(np.hypot(*velocity)) if np.all(np.isfinite(velocity)) else 0.0
        entries.append({
            "sample_token": sample_token,
            "translation": converted["translation"][index].tolist(),
            "size": converted["size"][index].tolist(),
            "rotation": converted["rotation"][index].tolist(),
            "velocity": velocity.tolist(),
            "detection_name": name,
            "detection_score": float(score),
            "attribute_name": moving if speed > MOVING_SPEED else at_rest,
        })
    return entries


def parse_nuscenes_dataset_name(dataset_name: str, default_version: str) -> Tuple[str, str]:
    """`nuscenes_<version>_<split>` (or `nuscenes_<split>`) -> (version, devkit eval set).

    The split of a mini version maps to the devkit's names: "train" -> "mini_train", "val" ->
    "mini_val" (a split already named "mini_*", or a custom one, is kept).
    """
    match = _DATASET_NAME.match(dataset_name)
    if match is None:
        raise KeyError(f"Data set name '{dataset_name}' is not of the form "
                       "nuscenes_<version>_<split> (e.g. nuscenes_v1.0-mini_val)")
    version = match.group("version") or default_version
    split = match.group("split")
    if version.endswith("mini") and split in ("train", "val"):
        split = f"mini_{split}"
    return version, split


def _gather_to_main(results: Dict[str, list]) -> Optional[Dict[str, list]]:
    """All ranks' results merged on rank 0; None on other ranks."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return results
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(results, gathered, dst=0)
    if dist.get_rank() != 0:
        return None
    merged = {}
    for part in gathered:
        merged.update(part)
    return merged


def _to_numpy(value) -> np.ndarray:
    if torch.is_tensor(value):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


class NuScenesDetectionEvaluator(DatasetEvaluator):
    """Writes detections in the nuScenes submission format and scores them with DetectionEval.

    `process(inputs, outputs)` takes a batch (needs `lidar2ego`, `ego2global` (B, 4, 4)) and the
    model's per-sample dicts {"sample_token", "boxes" (M, 9) LiDAR frame, "scores", "labels"}.
    `evaluate()` writes `results_nusc.json`, `metrics_summary.json` and `metrics_details.json`
    to `output_dir` and returns {"mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE",
    "AP/<class>" for each class, "mAP_classes_with_gt"}. The devkit's mAP averages over all its
    classes, and a class without ground truth (after its range and point filters) scores AP 0;
    "mAP_classes_with_gt" averages over the classes that have ground truth, the meaningful figure
    on a small subset. Predictions must cover every sample of `eval_set`.
    """

    @configurable
    def __init__(
        self,
        *,
        dataroot: str,
        version: str,
        eval_set: str,
        output_dir: str,
        modalities: Sequence[str] = ("lidar", "camera"),
        class_names: Sequence[str] = DETECTION_CLASSES,
        eval_config: str = "detection_cvpr_2019",
        max_range: float = 0.0,
    ):
        """
        Args:
            dataroot: folder of the nuScenes-format data set (holds `<version>/`).
            version: table version, e.g. "v1.0-trainval", "v1.0-mini".
            eval_set: devkit split, e.g. "val", "mini_val" (or a custom split of splits.json).
            output_dir: where the submission and the metrics are written.
            modalities: inputs the model used ("lidar", "camera"), for the submission's meta.
            class_names: class name of each label index.
            eval_config: devkit detection config name.
            max_range: meters; when > 0, every class range of the devkit config (the ego
                distance up to which boxes, true and predicted, are evaluated: 30-50 m) is capped
                at this value, for a detector whose grid covers less.
        """
        self.dataroot = dataroot
        self.version = version
        self.eval_set = eval_set
        self.output_dir = output_dir
        self.modalities = tuple(modalities)
        self.class_names = tuple(class_names)
        self.eval_config = eval_config
        if max_range < 0:
            raise ValueError(f"TEST.EVAL_MAX_RANGE must be >= 0 meters, got {max_range}")
        self.max_range = float(max_range)
        self._nusc = None
        self._config = None
        self._results: Dict[str, list] = {}

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: Optional[str] = None):
        version, eval_set = parse_nuscenes_dataset_name(
            dataset_name, cfg.DATASETS.get("VERSION", "v1.0-mini"))
        return {
            "dataroot": cfg.DATASETS.ROOT,
            "version": version,
            "eval_set": eval_set,
            "output_dir": output_dir or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name),
            "modalities": tuple(cfg.MODEL.MODALITIES),
            "max_range": cfg.TEST.EVAL_MAX_RANGE,
        }

    def reset(self) -> None:
        self._results = {}

    def process(self, inputs: dict, outputs: List[dict]) -> None:
        max_boxes = self._devkit_config().max_boxes_per_sample
        for index, output in enumerate(outputs):
            token = output["sample_token"]
            scores = _to_numpy(output["scores"])
            best = np.argsort(-scores, kind="stable")[:max_boxes]
            labels = np.asarray(output["labels"].cpu() if torch.is_tensor(output["labels"])
                                else output["labels"], dtype=np.int64)
            self._results[token] = to_submission_boxes(
                token, _to_numpy(output["boxes"])[best], scores[best], labels[best],
                _to_numpy(inputs["lidar2ego"][index]), _to_numpy(inputs["ego2global"][index]),
                self.class_names,
            )

    def _devkit_config(self):
        """The devkit's DetectionConfig (class ranges, thresholds, box limit), read once."""
        if self._config is None:
            from nuscenes.eval.common.config import config_factory

            self._config = config_factory(self.eval_config)
            if self.max_range > 0:
                self._config.class_range = {
                    name: min(limit, self.max_range)
                    for name, limit in self._config.class_range.items()
                }
        return self._config

    @property
    def meta(self) -> dict:
        return {"use_camera": "camera" in self.modalities, "use_lidar": "lidar" in self.modalities,
                "use_radar": False, "use_map": False, "use_external": False}

    def evaluate(self) -> dict:
        results = _gather_to_main(self._results)
        if results is None:
            return {}
        if not results:
            logger.warning("NuScenesDetectionEvaluator got no predictions; nothing to evaluate")
            return {}
        os.makedirs(self.output_dir, exist_ok=True)
        result_path = os.path.join(self.output_dir, "results_nusc.json")
        with open(result_path, "w") as f:
            json.dump({"meta": self.meta, "results": results}, f)
        logger.info("Wrote %d samples' detections to %s", len(results), result_path)
        summary = self._run_detection_eval(result_path, len(results))

        metrics = {"mAP": summary["mean_ap"], "NDS": summary["nd_score"]}
        for devkit_name, key in _TP_ERROR_KEYS.items():
            metrics[key] = summary["tp_errors"][devkit_name]
        for name in self.class_names:
            metrics[f"AP/{name}"] = summary["mean_dist_aps"][name]
        with_gt = [name for name in self.class_names if summary["gt_counts"].get(name, 0) > 0]
        metrics["mAP_classes_with_gt"] = (
            float(np.mean([summary["mean_dist_aps"][name] for name in with_gt])) if with_gt
            else 0.0)
        logger.info("Ground-truth boxes per class after the devkit's filters: %s",
                    ", ".join(f"{name} {summary['gt_counts'].get(name, 0)}"
                              for name in self.class_names))
        logger.info("nuScenes %s/%s: %s", self.version, self.eval_set,
                    ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    def _run_detection_eval(self, result_path: str, num_samples: int) -> dict:
        from nuscenes import NuScenes
        from nuscenes.eval.detection.evaluate import DetectionEval

        if self._nusc is None:
            self._nusc = NuScenes(version=self.version, dataroot=self.dataroot, verbose=False)
        try:
            detection_eval = DetectionEval(
                self._nusc, config=self._devkit_config(), result_path=result_path,
                eval_set=self.eval_set, output_dir=self.output_dir, verbose=False,
            )
        except AssertionError as error:
            raise RuntimeError(
                f"nuScenes evaluation of {result_path} on {self.dataroot} {self.version} "
                f"'{self.eval_set}' ({num_samples} predicted samples) failed: {error}"
            ) from error
        metrics, metric_data = detection_eval.evaluate()
        summary = metrics.serialize()
        summary["meta"] = self.meta
        summary["gt_counts"] = dict(Counter(box.detection_name
                                            for box in detection_eval.gt_boxes.all))
        with open(os.path.join(self.output_dir, "metrics_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
        with open(os.path.join(self.output_dir, "metrics_details.json"), "w") as f:
            json.dump(metric_data.serialize(), f, indent=2)
        return summary
