"""Evaluator for a registered data set name."""

from typing import Optional

from .evaluator import DatasetEvaluator
from .nuscenes_evaluation import NuScenesDetectionEvaluator


def build_evaluator(cfg, dataset_name: str, output_dir: Optional[str] = None) -> DatasetEvaluator:
    """The evaluator of `dataset_name`, writing to `output_dir` (default:
    `<OUTPUT_DIR>/inference/<dataset_name>`).

    Names `nuscenes_<version>_<split>` (real nuScenes or a data set in its format under
    `DATASETS.ROOT`) get a NuScenesDetectionEvaluator.
    """
    if dataset_name.startswith("nuscenes_"):
        return NuScenesDetectionEvaluator(cfg, dataset_name=dataset_name, output_dir=output_dir)
    raise KeyError(f"No evaluator for data set '{dataset_name}': detection evaluation needs a "
                   "name of the form nuscenes_<version>_<split>")
