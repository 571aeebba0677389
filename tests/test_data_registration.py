"""Registration of nuScenes-format roots, the sample cache and TRAIN_FRACTION."""

import json
import os

import numpy as np
import pytest
from nuscenes.eval.detection.constants import DETECTION_NAMES
from nuscenes.eval.detection.utils import category_to_detection_name
from nuscenes.nuscenes import NuScenes
from nuscenes_frame_helpers import (
    FRAME_ROOT,
    FRAME_SAMPLE_TOKEN,
    FRAME_VERSION,
    copy_frame,
    small_cfg,
)

import clap.data.datasets.nuscenes as nuscenes_data
from clap.data.box_ops import boxes_lidar_to_global
from clap.data.build import get_dataset_dicts
from clap.data.catalog import DatasetCatalog
from clap.data.datasets.nuscenes import (
    CAMERA_CHANNELS,
    CATEGORY_TO_DETECTION_CLASS,
    DETECTION_CLASSES,
    available_splits,
    load_nuscenes_dicts,
    register_from_config,
    select_fraction,
)


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    """Every test starts without the in-process cache, so disk behaviour is what is tested."""
    nuscenes_data._LOADED_CACHES.clear()
    yield
    nuscenes_data._LOADED_CACHES.clear()


def test_detection_classes_match_the_devkit():
    assert DETECTION_CLASSES[:3] == ("car", "truck", "construction_vehicle")
    assert sorted(DETECTION_CLASSES) == sorted(DETECTION_NAMES)
    for category, detection_class in CATEGORY_TO_DETECTION_CLASS.items():
        assert category_to_detection_name(category) == detection_class
    assert category_to_detection_name("human.pedestrian.wheelchair") is None
    assert "human.pedestrian.wheelchair" not in CATEGORY_TO_DETECTION_CLASS


def test_register_from_config_names_and_dict_contents(tmp_path):
    cfg = small_cfg(FRAME_ROOT, tmp_path / "cache")
    names = register_from_config(cfg)
    assert "nuscenes_v1.0-mini_mini_train" in names and "nuscenes_v1.0-mini_all" in names
    assert "nuscenes_v1.0-mini_mini_val" not in names  # scene-0061 is a mini_train scene
    assert DatasetCatalog.get("nuscenes_v1.0-mini_train") != []

    (sample,) = DatasetCatalog.get("nuscenes_v1.0-mini_mini_train")
    assert sample["sample_token"] == FRAME_SAMPLE_TOKEN
    assert os.path.isfile(sample["lidar_path"]) and sample["sweeps"] == []
    assert sorted(sample["cameras"]) == sorted(CAMERA_CHANNELS)
    for camera in sample["cameras"].values():
        assert os.path.isfile(camera["path"]) and camera["image_size"] == (900, 1600)
        projection = np.eye(4)
        projection[:3, :3] = camera["intrinsics"]
        np.testing.assert_allclose(camera["lidar2img"], projection @ camera["lidar2cam"])
    assert sample["gt_boxes"].shape == (69, 9) and sample["gt_labels"].shape == (69,)
    assert sample["num_lidar_pts"].shape == (69,) and sample["num_lidar_pts"].max() > 0
    assert set(sample["gt_labels"].tolist()) <= set(range(len(DETECTION_CLASSES)))
    assert np.all(sample["gt_boxes"][:, 3:6] > 0)
    assert np.all(sample["gt_boxes"][:, 7:9] == 0)  # velocities of this frame are unknown (NaN)
    # The front camera looks forward: its optical axis (camera z) is the ego frame's +x.
    ego2front = sample["cameras"]["CAM_FRONT"]["lidar2cam"] @ np.linalg.inv(sample["lidar2ego"])
    assert ego2front[2, 0] > 0.99


