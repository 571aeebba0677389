"""The camera-only baseline on the real nuScenes frame: camera rays at projected LiDAR points,
colour and depth supervision, and 50 iterations lower both losses."""

import torch
from single_modal_test_helpers import frame_batch, tiny_cfg

import clap.modeling  # noqa: F401
from clap.modeling import build_model
from clap.modeling.render_head.rays import build_rays, project_points
from clap.solver import build_optimizer

# 32 x 96 images keep the 50 iterations (ResNet-18 on 6 images, double backward for the
# normals) well under a minute on a busy CPU.
SMALL_IMAGES = ["INPUT.IMAGE_SIZE", [32, 96]]


def test_fifty_iterations_lower_the_camera_only_rendering_losses(tmp_path):
    cfg = tiny_cfg("camera", tmp_path / "cache", *SMALL_IMAGES)
    batch = frame_batch(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.lidar_backbone is None and model.prototype_head is None
    model.train()
    optimizer = build_optimizer(cfg, model)
    history = []
    for step in range(50):
        losses = model(batch)
        assert set(losses) == {"loss_rgb", "loss_camera_range"}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        if step == 1:  # the SDF MLP ignores the features at its geometric initialisation
            grads = [p.grad for p in model.image_backbone.parameters() if p.requires_grad]
            assert any(g is not None and g.abs().sum() > 0 for g in grads)
        optimizer.step()
        history.append([losses["loss_rgb"].item(), losses["loss_camera_range"].item()])

    # depth-aware pixels: every pixel holds a projected LiDAR point farther than 3 m (there are
    # more than enough per camera), so every camera ray has a depth target; no LiDAR ray
    sampled = model.last_step["sampled"]
    assert sampled["lidar_ray_index"] is None
    num_cameras = batch["images"].shape[1]
    num_pixels = cfg.MODEL.RAY_SAMPLER.NUM_PIXELS_PER_CAMERA
    assert sampled["pixel_uv"].shape == (1, num_cameras, num_pixels, 2)
    rays = build_rays(batch, sampled)
    assert set(rays) == {"camera"}
    assert rays["camera"]["target_range_valid"].all()
    candidates = sampled["candidates"]
    uv, _, visible = project_points(
        batch["points"][candidates, :3], batch["lidar2img"][0], batch["image_size"]
    )
    for camera in range(num_cameras):
        hit = torch.round(uv[camera, visible[camera]]).long()
        hit_keys = set((hit[:, 1] * 1000 + hit[:, 0]).tolist())
        chosen = sampled["pixel_uv"][0, camera]
        assert set((chosen[:, 1] * 1000 + chosen[:, 0]).tolist()) <= hit_keys

    history = torch.tensor(history)
    first, last = history[:5].mean(dim=0), history[-5:].mean(dim=0)
    print("mean of the first 5 (rgb, camera range):", first.tolist(), "of the last 5:",
          last.tolist())
    assert torch.isfinite(history).all()
    assert (last < first).all()
    assert last.sum() < 0.8 * first.sum()
