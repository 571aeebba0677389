"""The mapper on the real frame: calibration stays exact through every augmentation."""

import logging

import numpy as np
import pytest
import torch
from nuscenes_frame_helpers import FRAME_ROOT, FRAME_VERSION, copy_frame, small_cfg

from clap.data.box_ops import points_in_boxes
from clap.data.datasets.nuscenes import CAMERA_CHANNELS, load_nuscenes_dicts
from clap.data.mapper import build_mapper, load_lidar_points
from clap.utils.visualizer import project_points

# Wide enough that no point or box of the frame is dropped, so points keep their order.
_WIDE_RANGE = [-200.0, -200.0, -50.0, 200.0, 200.0, 50.0]


@pytest.fixture(scope="module")
def frame_dict(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("cache")
    (dataset_dict,) = load_nuscenes_dicts(str(FRAME_ROOT), FRAME_VERSION, "all", str(cache_dir))
    return dataset_dict


def _augmenting_cfg(tmp_path, flip_x, flip_y, image_flip):
    return small_cfg(
        FRAME_ROOT,
        tmp_path,
        INPUT__POINT_CLOUD_RANGE=_WIDE_RANGE,
        INPUT__VOXEL_SIZE=[2.0, 2.0, 2.0],
        INPUT__ROTATION=[-3.0, 3.0],
        INPUT__SCALE=[0.8, 1.2],
        INPUT__TRANSLATION_STD=[1.0, 1.0, 0.5],
        INPUT__FLIP_X_PROB=flip_x,
        INPUT__FLIP_Y_PROB=flip_y,
        INPUT__IMAGE_FLIP_PROB=image_flip,
        INPUT__RESIZE_SCALE=[0.8, 1.3],
        INPUT__CROP_BOTTOM_RANGE=[0.0, 0.2],
        INPUT__MIN_BOX_LIDAR_POINTS=0,
    )


@pytest.mark.parametrize(
    "seed, flip_x, flip_y, image_flip", [(0, 1.0, 0.0, 1.0), (1, 0.0, 1.0, 0.0), (2, 1.0, 1.0, 0.5)]
)
def test_points_project_to_the_same_pixel_and_stay_in_their_boxes(
    frame_dict, tmp_path, seed, flip_x, flip_y, image_flip
):
    cfg = _augmenting_cfg(tmp_path, flip_x, flip_y, image_flip)
    torch.manual_seed(seed)
    sample = build_mapper(cfg, is_train=True)(frame_dict)

    original = load_lidar_points(frame_dict["lidar_path"])
    augmented = sample["points"].numpy()
    assert augmented.shape == (len(original), 5)
    aug_matrix = sample["aug_matrix"].double().numpy()
    assert not np.allclose(aug_matrix, np.eye(4))
    assert np.sign(np.linalg.det(aug_matrix[:3, :3])) == (-1.0 if flip_x != flip_y else 1.0)
    np.testing.assert_allclose(augmented[:, 3], original[:, 3])  # intensity kept

    height, width = cfg.INPUT.IMAGE_SIZE
    checked = 0
    for index, name in enumerate(CAMERA_CHANNELS):
        before, depth_before = project_points(original, frame_dict["cameras"][name]["lidar2img"])
        after, depth_after = project_points(augmented, sample["lidar2img"][index].double().numpy())
        image_aug = sample["image_aug_matrix"][index].double().numpy()
        expected = np.concatenate([before, np.ones((len(before), 1))], axis=1) @ image_aug.T
        visible = (
            (depth_before > 0.5)
            & (after[:, 0] >= 0)
            & (after[:, 0] < width)
            & (after[:, 1] >= 0)
            & (after[:, 1] < height)
        )
        assert np.all(depth_after[visible] > 0)
        error = np.abs(expected[visible, :2] - after[visible])
        assert error.max() < 0.5, f"{name}: largest pixel error {error.max():.3f}"
        checked += int(visible.sum())
    assert checked > 5000

    boxes_before = frame_dict["gt_boxes"]
    boxes_after = sample["gt_boxes"].double().numpy()
    assert boxes_after.shape == boxes_before.shape
    inside_before = points_in_boxes(original, boxes_before)
    inside_after = points_in_boxes(augmented, boxes_after)
    assert inside_before.sum() > 500
    np.testing.assert_array_equal(inside_before, inside_after)
    scale = np.cbrt(abs(np.linalg.det(aug_matrix[:3, :3])))
    np.testing.assert_allclose(boxes_after[:, 3:6], boxes_before[:, 3:6] * scale, rtol=1e-5)


def test_inference_mapper_is_deterministic_and_unaugmented(frame_dict, tmp_path):
    cfg = small_cfg(FRAME_ROOT, tmp_path)
    mapper = build_mapper(cfg, is_train=False)
    torch.manual_seed(0)
    first = mapper(frame_dict)
    torch.manual_seed(1)
    second = mapper(frame_dict)
    for key in ("points", "voxel_features", "voxel_coords", "images", "lidar2img", "gt_boxes"):
        assert torch.equal(first[key], second[key]), key
    np.testing.assert_allclose(first["aug_matrix"].numpy(), np.eye(4))
    assert first["images"].shape == (6, 3, 128, 224) and first["images"].dtype == torch.uint8
    # Range filter: every point and box centre lies in INPUT.POINT_CLOUD_RANGE.
    low, high = np.array(cfg.INPUT.POINT_CLOUD_RANGE[:3]), np.array(cfg.INPUT.POINT_CLOUD_RANGE[3:])
    points = first["points"].numpy()
    assert np.all((points[:, :3] >= low) & (points[:, :3] < high))
    assert 0 < len(points) < len(load_lidar_points(frame_dict["lidar_path"]))
    assert np.all(np.abs(first["gt_boxes"][:, :2].numpy()) < 54.0)
    # Fit-width resize: 1600 -> 224 pixels, crop keeps the bottom rows, centred horizontally.
    scale = 224 / 1600
    expected = np.array([[scale, 0, 0.5 * scale - 0.5], [0, scale, 0.5 * scale - 0.5], [0, 0, 1]])
    expected[1, 2] -= round(900 * scale) - 128
    np.testing.assert_allclose(first["image_aug_matrix"][0].numpy(), expected, atol=1e-6)


def test_training_drops_boxes_with_few_points(frame_dict, tmp_path):
    cfg = small_cfg(
        FRAME_ROOT, tmp_path, INPUT__POINT_CLOUD_RANGE=_WIDE_RANGE, INPUT__MIN_BOX_LIDAR_POINTS=5
    )
    sample = build_mapper(cfg, is_train=True)(frame_dict)
    assert len(sample["gt_boxes"]) == int((frame_dict["num_lidar_pts"] >= 5).sum())
    assert 0 < len(sample["gt_boxes"]) < len(frame_dict["gt_boxes"])


def test_sweeps_are_moved_into_the_key_frame_with_their_time_lag(frame_dict, tmp_path):
    sweep2lidar = np.eye(4)
    sweep2lidar[:3, 3] = [1.0, -2.0, 0.5]
    with_sweep = dict(frame_dict)
    with_sweep["sweeps"] = [
        {"path": frame_dict["lidar_path"], "time_lag": 0.05, "sweep2lidar": sweep2lidar},
        {"path": frame_dict["lidar_path"], "time_lag": 0.10, "sweep2lidar": np.eye(4)},
    ]
    cfg = small_cfg(FRAME_ROOT, tmp_path, INPUT__POINT_CLOUD_RANGE=_WIDE_RANGE, INPUT__NUM_SWEEPS=1)
    points = build_mapper(cfg, is_train=False)(with_sweep)["points"].numpy()
    key = load_lidar_points(frame_dict["lidar_path"])
    assert points.shape == (2 * len(key), 5)  # NUM_SWEEPS=1: the second sweep is not used
    np.testing.assert_allclose(points[: len(key), :4], key)
    np.testing.assert_allclose(points[len(key) :, :3], key[:, :3] + [1.0, -2.0, 0.5], atol=1e-4)
    np.testing.assert_allclose(points[len(key) :, 3], key[:, 3])
    assert np.all(points[: len(key), 4] == 0) and np.allclose(points[len(key) :, 4], 0.05)


def test_non_finite_points_are_dropped_and_logged(tmp_path, caplog, monkeypatch):
    # A configured "clap" logger (setup_logger) stops propagation; caplog listens at the root.
    monkeypatch.setattr(logging.getLogger("clap"), "propagate", True)
    root = copy_frame(tmp_path / "root")
    (dataset_dict,) = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(tmp_path / "c"))
    points = np.fromfile(dataset_dict["lidar_path"], dtype=np.float32).reshape(-1, 5)
    points[[3, 10, 20], 0] = np.nan
    points[7, 2] = np.inf
    points.tofile(dataset_dict["lidar_path"])
    cfg = small_cfg(root, tmp_path / "c", INPUT__POINT_CLOUD_RANGE=_WIDE_RANGE)
    with caplog.at_level(logging.WARNING, logger="clap.data.mapper"):
        sample = build_mapper(cfg, is_train=False)(dataset_dict)
    assert len(sample["points"]) == len(points) - 4
    assert torch.isfinite(sample["points"]).all()
    assert "Dropped 4 non-finite points" in caplog.text


def test_empty_point_cloud_gives_empty_voxels(tmp_path):
    root = copy_frame(tmp_path / "root")
    (dataset_dict,) = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(tmp_path / "c"))
    open(dataset_dict["lidar_path"], "wb").close()
    sample = build_mapper(small_cfg(root, tmp_path / "c"), is_train=True)(dataset_dict)
    assert sample["points"].shape == (0, 5)
    assert sample["voxel_features"].shape == (0, 5) and sample["voxel_coords"].shape == (0, 3)
    assert sample["images"].shape == (6, 3, 128, 224)