def test_boxes_round_trip_to_the_devkit_boxes(tmp_path):
    (sample,) = load_nuscenes_dicts(str(FRAME_ROOT), FRAME_VERSION, "all", str(tmp_path))
    nusc = NuScenes(version=FRAME_VERSION, dataroot=str(FRAME_ROOT), verbose=False)
    record = nusc.get("sample", FRAME_SAMPLE_TOKEN)
    devkit_boxes = [nusc.get_box(token) for token in record["anns"]]
    labelled = [b for b in devkit_boxes if b.name in CATEGORY_TO_DETECTION_CLASS]
    assert len(labelled) == len(sample["gt_boxes"])

    global_boxes = boxes_lidar_to_global(
        sample["gt_boxes"], sample["lidar2ego"], sample["ego2global"]
    )
    for index, box in enumerate(labelled):
        np.testing.assert_allclose(global_boxes["centers"][index], box.center, atol=1e-4)
        np.testing.assert_allclose(global_boxes["sizes_wlh"][index], box.wlh, atol=1e-4)
        np.testing.assert_allclose(global_boxes["rotations"][index], box.rotation_matrix, atol=1e-4)
        expected_label = DETECTION_CLASSES.index(CATEGORY_TO_DETECTION_CLASS[box.name])
        assert sample["gt_labels"][index] == expected_label


def _count_devkit_loads(monkeypatch):
    import nuscenes.nuscenes

    calls = []
    original = nuscenes.nuscenes.NuScenes

    def counting(*args, **kwargs):
        calls.append(kwargs.get("dataroot"))
        return original(*args, **kwargs)

    monkeypatch.setattr(nuscenes.nuscenes, "NuScenes", counting)
    return calls


def test_cache_is_reused_and_rebuilt_when_stale(tmp_path, monkeypatch):
    root = copy_frame(tmp_path / "root")
    cache_dir = tmp_path / "cache"
    calls = _count_devkit_loads(monkeypatch)

    first = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(cache_dir))
    assert len(calls) == 1 and len(os.listdir(cache_dir)) == 1
    nuscenes_data._LOADED_CACHES.clear()
    second = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(cache_dir))
    assert len(calls) == 1  # read from the cache file
    np.testing.assert_array_equal(first[0]["gt_boxes"], second[0]["gt_boxes"])

    # Edit a table: the cache is stale and rebuilt, with the new content.
    annotations_path = root / FRAME_VERSION / "sample_annotation.json"
    annotations = json.loads(annotations_path.read_text())
    annotations[0]["size"] = [1.0, 2.0, 3.0]
    annotations_path.write_text(json.dumps(annotations))
    third = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(cache_dir))
    assert len(calls) == 2
    assert third[0]["gt_boxes"][0, 3:6].tolist() == [2.0, 1.0, 3.0]  # (l, w, h) from (w, l, h)

    # A cache written by another format version is rebuilt too.
    monkeypatch.setattr(nuscenes_data, "CACHE_FORMAT", "another-format")
    nuscenes_data._LOADED_CACHES.clear()
    load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(cache_dir))
    assert len(calls) == 3


def test_root_outside_official_splits_has_all_and_custom_splits(tmp_path):
    root = copy_frame(tmp_path / "root")
    scene_path = root / FRAME_VERSION / "scene.json"
    scenes = json.loads(scene_path.read_text())
    scenes[0]["name"] = "synthetic-0000"
    scene_path.write_text(json.dumps(scenes))
    assert available_splits(str(root), FRAME_VERSION) == ["all"]
    (sample,) = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(tmp_path / "cache"))
    assert sample["scene_name"] == "synthetic-0000"

    (root / FRAME_VERSION / "splits.json").write_text(
        json.dumps({"train": ["synthetic-0000"], "val": []})
    )
    assert available_splits(str(root), FRAME_VERSION) == ["train", "all"]
    assert len(load_nuscenes_dicts(str(root), FRAME_VERSION, "train", str(tmp_path / "c"))) == 1
    assert load_nuscenes_dicts(str(root), FRAME_VERSION, "val", str(tmp_path / "c")) == []
    with pytest.raises(KeyError, match="Unknown split 'nonexistent'"):
        load_nuscenes_dicts(str(root), FRAME_VERSION, "nonexistent", str(tmp_path / "c"))


def test_each_config_reads_its_own_root_under_a_name_registered_before(tmp_path):
    """A process that trains on one root and evaluates on another (or a test suite) must not
    read the first root's samples under the second config's data set name."""
    (first,) = get_dataset_dicts("nuscenes_v1.0-mini_all", small_cfg(FRAME_ROOT, tmp_path / "a"))
    assert first["scene_name"] == "scene-0061"
    root = copy_frame(tmp_path / "root")
    scene_path = root / FRAME_VERSION / "scene.json"
    scenes = json.loads(scene_path.read_text())
    scenes[0]["name"] = "synthetic-0000"
    scene_path.write_text(json.dumps(scenes))
    (second,) = get_dataset_dicts("nuscenes_v1.0-mini_all", small_cfg(root, tmp_path / "b"))
    assert second["scene_name"] == "synthetic-0000"
    assert second["lidar_path"].startswith(str(root))


