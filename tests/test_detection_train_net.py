"""tools/train_net.py evaluates a DetectionModel with nuscenes-devkit's DetectionEval.

A tiny synthetic world (2 scenes x 2 key frames: scene 0 in mini_train, scene 1 in mini_val) and
a tiny LiDAR-only DetectionModel on the stand-in encoders keep this fast.
"""

import json
import os
import sys

import pytest
import stand_in_encoders  # noqa: F401  (registers the stand-in encoders)

from clap.config import get_cfg
from clap.data.synthetic import generate_dataset
from clap.engine import DefaultTrainer, default_argument_parser
from clap.evaluation import NuScenesDetectionEvaluator

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import train_net  # noqa: E402

VAL = "nuscenes_v1.0-mini_mini_val"
SCORES = ("mAP", "NDS", "AP/car", "AP/pedestrian")  # in [0, 1]
TP_ERRORS = ("mATE", "mASE", "mAOE", "mAVE", "mAAE")  # >= 0 (1 when nothing matched)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_world")
    generate_dataset(str(root), num_scenes=2, samples_per_scene=2, image_scale=0.1,
                     num_sweeps=0, seed=3, progress=False)
    return root


def write_config(world, tmp_path):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DetectionModel"
    cfg.MODEL.MODALITIES = ["lidar"]
    cfg.INPUT.CAMERAS = []
    cfg.INPUT.NUM_SWEEPS = 0
    cfg.INPUT.POINT_CLOUD_RANGE = [-32.0, -32.0, -3.0, 32.0, 32.0, 3.0]
    cfg.INPUT.VOXEL_SIZE = [0.5, 0.5, 1.0]
    cfg.MODEL.VOLUME_STRIDE = [4, 4, 2]  # 32 x 32 x 3 volume of 2 m cells
    cfg.MODEL.LIDAR_BACKBONE.NAME = "StandInScatterLidar"
    cfg.MODEL.LIDAR_BACKBONE.OUT_CHANNELS = 4
    cfg.MODEL.FUSION.NAME = "StandInConcatFusion"
    cfg.MODEL.FUSION.OUT_CHANNELS = 4
    cfg.MODEL.BEV_BACKBONE.LAYER_NUMS = [0, 0]
    cfg.MODEL.BEV_BACKBONE.NUM_FILTERS = [8, 8]
    cfg.MODEL.BEV_BACKBONE.NUM_UPSAMPLE_FILTERS = [8, 8]
    cfg.MODEL.DET_HEAD.SHARED_CHANNELS = 8
    cfg.MODEL.DET_HEAD.HEAD_CHANNELS = 8
    cfg.DATASETS.ROOT = str(world)
    cfg.DATASETS.CACHE_DIR = str(tmp_path / "cache")
    cfg.DATASETS.TRAIN = ["nuscenes_v1.0-mini_mini_train"]
    cfg.DATASETS.TEST = [VAL]
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 1
    cfg.SOLVER.MAX_ITER = 2
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.LOG_PERIOD = 1
    cfg.SOLVER.BASE_LR = 1e-3
    path = tmp_path / "tiny_detection.yaml"
    path.write_text(cfg.dump())
    return path


def run_train_net(config, output_dir, *flags):
    args = default_argument_parser().parse_args(
        ["--config-file", str(config), *flags, "OUTPUT_DIR", str(output_dir)])
    return train_net.main(args)


def val_sample_tokens(world):
    from nuscenes import NuScenes
    from nuscenes.utils.splits import create_splits_scenes

    nusc = NuScenes(version="v1.0-mini", dataroot=str(world), verbose=False)
    scenes = set(create_splits_scenes()["mini_val"])
    return {s["token"] for s in nusc.sample
            if nusc.get("scene", s["scene_token"])["name"] in scenes}


def test_eval_only_scores_the_val_split_with_detection_eval(world, tmp_path):
    output = tmp_path / "eval"
    results = run_train_net(write_config(world, tmp_path), output, "--eval-only")

    metrics = results[VAL]
    for key in SCORES:
        assert 0.0 <= metrics[key] <= 1.0, key
    for key in TP_ERRORS:
        assert metrics[key] >= 0.0, key
    inference = output / "inference" / VAL
    with open(inference / "metrics_summary.json") as f:
        summary = json.load(f)
    assert metrics["mAP"] == pytest.approx(summary["mean_ap"])
    assert metrics["NDS"] == pytest.approx(summary["nd_score"])
    with open(inference / "results_nusc.json") as f:
        submitted = json.load(f)["results"]
    assert set(submitted) == val_sample_tokens(world)


def test_training_puts_the_final_evaluation_into_metrics_json(world, tmp_path):
    output = tmp_path / "train"
    run_train_net(write_config(world, tmp_path), output)

    with open(output / "metrics.json") as f:
        records = [json.loads(line) for line in f if line.strip()]
    final = [r for r in records if f"{VAL}/mAP" in r]
    assert len(final) == 1 and final[0] is records[-1]  # evaluated once, after training
    with open(output / "inference" / VAL / "metrics_summary.json") as f:
        summary = json.load(f)
    assert final[0][f"{VAL}/mAP"] == pytest.approx(summary["mean_ap"])
    assert final[0][f"{VAL}/NDS"] == pytest.approx(summary["nd_score"])
    assert f"{VAL}/AP/car" in final[0] and f"{VAL}/mATE" in final[0]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(output))


def test_default_trainer_evaluator_by_dataset_name(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = DefaultTrainer.build_evaluator(cfg, "nuscenes_v1.0-trainval_val")
    assert isinstance(evaluator, NuScenesDetectionEvaluator)
    assert (evaluator.version, evaluator.eval_set) == ("v1.0-trainval", "val")
    assert evaluator.output_dir == os.path.join(str(tmp_path), "inference",
                                                "nuscenes_v1.0-trainval_val")
    with pytest.raises(NotImplementedError, match="kitti_val"):
        DefaultTrainer.build_evaluator(cfg, "kitti_val")
