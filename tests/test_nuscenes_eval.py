import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from nuscenes import NuScenes
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion

from clap.config import get_cfg
from clap.data.classes import DETECTION_CLASSES
from clap.evaluation import (
    DatasetEvaluator,
    NuScenesDetectionEvaluator,
    build_evaluator,
    inference_on_dataset,
    lidar_boxes_to_global,
    parse_nuscenes_dataset_name,
    rotation_matrix_to_quaternion,
)
from clap.modeling.det_head import circle_nms

FRAME = os.path.join(os.path.dirname(__file__), "data", "nuscenes_frame")


@pytest.fixture
def one_thread():
    """Run a many-iteration loop on one CPU thread (and restore the count): on a shared
    2-core machine two threads mostly wait for each other on these small tensors."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def frame():
    """The real frame's detection boxes in the global frame (devkit) and in the LiDAR frame."""
    nusc = NuScenes(version="v1.0-mini", dataroot=FRAME, verbose=False)
    sample = nusc.sample[0]
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    calib = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", lidar["ego_pose_token"])
    global_boxes, lidar_boxes, labels, num_points = [], [], [], []
    for token in sample["anns"]:
        annotation = nusc.get("sample_annotation", token)
        name = category_to_detection_name(annotation["category_name"])
        if name is None:
            continue
        box = nusc.get_box(token)
        global_boxes.append(box.copy())
        box.translate(-np.array(pose["translation"]))
        box.rotate(Quaternion(pose["rotation"]).inverse)
        box.translate(-np.array(calib["translation"]))
        box.rotate(Quaternion(calib["rotation"]).inverse)
        rotation = box.rotation_matrix
        width, length, height = box.wlh
        yaw = np.arctan2(rotation[1, 0], rotation[0, 0])
        lidar_boxes.append([*box.center, length, width, height, yaw, 0.0, 0.0])
        labels.append(DETECTION_CLASSES.index(name))
        num_points.append(annotation["num_lidar_pts"] + annotation["num_radar_pts"])
    return {
        "nusc": nusc,
        "sample_token": sample["token"],
        "ego_xy": np.array(pose["translation"][:2]),
        "global_boxes": global_boxes,
        "lidar_boxes": np.array(lidar_boxes),
        "labels": np.array(labels),
        "num_points": np.array(num_points),
        "lidar2ego": transform_matrix(calib["translation"], Quaternion(calib["rotation"])),
        "ego2global": transform_matrix(pose["translation"], Quaternion(pose["rotation"])),
    }


def batch_of(frame):
    return {"lidar2ego": torch.from_numpy(frame["lidar2ego"])[None],
            "ego2global": torch.from_numpy(frame["ego2global"])[None],
            "sample_token": [frame["sample_token"]]}


def test_lidar_to_global_round_trips_the_devkit_boxes(frame):
    converted = lidar_boxes_to_global(frame["lidar_boxes"], frame["lidar2ego"],
                                      frame["ego2global"])
    expected = frame["global_boxes"]
    assert len(expected) == 69
    np.testing.assert_allclose(converted["translation"], [b.center for b in expected], atol=1e-4)
    np.testing.assert_allclose(converted["size"], [b.wlh for b in expected], atol=1e-4)
    for quaternion, box in zip(converted["rotation"], expected):
        reference = box.orientation.elements
        sign = 1.0 if np.dot(quaternion, reference) >= 0 else -1.0
        np.testing.assert_allclose(quaternion, sign * reference, atol=1e-4)


def test_velocity_is_rotated_into_the_global_frame(frame):
    boxes = frame["lidar_boxes"][:1].copy()
    boxes[0, 7:9] = [3.0, -1.0]
    converted = lidar_boxes_to_global(boxes, frame["lidar2ego"], frame["ego2global"])
    rotation = (frame["ego2global"] @ frame["lidar2ego"])[:3, :3]
    np.testing.assert_allclose(converted["velocity"][0], (rotation @ [3.0, -1.0, 0.0])[:2],
                               atol=1e-9)
    # A box heading along its velocity keeps doing so in the global frame.
    boxes[0, 6] = np.arctan2(-1.0, 3.0)
    converted = lidar_boxes_to_global(boxes, frame["lidar2ego"], frame["ego2global"])
    heading = Quaternion(converted["rotation"][0]).rotate([1.0, 0.0, 0.0])[:2]
    velocity = converted["velocity"][0]
    assert np.dot(heading, velocity) / np.linalg.norm(velocity) == pytest.approx(1.0, abs=1e-3)