def test_select_fraction_is_seeded_nested_and_sized():
    dicts = [{"sample_token": str(i)} for i in range(400)]
    five = select_fraction(dicts, 0.05, seed=3)
    assert len(five) == 20
    assert five == select_fraction(dicts, 0.05, seed=3)
    assert five != select_fraction(dicts, 0.05, seed=4)
    one = select_fraction(dicts, 0.01, seed=3)
    assert len(one) == 4 and all(d in five for d in one)
    tokens = [int(d["sample_token"]) for d in five]
    assert tokens == sorted(tokens)  # input order is kept
    assert len(select_fraction(dicts, 1e-6, seed=0)) == 1
    assert select_fraction(dicts, 1.0, seed=0) == dicts
    with pytest.raises(ValueError, match="TRAIN_FRACTION"):
        select_fraction(dicts, 0.0, seed=0)


def test_train_fraction_from_config_applies_to_train_sets(tmp_path, monkeypatch):
    cfg = small_cfg(FRAME_ROOT, tmp_path / "cache")
    cfg.DATASETS.TRAIN = ("nuscenes_v1.0-mini_mini_train",)
    cfg.DATASETS.TRAIN_FRACTION = 0.01
    register_from_config(cfg)
    # One sample in the split: a 1% subset still keeps one.
    assert len(DatasetCatalog.get("nuscenes_v1.0-mini_mini_train")) == 1

    many = [{"sample_token": str(i)} for i in range(300)]
    monkeypatch.setattr(nuscenes_data, "load_nuscenes_dicts", lambda *args, **kwargs: many)
    cfg.DATASETS.TRAIN_FRACTION, cfg.DATASETS.TRAIN_FRACTION_SEED = 0.05, 7
    register_from_config(cfg)
    subset = DatasetCatalog.get("nuscenes_v1.0-mini_mini_train")
    assert len(subset) == 15 and subset == select_fraction(many, 0.05, 7)
    assert len(DatasetCatalog.get("nuscenes_v1.0-mini_all")) == 300

    cfg.DATASETS.TRAIN_FRACTION = 1.5
    with pytest.raises(ValueError, match="TRAIN_FRACTION must be in"):
        register_from_config(cfg)


def test_sweeps_follow_the_prev_chain_with_time_lag_and_transform(tmp_path):
    root = copy_frame(tmp_path / "root")
    tables = root / FRAME_VERSION
    sample_data = json.loads((tables / "sample_data.json").read_text())
    ego_poses = json.loads((tables / "ego_pose.json").read_text())
    key = next(r for r in sample_data if "LIDAR_TOP" in r["filename"])
    key_pose = next(p for p in ego_poses if p["token"] == key["ego_pose_token"])
    # One earlier sweep: 50 ms before, the car 1 m further back along global x.
    sweep_pose = dict(key_pose, token="sweep-pose", timestamp=key["timestamp"] - 50000)
    sweep_pose["translation"] = [key_pose["translation"][0] - 1.0, *key_pose["translation"][1:]]
    sweep = dict(
        key,
        token="sweep-record",
        ego_pose_token="sweep-pose",
        timestamp=key["timestamp"] - 50000,
        is_key_frame=False,
        prev="",
        next=key["token"],
    )
    key["prev"] = "sweep-record"
    (tables / "sample_data.json").write_text(json.dumps(sample_data + [sweep]))
    (tables / "ego_pose.json").write_text(json.dumps(ego_poses + [sweep_pose]))

    (sample,) = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(tmp_path / "cache"))
    (entry,) = sample["sweeps"]
    assert entry["path"] == str(root / key["filename"])
    assert entry["time_lag"] == pytest.approx(0.05)
    global2lidar = np.linalg.inv(sample["ego2global"] @ sample["lidar2ego"])
    np.testing.assert_allclose(entry["sweep2lidar"][:3, :3], np.eye(3), atol=1e-9)
    expected = global2lidar[:3, :3] @ np.array([-1.0, 0.0, 0.0])
    np.testing.assert_allclose(entry["sweep2lidar"][:3, 3], expected, atol=1e-9)
    assert len(sample["cameras"]) == 6  # the sweep is not a key-frame channel
