"""The synthetic world generator writes data that nuscenes-devkit reads, with consistent
geometry between LiDAR, cameras and boxes."""

import hashlib
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
from nuscenes import NuScenes
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import points_in_box, transform_matrix
from nuscenes.utils.splits import create_splits_scenes
from pyquaternion import Quaternion

from clap.data.synthetic import depth_path, generate_dataset
from clap.data.synthetic.assets import AssetFactory
from clap.data.synthetic.constants import (
    CAMERA_CHANNELS,
    CLASS_SPECS,
    CURB_HEIGHT,
    LIDAR_NUM_BEAMS,
)
from clap.data.synthetic.textures import MaterialTable

VERSION = "v1.0-mini"
NUM_SCENES, NUM_SAMPLES, SCALE, NUM_SWEEPS = 2, 3, 0.15, 1


@pytest.fixture(scope="module")
def dataroot(tmp_path_factory):
    # Range noise is off so that geometry comparisons are exact: with 1 cm of noise, points 1 m
    # in front of a camera alone would miss a 1% depth tolerance.
    root = str(tmp_path_factory.mktemp("synthetic_nuscenes"))
    generate_dataset(
        root,
        num_scenes=NUM_SCENES,
        samples_per_scene=NUM_SAMPLES,
        image_scale=SCALE,
        num_sweeps=NUM_SWEEPS,
        seed=3,
        version=VERSION,
        debug_depth=True,
        progress=False,
        lidar_range_noise=0.0,
    )
    return root


@pytest.fixture(scope="module")
def nusc(dataroot):
    return NuScenes(version=VERSION, dataroot=dataroot, verbose=False)


def _lidar_points(nusc, sd_token):
    return LidarPointCloud.from_file(nusc.get_sample_data_path(sd_token))


def _pose(record):
    return transform_matrix(record["translation"], Quaternion(record["rotation"]))


def test_every_sample_has_lidar_and_six_cameras(nusc, dataroot):
    assert len(nusc.scene) == NUM_SCENES
    assert len(nusc.sample) == NUM_SCENES * NUM_SAMPLES
    for sample in nusc.sample:
        assert set(sample["data"]) == {"LIDAR_TOP", *CAMERA_CHANNELS}
        for channel, token in sample["data"].items():
            sd = nusc.get("sample_data", token)
            assert os.path.isfile(os.path.join(dataroot, sd["filename"]))
            if channel.startswith("CAM"):
                assert (sd["width"], sd["height"]) == (240, 135)
                assert sd["timestamp"] == sample["timestamp"]  # synchronised with the LiDAR
                image = cv2.imread(nusc.get_sample_data_path(token))
                assert image.shape == (135, 240, 3)
                assert image.std() > 2  # not a blank image
        points = np.fromfile(
            nusc.get_sample_data_path(sample["data"]["LIDAR_TOP"]), dtype=np.float32
        ).reshape(-1, 5)
        assert len(points) > 15000
        assert np.isfinite(points).all()
        rings = np.unique(points[:, 4])
        assert rings.min() == 0 and rings.max() == LIDAR_NUM_BEAMS - 1
        assert np.all((points[:, 3] >= 0) & (points[:, 3] <= 255))
        assert np.linalg.norm(points[:, :3], axis=1).max() <= 70.5


def test_calibration_is_the_nuscenes_rig_scaled(nusc):
    by_channel = {}
    for record in nusc.calibrated_sensor:
        channel = nusc.get("sensor", record["sensor_token"])["channel"]
        by_channel[channel] = record
    assert set(by_channel) == {"LIDAR_TOP", *CAMERA_CHANNELS}
    front = np.asarray(by_channel["CAM_FRONT"]["camera_intrinsic"])
    # nuScenes CAM_FRONT (n015): fx = 1266.417 px, cx = 816.267 px at 1600 x 900.
    # Scaled as pixel areas (integer pixel centres): c' = s (c + 0.5) - 0.5.
    np.testing.assert_allclose(
        front[0], [1266.417203046554 * 0.15, 0, (816.2670197447984 + 0.5) * 0.15 - 0.5]
    )
    np.testing.assert_allclose(
        by_channel["LIDAR_TOP"]["translation"], [0.9437, 0.0, 1.8402], atol=1e-4
    )
    assert by_channel["LIDAR_TOP"]["camera_intrinsic"] == []


