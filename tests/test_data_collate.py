"""Batching mapped samples into the format of docs/data.md."""

import pytest
import torch
from nuscenes_frame_helpers import FRAME_VERSION, copy_frame, small_cfg

from clap.data.collate import collate_batch
from clap.data.datasets.nuscenes import load_nuscenes_dicts
from clap.data.mapper import build_mapper


@pytest.fixture(scope="module")
def two_samples(tmp_path_factory):
    """A mapped sample of the real frame and one whose point cloud is empty."""
    tmp = tmp_path_factory.mktemp("collate")
    root = copy_frame(tmp / "root")
    (full,) = load_nuscenes_dicts(str(root), FRAME_VERSION, "all", str(tmp / "cache"))
    empty_path = tmp / "empty.pcd.bin"
    empty_path.write_bytes(b"")
    empty = dict(full, lidar_path=str(empty_path), sample_token="empty")
    mapper = build_mapper(small_cfg(root, tmp / "cache"), is_train=True)
    return [mapper(full), mapper(empty)]


def test_batch_of_two_with_an_empty_point_cloud(two_samples):
    full, empty = two_samples
    batch = collate_batch(two_samples)
    num_points, num_voxels = len(full["points"]), len(full["voxel_coords"])
    assert num_points > 0 and num_voxels > 0 and len(empty["points"]) == 0

    assert batch["batch_size"] == 2 and batch["sample_token"][1] == "empty"
    assert batch["points"].shape == (num_points, 5) and batch["points"].dtype == torch.float32
    assert batch["points_batch"].dtype == torch.int64
    assert torch.equal(batch["points_batch"], torch.zeros(num_points, dtype=torch.int64))
    assert batch["voxel_features"].shape == (num_voxels, 5)
    assert batch["voxel_coords"].shape == (num_voxels, 4)
    assert batch["voxel_coords"].dtype == torch.int32
    assert torch.all(batch["voxel_coords"][:, 0] == 0)
    assert torch.equal(batch["voxel_coords"][:, 1:], full["voxel_coords"])
    assert batch["images"].shape == (2, 6, 3, 128, 224)
    assert batch["images"].dtype == torch.float32 and batch["images"].max() <= 255
    assert torch.equal(batch["images"][1], empty["images"].float())
    for key, shape in (("lidar2img", (2, 6, 4, 4)), ("lidar2cam", (2, 6, 4, 4))):
        assert batch[key].shape == shape and batch[key].dtype == torch.float32
    assert batch["intrinsics"].shape == (2, 6, 3, 3)
    assert batch["image_aug_matrix"].shape == (2, 6, 3, 3)
    assert batch["aug_matrix"].shape == (2, 4, 4)
    assert batch["lidar2ego"].shape == (2, 4, 4) and batch["lidar2ego"].dtype == torch.float64
    assert batch["ego2global"].shape == (2, 4, 4) and batch["ego2global"].dtype == torch.float64
    assert batch["image_size"] == (128, 224)
    assert [b.shape[1] for b in batch["gt_boxes"]] == [9, 9]
    assert [len(b) for b in batch["gt_boxes"]] == [len(b) for b in batch["gt_labels"]]
    assert batch["gt_labels"][0].dtype == torch.int64


def test_batch_indices_follow_sample_order(two_samples):
    full, empty = two_samples
    batch = collate_batch([empty, full])
    assert torch.all(batch["points_batch"] == 1) and torch.all(batch["voxel_coords"][:, 0] == 1)


def test_different_image_sizes_are_an_error(two_samples):
    other = dict(two_samples[1], image_size=(64, 112))
    with pytest.raises(ValueError, match="different image sizes"):
        collate_batch([two_samples[0], other])
