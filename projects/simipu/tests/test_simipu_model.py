"""The SimIPU model: which encoder each loss trains, degenerate batches, config errors."""

import pytest
import torch
from simipu_test_helpers import small_cfg

import clap.modeling  # noqa: F401
from clap.data.voxelize import voxelize
from clap.modeling import build_model

HEIGHT, WIDTH = 64, 176


def front_and_back_cameras():
    """lidar2img (2, 4, 4) of two cameras at the origin looking along +x and -x."""
    intrinsics = torch.eye(4)
    intrinsics[:3, :3] = torch.tensor([[60.0, 0, WIDTH / 2], [0, 60.0, HEIGHT / 2], [0, 0, 1]])
    front = torch.tensor([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    back = torch.tensor([[0.0, 1, 0, 0], [0, 0, -1, 0], [-1, 0, 0, 0], [0, 0, 0, 1]])
    return torch.stack([intrinsics @ front, intrinsics @ back])


def hand_made_batch(cfg, point_counts, lidar2img, seed=0):
    """A batch (docs/data.md keys the model reads) of random clouds with the given sizes."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.tensor([-15.0, -15.0, -2.5])
    high = torch.tensor([15.0, 15.0, 0.5])
    points, points_batch, features, coords = [], [], [], []
    for index, count in enumerate(point_counts):
        xyz = low + torch.rand(count, 3, generator=generator) * (high - low)
        cloud = torch.cat([xyz, torch.rand(count, 1, generator=generator),
                           torch.zeros(count, 1)], dim=1)
        voxel_features, voxel_coords, _ = voxelize(
            cloud.numpy(), cfg.INPUT.POINT_CLOUD_RANGE, cfg.INPUT.VOXEL_SIZE,
            cfg.INPUT.MAX_POINTS_PER_VOXEL, cfg.INPUT.MAX_VOXELS_TRAIN)
        points.append(cloud)
        points_batch.append(torch.full((count,), index, dtype=torch.long))
        features.append(torch.from_numpy(voxel_features))
        batch_column = torch.full((len(voxel_coords), 1), index, dtype=torch.int32)
        coords.append(torch.cat([batch_column, torch.from_numpy(voxel_coords)], dim=1))
    batch_size = len(point_counts)
    return {
        "points": torch.cat(points), "points_batch": torch.cat(points_batch),
        "voxel_features": torch.cat(features), "voxel_coords": torch.cat(coords),
        "images": torch.rand(batch_size, len(lidar2img), 3, HEIGHT, WIDTH, generator=generator)
        * 255,
        "lidar2img": lidar2img.expand(batch_size, -1, -1, -1).clone(),
        "image_size": (HEIGHT, WIDTH), "batch_size": batch_size,
    }


def gradient_norms(module):
    """Summed gradient norm of a module's parameters (None gradients count as 0)."""
    return sum(float(p.grad.norm()) for p in module.parameters() if p.grad is not None)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return small_cfg(tmp_path_factory.mktemp("cache"))


def test_each_loss_trains_its_own_encoder(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    batch = hand_made_batch(cfg, [600, 500], front_and_back_cameras())

    torch.manual_seed(1)
    losses = model(batch)
    assert set(losses) == {"loss_intra", "loss_inter"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    losses["loss_intra"].backward()
    # intra-modal: view-2 queries against stop-gradient view-1 keys train points only
    assert gradient_norms(model.lidar_backbone) > 0 and gradient_norms(model.point_head) > 0
    assert gradient_norms(model.image_backbone) == 0 and gradient_norms(model.image_head) == 0

    model.zero_grad()
    torch.manual_seed(1)
    model(batch)["loss_inter"].backward()
    # inter-modal: stop-gradient on the point side, so only the image branch learns
    assert gradient_norms(model.image_backbone) > 0 and gradient_norms(model.image_head) > 0
    assert gradient_norms(model.lidar_backbone) == 0 and gradient_norms(model.point_head) == 0


def test_empty_samples_and_invisible_points_give_zero_losses_on_the_graph(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    behind_everything = torch.zeros(1, 4, 4)
    behind_everything[0, 2, 3] = -1.0  # depth -1 for every point
    behind_everything[0, 3, 3] = 1.0
    for counts in ([0, 0], [0, 1], [1]):
        model.zero_grad(set_to_none=True)
        batch = hand_made_batch(cfg, counts, behind_everything)
        losses = model(batch)
        assert losses["loss_intra"].item() == 0.0 and losses["loss_inter"].item() == 0.0
        sum(losses.values()).backward()
        for head in (model.point_head, model.image_head):
            assert all(p.grad is not None for p in head.parameters())


def test_a_sample_without_points_leaves_the_others_training(cfg):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    losses = model(hand_made_batch(cfg, [0, 700], front_and_back_cameras()))
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_unknown_image_feature_names_the_key(cfg):
    bad = cfg.clone()
    bad.MODEL.SIMIPU.IMAGE_FEATURE = "p9"
    with pytest.raises(ValueError, match="MODEL.SIMIPU.IMAGE_FEATURE 'p9'"):
        build_model(bad)