def test_sweeps_between_key_frames(nusc, dataroot):
    for scene in nusc.scene:
        sample = nusc.get("sample", scene["first_sample_token"])
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        chain = [sd]
        while sd["next"]:
            sd = nusc.get("sample_data", sd["next"])
            chain.append(sd)
        sweeps = [r for r in chain if not r["is_key_frame"]]
        assert len(sweeps) == (NUM_SAMPLES - 1) * NUM_SWEEPS
        assert all(r["filename"].startswith("sweeps/LIDAR_TOP/") for r in sweeps)
        stamps = [r["timestamp"] for r in chain]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        # 20 Hz: a sweep 50 ms before its key frame.
        key_stamps = [r["timestamp"] for r in chain if r["is_key_frame"]]
        assert {r["timestamp"] for r in sweeps} == {t - 50000 for t in key_stamps[1:]}
        poses = [nusc.get("ego_pose", r["ego_pose_token"])["translation"] for r in chain]
        assert np.all(np.linalg.norm(np.diff(np.asarray(poses)[:, :2], axis=0), axis=1) > 0)
        for r in sweeps:
            assert os.path.getsize(os.path.join(dataroot, r["filename"])) % 20 == 0


def test_instances_are_tracked(nusc):
    for instance in nusc.instance:
        ann = nusc.get("sample_annotation", instance["first_annotation_token"])
        assert ann["prev"] == ""
        count = 1
        while ann["next"]:
            nxt = nusc.get("sample_annotation", ann["next"])
            assert nxt["prev"] == ann["token"] and nxt["instance_token"] == instance["token"]
            ann = nxt
            count += 1
        assert ann["token"] == instance["last_annotation_token"]
        assert count == instance["nbr_annotations"]
    attributes = {a["token"]: a["name"] for a in nusc.attribute}
    allowed = {
        "car": "vehicle",
        "truck": "vehicle",
        "bus": "vehicle",
        "trailer": "vehicle",
        "construction_vehicle": "vehicle",
        "pedestrian": "pedestrian",
        "motorcycle": "cycle",
        "bicycle": "cycle",
    }
    for ann in nusc.sample_annotation:
        name = category_to_detection_name(ann["category_name"])
        assert name is not None
        names = [attributes[t] for t in ann["attribute_tokens"]]
        if name in allowed:
            assert len(names) == 1 and names[0].split(".")[0] == allowed[name]
        else:
            assert names == []
        assert ann["num_radar_pts"] == 0
        assert ann["visibility_token"] in {"1", "2", "3", "4"}


def test_both_splits_get_scenes(nusc):
    splits = create_splits_scenes()
    names = {s["name"] for s in nusc.scene}
    assert names & set(splits["mini_train"])
    assert names & set(splits["mini_val"])


def test_ego_drives_on_the_drivable_area(nusc):
    for scene in nusc.scene:
        log = nusc.get("log", scene["log_token"])
        mask = nusc.get("map", log["map_token"])["mask"]
        sample = nusc.get("sample", scene["first_sample_token"])
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        assert mask.is_on_mask(pose["translation"][0], pose["translation"][1])[0]


def test_num_lidar_pts_matches_recount(nusc):
    checked = 0
    for sample in nusc.sample:
        token = sample["data"]["LIDAR_TOP"]
        points = _lidar_points(nusc, token).points[:3, :]
        _, boxes, _ = nusc.get_sample_data(token)
        for box in boxes:
            ann = nusc.get("sample_annotation", box.token)
            assert int(points_in_box(box, points).sum()) == ann["num_lidar_pts"]
            checked += ann["num_lidar_pts"] > 0
    assert checked > 20


