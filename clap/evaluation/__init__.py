"""Evaluation: the inference loop, the evaluator interface and nuScenes detection metrics."""

from .build import build_evaluator
from .evaluator import DatasetEvaluator, inference_on_dataset
from .nuscenes_evaluation import (
    NuScenesDetectionEvaluator,
    lidar_boxes_to_global,
    parse_nuscenes_dataset_name,
    rotation_matrix_to_quaternion,
    to_submission_boxes,
)

__all__ = [
    "DatasetEvaluator", "NuScenesDetectionEvaluator", "build_evaluator", "inference_on_dataset",
    "lidar_boxes_to_global", "parse_nuscenes_dataset_name", "rotation_matrix_to_quaternion",
    "to_submission_boxes",
]
