"""Bad input: each error names the file or token and what was expected."""

import json
import os

import pytest
from nuscenes_frame_helpers import (
    FRAME_ROOT,
    FRAME_SAMPLE_TOKEN,
    FRAME_VERSION,
    copy_frame,
    small_cfg,
)

from clap.data.datasets.nuscenes import (
    load_nuscenes_dicts,
    register_all_nuscenes,
    register_from_config,
)
from clap.data.mapper import build_mapper


def test_missing_root(tmp_path):
    missing = str(tmp_path / "no_such_root")
    with pytest.raises(FileNotFoundError, match="no_such_root.*does not exist.*version folder"):
        load_nuscenes_dicts(missing, FRAME_VERSION, "all", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        register_from_config(small_cfg(missing, tmp_path / "cache"))


def test_missing_version_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load_nuscenes_dicts(str(FRAME_ROOT), "v1.0-trainval", "train", str(tmp_path))
    message = str(error.value)
    assert os.path.join(str(FRAME_ROOT), "v1.0-trainval") in message
    assert "scene.json" in message and "['v1.0-mini']" in message
    with pytest.raises(FileNotFoundError, match="No version folder"):
        register_all_nuscenes(str(tmp_path))


def _frame_copy_dict(tmp_path):
    root = copy_frame(tmp_path / "root")
    (dataset_dict,) = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(tmp_path / "c"))
    return root, dataset_dict


def test_pcd_bin_size_not_a_multiple_of_five_floats(tmp_path):
    root, dataset_dict = _frame_copy_dict(tmp_path)
    with open(dataset_dict["lidar_path"], "ab") as f:
        f.write(b"\0" * 8)  # two extra float32
    mapper = build_mapper(small_cfg(root, tmp_path / "c"), is_train=False)
    with pytest.raises(ValueError) as error:
        mapper(dataset_dict)
    message = str(error.value)
    assert dataset_dict["lidar_path"] in message
    assert "not a multiple of 20" in message and "5 float32" in message


def test_missing_image(tmp_path):
    root, dataset_dict = _frame_copy_dict(tmp_path)
    image_path = dataset_dict["cameras"]["CAM_BACK_LEFT"]["path"]
    os.remove(image_path)
    mapper = build_mapper(small_cfg(root, tmp_path / "c"), is_train=True)
    with pytest.raises(FileNotFoundError, match="image file") as error:
        mapper(dataset_dict)
    assert image_path in str(error.value) and "not found" in str(error.value)


def test_sample_without_lidar_top(tmp_path):
    root = copy_frame(tmp_path / "root")
    sample_data_path = root / FRAME_VERSION / "sample_data.json"
    records = json.loads(sample_data_path.read_text())
    records = [r for r in records if "LIDAR_TOP" not in r["filename"]]
    sample_data_path.write_text(json.dumps(records))
    with pytest.raises(ValueError) as error:
        load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(tmp_path / "cache"))
    message = str(error.value)
    assert FRAME_SAMPLE_TOKEN in message and "no LIDAR_TOP" in message
    assert "CAM_FRONT" in message  # the channels that are there


def test_camera_missing_from_sample(tmp_path):
    root, dataset_dict = _frame_copy_dict(tmp_path)
    cfg = small_cfg(root, tmp_path / "c", INPUT__CAMERAS=["CAM_FRONT", "CAM_TOP"])
    with pytest.raises(KeyError, match=f"{FRAME_SAMPLE_TOKEN} has no camera CAM_TOP"):
        build_mapper(cfg, is_train=False)(dataset_dict)


def _collect_warnings(logger_name):
    """A handler collecting the warnings of `logger_name` (remove it with removeHandler)."""
    import logging

    class Collect(logging.Handler):
        messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logging.getLogger(logger_name).addHandler(handler)
    return handler


def test_empty_key_frame_point_cloud_is_named_and_left_out_of_training(tmp_path):
    import copy
    import logging

    from clap.data.build import build_train_loader

    root, good = _frame_copy_dict(tmp_path)
    empty_path = tmp_path / "empty.pcd.bin"
    empty_path.write_bytes(b"")
    empty = copy.deepcopy(good)
    empty.update(sample_token="token-of-the-empty-frame", lidar_path=str(empty_path))
    cfg = small_cfg(root, tmp_path / "c", INPUT__NUM_SWEEPS=0, DATALOADER__NUM_WORKERS=0,
                    SOLVER__IMS_PER_BATCH=1)

    # evaluation keeps the sample and warns when it is read
    handler = _collect_warnings("clap.data.mapper")
    try:
        sample = build_mapper(cfg, is_train=False)(empty)
    finally:
        logging.getLogger("clap.data.mapper").removeHandler(handler)
    assert sample["points"].shape[0] == 0
    assert any("token-of-the-empty-frame" in m and str(empty_path) in m and "empty" in m
               for m in handler.messages)

    # training leaves it out: warned with file and token, and counted
    handler = _collect_warnings("clap.data.build")
    try:
        loader = build_train_loader(cfg, dataset=[empty, good, empty])
    finally:
        logging.getLogger("clap.data.build").removeHandler(handler)
    assert len(loader.dataset) == 1
    assert sum("token-of-the-empty-frame" in m and str(empty_path) in m
               for m in handler.messages) == 2
    assert any("Skipped 2 of 3 training samples" in m for m in handler.messages)
    with pytest.raises(ValueError, match="empty key-frame point cloud"):
        build_train_loader(cfg, dataset=[empty])