def test_boxes_sit_on_the_ground(nusc):
    """Boxes stand on the road (z = 0, the drivable area of the map) or on the raised sidewalk
    (z = CURB_HEIGHT); where the ground around a box is one surface, the LiDAR ground there is
    at the box's bottom (a low quantile of the points next to the box: other objects only add
    higher points)."""
    checked = 0
    for sample in nusc.sample:
        scene = nusc.get("scene", sample["scene_token"])
        mask = nusc.get("map", nusc.get("log", scene["log_token"])["map_token"])["mask"]
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        lidar2global = _pose(nusc.get("ego_pose", sd["ego_pose_token"])) @ _pose(
            nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        )
        points = _lidar_points(nusc, sd["token"]).points[:3, :]
        world = (lidar2global[:3, :3] @ points).T + lidar2global[:3, 3]
        for token in sample["anns"]:
            box = nusc.get_box(token)
            bottom = box.center[2] - box.wlh[2] / 2
            # The centre and points 0.5 m around the footprint, in the box frame -> world.
            half_l, half_w = box.wlh[1] / 2, box.wlh[0] / 2
            grid_x = np.linspace(-half_l - 0.5, half_l + 0.5, 7)
            grid_y = np.linspace(-half_w - 0.5, half_w + 0.5, 3)
            local = np.array([[x, y, 0.0] for x in grid_x for y in grid_y])
            around = (local @ box.rotation_matrix.T + box.center)[:, :2].T
            on_road = mask.is_on_mask(around[0], around[1])
            if on_road.all() != on_road.any():
                continue  # next to a curb
            assert abs(bottom - (0.0 if on_road[0] else CURB_HEIGHT)) < 1e-6
            rel = (world - box.center) @ box.rotation_matrix  # box frame
            outside = (np.abs(rel[:, 0]) > half_l + 0.05) | (np.abs(rel[:, 1]) > half_w + 0.05)
            ring = (
                outside
                & (np.abs(rel[:, 0]) < half_l + 0.4)
                & (np.abs(rel[:, 1]) < half_w + 0.4)
                & (np.abs(world[:, 2] - bottom) < 0.3)
            )
            if ring.sum() < 8:
                continue
            ground = np.quantile(world[ring, 2], 0.1)
            assert abs(ground - bottom) < 0.04, nusc.get("sample_annotation", token)
            checked += 1
    assert checked > 20


def test_lidar_agrees_with_camera_depth(nusc, dataroot):
    agree, total = 0, 0
    for sample in nusc.sample:
        lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        points = _lidar_points(nusc, lidar_sd["token"]).points[:3, :]
        lidar2global = _pose(nusc.get("ego_pose", lidar_sd["ego_pose_token"])) @ _pose(
            nusc.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"])
        )
        for channel in CAMERA_CHANNELS:
            cam_sd = nusc.get("sample_data", sample["data"][channel])
            calib = nusc.get("calibrated_sensor", cam_sd["calibrated_sensor_token"])
            cam2global = _pose(nusc.get("ego_pose", cam_sd["ego_pose_token"])) @ _pose(calib)
            lidar2cam = np.linalg.inv(cam2global) @ lidar2global
            cam = lidar2cam[:3, :3] @ points + lidar2cam[:3, 3:4]
            depth = np.load(os.path.join(dataroot, depth_path(cam_sd["filename"])))
            h, w = depth.shape
            front = cam[2] > 1.0
            uv = np.asarray(calib["camera_intrinsic"]) @ cam[:, front]
            u, v, z = uv[0] / uv[2], uv[1] / uv[2], cam[2, front]
            # Bilinear interpolation of inverse depth between pixel centres (exact on planes).
            x, y = u, v  # pixel centres at integers
            inside = (x >= 0) & (x < w - 1) & (y >= 0) & (y < h - 1)
            x, y, z = x[inside], y[inside], z[inside]
            x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
            fx, fy = x - x0, y - y0
            corners = np.stack(
                [depth[y0, x0], depth[y0, x0 + 1], depth[y0 + 1, x0], depth[y0 + 1, x0 + 1]]
            )
            weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
            inv = np.sum(weights / corners, axis=0)
            with np.errstate(divide="ignore"):
                camera_depth = 1.0 / inv
            # Something nearer than the point in the pixel's neighbourhood: the camera does not
            # see the point (occluded from the camera's viewpoint).
            occluded = corners.min(axis=0) < z * 0.99
            good = np.abs(camera_depth - z) <= 0.01 * z
            agree += int((good & ~occluded).sum())
            total += int((~occluded).sum())
    assert total > 5000
    assert agree / total >= 0.95, agree / total


