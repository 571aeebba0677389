"""The LiDAR-only baseline on the real nuScenes frame: LiDAR rays only, 50 iterations lower its
loss."""

import torch
from single_modal_test_helpers import frame_batch, tiny_cfg

import clap.modeling  # noqa: F401
from clap.modeling import build_model
from clap.modeling.fusion import PassThroughFusion
from clap.modeling.ray_sampler import DepthAware
from clap.solver import build_optimizer


def test_fifty_iterations_lower_the_lidar_only_rendering_loss(tmp_path):
    cfg = tiny_cfg("lidar", tmp_path / "cache")
    batch = frame_batch(cfg)
    assert batch["images"].shape[1] == 0  # no camera is loaded
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.image_backbone is None and model.view_transform is None
    assert model.prototype_head is None
    assert isinstance(model.fusion, PassThroughFusion)
    assert isinstance(model.ray_sampler, DepthAware)
    model.train()
    optimizer = build_optimizer(cfg, model)
    history = []
    for _ in range(50):
        losses = model(batch)
        assert set(losses) == {"loss_range"}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append(losses["loss_range"].item())
    sampled = model.last_step["sampled"]
    assert sampled["pixel_uv"] is None
    assert sampled["lidar_ray_index"].shape == (1, cfg.MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS)
    # rays only through key-frame points farther than MIN_DISTANCE (3 m) from the sensor
    points = batch["points"][sampled["lidar_ray_index"][0]]
    sensor = batch["aug_matrix"][0, :3, 3]
    assert (points[:, 4] == 0).all()
    assert ((points[:, :2] - sensor[:2]).norm(dim=1) > cfg.MODEL.RAY_SAMPLER.MIN_DISTANCE).all()

    history = torch.tensor(history)
    first, last = history[:5].mean(), history[-5:].mean()
    print(f"loss_range: mean of the first 5 {first:.4f}, of the last 5 {last:.4f}")
    assert torch.isfinite(history).all()
    assert last < 0.8 * first