def test_rotation_matrix_to_quaternion_matches_pyquaternion():
    rng = np.random.default_rng(0)
    quaternions = [Quaternion(q / np.linalg.norm(q)) for q in rng.normal(size=(50, 4))]
    # Include rotations near 180 degrees about each axis (small trace).
    quaternions += [Quaternion(axis=axis, angle=np.pi - 1e-3) for axis in np.eye(3)]
    matrices = np.stack([q.rotation_matrix for q in quaternions])
    result = rotation_matrix_to_quaternion(matrices)
    for q, r in zip(quaternions, result):
        expected = q.elements * (1 if q.elements[0] >= 0 else -1)
        np.testing.assert_allclose(r, expected, atol=1e-9)


def test_default_nms_radii_keep_every_true_box_of_the_real_frame(frame):
    # Barriers stand side by side (two 0.62 m apart here): the NMS must not remove true objects.
    keep = frame["num_points"] > 0
    boxes = torch.from_numpy(frame["lidar_boxes"][keep])
    labels = torch.from_numpy(frame["labels"][keep])
    radii = torch.tensor(get_cfg().MODEL.DET_HEAD.NMS_RADIUS)
    kept = circle_nms(boxes[:, :2], torch.linspace(1.0, 0.5, len(labels)), labels, radii)
    assert len(kept) == len(labels)


def _evaluate_ground_truth(frame, output_dir, **evaluator_args):
    """Metrics of the boxes the devkit keeps as ground truth (those with points), submitted as
    predictions."""
    keep = frame["num_points"] > 0
    evaluator = NuScenesDetectionEvaluator(
        dataroot=FRAME, version="v1.0-mini", eval_set="mini_train", output_dir=str(output_dir),
        **evaluator_args,
    )
    evaluator.reset()
    evaluator.process(batch_of(frame), [{
        "sample_token": frame["sample_token"],
        "boxes": torch.from_numpy(frame["lidar_boxes"][keep]),
        "scores": torch.linspace(1.0, 0.5, int(keep.sum())),
        "labels": torch.from_numpy(frame["labels"][keep]),
    }])
    return evaluator.evaluate()


def test_ground_truth_as_predictions_scores_full_ap(frame, tmp_path):
    # Submit the boxes the devkit keeps as ground truth (it drops those without points).
    keep = frame["num_points"] > 0
    metrics = _evaluate_ground_truth(frame, tmp_path, modalities=("lidar",))

    class_range = config_factory("detection_cvpr_2019").class_range
    ego_distance = np.array([np.linalg.norm(b.center[:2] - frame["ego_xy"])
                             for b in frame["global_boxes"]])
    present = {DETECTION_CLASSES[label] for label, distance, points in
               zip(frame["labels"], ego_distance, frame["num_points"])
               if points > 0 and distance < class_range[DETECTION_CLASSES[label]]}
    assert present == {"car", "truck", "barrier", "pedestrian", "traffic_cone"}
    for name in DETECTION_CLASSES:
        if name in present:
            assert metrics[f"AP/{name}"] >= 0.99
        else:
            assert metrics[f"AP/{name}"] == 0.0
    assert metrics["mAP"] == pytest.approx(len(present) / len(DETECTION_CLASSES), abs=1e-3)
    assert metrics["mAP_classes_with_gt"] == pytest.approx(1.0, abs=1e-3)
    assert 0 < metrics["NDS"] <= 1
    assert {"mATE", "mASE", "mAOE", "mAVE", "mAAE"} <= set(metrics)

    with open(tmp_path / "results_nusc.json") as f:
        submission = json.load(f)
    assert submission["meta"]["use_lidar"] and not submission["meta"]["use_camera"]
    entries = submission["results"][frame["sample_token"]]
    assert len(entries) == int(keep.sum())
    assert set(entries[0]) == {"sample_token", "translation", "size", "rotation", "velocity",
                               "detection_name", "detection_score", "attribute_name"}
    with open(tmp_path / "metrics_summary.json") as f:
        summary = json.load(f)
    assert summary["mean_ap"] == pytest.approx(metrics["mAP"])
    assert summary["nd_score"] == pytest.approx(metrics["NDS"])
    for name in present:
        errors = summary["label_tp_errors"][name]
        assert errors["trans_err"] < 1e-3 and errors["scale_err"] < 1e-3
        if name != "traffic_cone":
            assert errors["orient_err"] < 1e-3
        if name not in ("barrier", "traffic_cone"):
            assert errors["attr_err"] < 1e-3  # at rest: parked / standing, as annotated


def test_max_range_leaves_farther_boxes_out_of_the_evaluation(frame, tmp_path):
    # The ground truth submitted as predictions, evaluated with every class range capped at
    # 15 m: the classes with a kept box nearer than that score AP 1, the others have no ground
    # truth left and score 0.
    cap = 15.0
    metrics = _evaluate_ground_truth(frame, tmp_path, max_range=cap)

    class_range = config_factory("detection_cvpr_2019").class_range
    ego_distance = np.array([np.linalg.norm(b.center[:2] - frame["ego_xy"])
                             for b in frame["global_boxes"]])
    near = {DETECTION_CLASSES[label] for label, distance, points in
            zip(frame["labels"], ego_distance, frame["num_points"])
            if points > 0 and distance < min(cap, class_range[DETECTION_CLASSES[label]])}
    assert near and len(near) < 5  # the uncapped evaluation has 5 classes (test above)
    for name in DETECTION_CLASSES:
        assert metrics[f"AP/{name}"] == (pytest.approx(1.0, abs=0.01) if name in near else 0.0)