def test_detection_eval_of_ground_truth_is_perfect(nusc, tmp_path):
    splits = create_splits_scenes()
    val_scenes = {s["token"] for s in nusc.scene if s["name"] in splits["mini_val"]}
    attribute_names = {a["token"]: a["name"] for a in nusc.attribute}
    results = {}
    for sample in nusc.sample:
        if sample["scene_token"] not in val_scenes:
            continue
        boxes = []
        for token in sample["anns"]:
            ann = nusc.get("sample_annotation", token)
            if ann["num_lidar_pts"] == 0:
                continue
            velocity = nusc.box_velocity(token)[:2]
            boxes.append(
                {
                    "sample_token": sample["token"],
                    "translation": ann["translation"],
                    "size": ann["size"],
                    "rotation": ann["rotation"],
                    "velocity": [float(v) if np.isfinite(v) else 0.0 for v in velocity],
                    "detection_name": category_to_detection_name(ann["category_name"]),
                    "detection_score": 1.0,
                    "attribute_name": "".join(attribute_names[t] for t in ann["attribute_tokens"]),
                }
            )
        results[sample["token"]] = boxes
    result_path = tmp_path / "results.json"
    meta = {
        "use_camera": False,
        "use_lidar": True,
        "use_radar": False,
        "use_map": False,
        "use_external": False,
    }
    result_path.write_text(json.dumps({"meta": meta, "results": results}))
    evaluation = DetectionEval(
        nusc,
        config_factory("detection_cvpr_2019"),
        str(result_path),
        eval_set="mini_val",
        output_dir=str(tmp_path / "eval"),
        verbose=False,
    )
    metrics, _ = evaluation.evaluate()
    present = {b.detection_name for b in evaluation.gt_boxes.all}
    assert len(present) >= 5
    aps = metrics.serialize()["mean_dist_aps"]
    for name in present:
        assert aps[name] >= 0.99, (name, aps[name])


@pytest.mark.parametrize("class_name", sorted(CLASS_SPECS))
def test_object_mesh_fills_its_box(class_name):
    factory = AssetFactory(MaterialTable())
    rng = np.random.default_rng(0)
    width, length, height = CLASS_SPECS[class_name]["size"]
    for rider in (False, True):
        mesh = factory.object_mesh(class_name, (length * 1.1, width * 0.9, height), rng, rider)
        lo, hi = mesh.bounds
        np.testing.assert_allclose(lo, [-length * 0.55, -width * 0.45, 0.0], atol=1e-9)
        np.testing.assert_allclose(hi, [length * 0.55, width * 0.45, height], atol=1e-9)
        assert len(mesh.faces) > 12  # more than a plain box


def _tree_digest(root):
    digest = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digest


def test_same_arguments_give_identical_files(tmp_path):
    kwargs = dict(
        num_scenes=1,
        samples_per_scene=2,
        image_scale=0.05,
        num_sweeps=1,
        version=VERSION,
        progress=False,
    )
    generate_dataset(str(tmp_path / "a"), seed=11, **kwargs)
    generate_dataset(str(tmp_path / "b"), seed=11, **kwargs)
    generate_dataset(str(tmp_path / "c"), seed=12, **kwargs)
    a, b, c = (_tree_digest(str(tmp_path / k)) for k in "abc")
    assert len(a) == 2 + 6 * 2 + 1 + 1 + 13  # point clouds, images, sweep, map, tables
    assert a == b
    assert a != c


def test_command_line_tool(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "make_synthetic_nuscenes",
        os.path.join(os.path.dirname(__file__), "..", "tools", "make_synthetic_nuscenes.py"),
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = str(tmp_path / "data")
    args = [
        "--out",
        out,
        "--scenes",
        "1",
        "--samples-per-scene",
        "1",
        "--image-scale",
        "0.02",
        "--sweeps",
        "0",
        "--seed",
        "5",
    ]
    tool.main(args)
    nusc = NuScenes(version=VERSION, dataroot=out, verbose=False)
    assert len(nusc.sample) == 1 and nusc.scene[0]["name"] == "scene-0061"
    with pytest.raises(FileExistsError):
        tool.main(args)
    tool.main(args + ["--overwrite"])