def test_negative_max_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="EVAL_MAX_RANGE"):
        NuScenesDetectionEvaluator(dataroot=FRAME, version="v1.0-mini", eval_set="mini_train",
                                   output_dir=str(tmp_path), max_range=-1.0)


def test_evaluation_fails_clearly_without_every_sample(tmp_path):
    evaluator = NuScenesDetectionEvaluator(
        dataroot=FRAME, version="v1.0-mini", eval_set="mini_train", output_dir=str(tmp_path))
    evaluator.process(
        {"lidar2ego": torch.eye(4, dtype=torch.float64)[None],
         "ego2global": torch.eye(4, dtype=torch.float64)[None]},
        [{"sample_token": "not_a_sample", "boxes": torch.zeros(0, 9), "scores": torch.zeros(0),
          "labels": torch.zeros(0, dtype=torch.long)}],
    )
    with pytest.raises(RuntimeError, match="mini_train"):
        evaluator.evaluate()


def test_dataset_names_and_build_evaluator(tmp_path):
    assert parse_nuscenes_dataset_name("nuscenes_v1.0-mini_val", "x") == ("v1.0-mini", "mini_val")
    assert parse_nuscenes_dataset_name("nuscenes_v1.0-mini_mini_train", "x") == (
        "v1.0-mini", "mini_train")
    assert parse_nuscenes_dataset_name("nuscenes_v1.0-trainval_val", "x") == (
        "v1.0-trainval", "val")
    assert parse_nuscenes_dataset_name("nuscenes_val", "v1.0-trainval") == (
        "v1.0-trainval", "val")

    cfg = get_cfg()
    cfg.DATASETS.ROOT = FRAME
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.MODEL.MODALITIES = ["camera"]
    evaluator = build_evaluator(cfg, "nuscenes_v1.0-mini_train")
    assert isinstance(evaluator, NuScenesDetectionEvaluator)
    assert (evaluator.dataroot, evaluator.version, evaluator.eval_set) == (
        FRAME, "v1.0-mini", "mini_train")
    assert evaluator.output_dir == os.path.join(str(tmp_path), "inference",
                                                "nuscenes_v1.0-mini_train")
    assert evaluator.meta["use_camera"] and not evaluator.meta["use_lidar"]
    assert build_evaluator(cfg, "nuscenes_v1.0-mini_val", "elsewhere").output_dir == "elsewhere"
    with pytest.raises(KeyError, match="kitti_val"):
        build_evaluator(cfg, "kitti_val")


class _RecordingEvaluator(DatasetEvaluator):
    def reset(self):
        self.seen = []

    def process(self, inputs, outputs):
        self.seen.append((inputs, outputs))

    def evaluate(self):
        return {"batches": len(self.seen)}


class _ModeCheckingModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))

    def forward(self, batch):
        assert not self.training
        assert not torch.is_grad_enabled()
        return [batch * self.weight]


def test_inference_on_dataset_runs_in_eval_mode_and_restores_training():
    model = _ModeCheckingModel().train()
    evaluator = _RecordingEvaluator()
    result = inference_on_dataset(model, [torch.ones(1), torch.zeros(1)], evaluator)
    assert result == {"batches": 2}
    assert model.training
    assert not evaluator.seen[0][1][0].requires_grad

    model.eval()
    inference_on_dataset(model, [torch.ones(1)], evaluator)
    assert not model.training


def _overfit_tool():
    path = os.path.join(os.path.dirname(__file__), os.pardir, "tools", "overfit_detection.py")
    spec = importlib.util.spec_from_file_location("overfit_detection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_detector_overfits_the_real_frame(tmp_path, one_thread):
    # A shortened tools/overfit_detection.py (coarser 0.8 m grid, 80 iterations instead of 300).
    # The frame's ceiling is mAP 0.5 (5 of the 10 classes keep ground truth after the filters).
    tool = _overfit_tool()
    metrics = tool.run_overfit(tool.detection_config(cell_size=0.8, channels=16), FRAME,
                               iterations=80, output_dir=str(tmp_path), log_period=0)
    assert metrics["mAP"] >= 0.4
    assert metrics["mAP_classes_with_gt"] >= 0.8
    assert metrics["AP/car"] >= 0.8
    assert (tmp_path / "results_nusc.json").exists()
