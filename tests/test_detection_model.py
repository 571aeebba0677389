import math

import pytest
import stand_in_encoders  # noqa: F401  (registers the stand-in encoders)
import torch

from clap.config import get_cfg
from clap.modeling import build_model, load_pretrained_encoders
from clap.modeling.det_head import transform_boxes

NUM_CAMERAS, IMAGE_HEIGHT, IMAGE_WIDTH = 2, 32, 48


def tiny_cfg(modalities=("lidar", "camera")):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "DetectionModel"
    cfg.MODEL.MODALITIES = list(modalities)
    cfg.INPUT.POINT_CLOUD_RANGE = [-8.0, -8.0, -2.0, 8.0, 8.0, 2.0]
    cfg.INPUT.VOXEL_SIZE = [0.25, 0.25, 0.5]
    cfg.MODEL.VOLUME_STRIDE = [2, 2, 2]  # volume (Z, Y, X) = (4, 32, 32), 0.5 m cells
    cfg.MODEL.LIDAR_BACKBONE.NAME = "StandInScatterLidar"
    cfg.MODEL.LIDAR_BACKBONE.OUT_CHANNELS = 4
    cfg.MODEL.IMAGE_BACKBONE.NAME = "StandInImageBackbone"
    cfg.MODEL.VIEW_TRANSFORM.NAME = "StandInProjectionLift"
    cfg.MODEL.VIEW_TRANSFORM.OUT_CHANNELS = 3
    cfg.MODEL.FUSION.NAME = "StandInConcatFusion"
    cfg.MODEL.FUSION.OUT_CHANNELS = 5
    cfg.MODEL.BEV_BACKBONE.LAYER_NUMS = [1, 1]
    cfg.MODEL.BEV_BACKBONE.NUM_FILTERS = [8, 16]
    cfg.MODEL.BEV_BACKBONE.NUM_UPSAMPLE_FILTERS = [8, 8]
    cfg.MODEL.DET_HEAD.SHARED_CHANNELS = 8
    cfg.MODEL.DET_HEAD.HEAD_CHANNELS = 8
    return cfg


def camera_matrices(batch_size):
    """A forward- and a backward-looking pinhole camera at the LiDAR origin."""
    intrinsics = torch.tensor([[24.0, 0.0, 24.0, 0.0], [0.0, 24.0, 16.0, 0.0],
                               [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    forward = torch.tensor([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0],
                            [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    backward = forward @ torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    lidar2cam = torch.stack([forward, backward])
    return (intrinsics @ lidar2cam).expand(batch_size, -1, -1, -1).clone(), lidar2cam


def make_batch(batch_size=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    points, voxel_features, voxel_coords = [], [], []
    for sample in range(batch_size):
        xyz = torch.rand(400, 3, generator=generator) * torch.tensor([16.0, 16.0, 4.0]) - \
            torch.tensor([8.0, 8.0, 2.0])
        extra = torch.rand(400, 2, generator=generator)
        sample_points = torch.cat([xyz, extra], dim=1)
        points.append(sample_points)
        cells = torch.floor((xyz - torch.tensor([-8.0, -8.0, -2.0]))
                            / torch.tensor([0.25, 0.25, 0.5])).long()
        unique, inverse = torch.unique(cells, dim=0, return_inverse=True)
        mean = torch.zeros(len(unique), 5).index_add(0, inverse, sample_points)
        mean /= torch.bincount(inverse, minlength=len(unique))[:, None]
        voxel_features.append(mean)
        voxel_coords.append(torch.cat([torch.full((len(unique), 1), sample), unique], dim=1))
    lidar2img, lidar2cam = camera_matrices(batch_size)
    return {
        "points": torch.cat(points),
        "points_batch": torch.arange(batch_size).repeat_interleave(400),
        "voxel_features": torch.cat(voxel_features),
        "voxel_coords": torch.cat(voxel_coords).int(),
        "images": torch.rand(batch_size, NUM_CAMERAS, 3, IMAGE_HEIGHT, IMAGE_WIDTH,
                             generator=generator) * 255,
        "lidar2img": lidar2img,
        "lidar2cam": lidar2cam.expand(batch_size, -1, -1, -1).clone(),
        "image_size": (IMAGE_HEIGHT, IMAGE_WIDTH),
        "gt_boxes": [torch.tensor([[2.0, 1.0, 0.0, 4.0, 1.8, 1.5, 0.3, 1.0, 0.0],
                                   [-3.0, 4.2, -0.5, 0.6, 0.6, 1.7, -1.0, 0.0, 0.5]])] *
                    batch_size,
        "gt_labels": [torch.tensor([0, 8])] * batch_size,
        "aug_matrix": torch.eye(4).expand(batch_size, -1, -1).clone(),
        "lidar2ego": torch.eye(4, dtype=torch.float64).expand(batch_size, -1, -1).clone(),
        "ego2global": torch.eye(4, dtype=torch.float64).expand(batch_size, -1, -1).clone(),
        "sample_token": [f"token_{i}" for i in range(batch_size)],
        "batch_size": batch_size,
    }


@pytest.mark.parametrize("modalities", [("lidar", "camera"), ("lidar",), ("camera",)])
def test_builds_per_modality_and_trains(modalities):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(modalities))
    assert (model.lidar_backbone is not None) == ("lidar" in modalities)
    assert (model.image_backbone is not None) == ("camera" in modalities)
    # BEV backbone input: fused channels x Z.
    assert model.bev_backbone.stages[0][0].in_channels == 5 * 4

    model.train()
    losses = model(make_batch())
    assert set(losses) == {"loss_heatmap", "loss_bbox"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    encoders = [model.fusion] + [m for m in (model.lidar_backbone, model.image_backbone,
                                            model.view_transform) if m is not None]
    for encoder in encoders:
        gradients = [p.grad for p in encoder.parameters()]
        assert all(g is not None for g in gradients)
        assert any(g.abs().sum() > 0 for g in gradients)


def test_inputs_reach_the_encoders_normalised_and_flattened():
    model = build_model(tiny_cfg()).eval()
    batch = make_batch()
    seen = {}
    model.image_backbone.register_forward_pre_hook(
        lambda module, args: seen.update(images=args[0]))
    model.fusion.register_forward_hook(lambda module, args, out: seen.update(volume=out))
    model.bev_backbone.register_forward_pre_hook(lambda module, args: seen.update(bev=args[0]))
    model(batch)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    assert torch.allclose(seen["images"], (batch["images"].flatten(0, 1) - mean) / std)
    volume, bev = seen["volume"], seen["bev"]
    depth = volume.shape[2]
    assert bev.shape == (2, volume.shape[1] * depth, 32, 32)
    assert torch.equal(bev[:, 2 * depth + 3], volume[:, 2, 3])


def test_eval_returns_per_sample_detections_with_the_augmentation_undone(monkeypatch):
    model = build_model(tiny_cfg()).eval()
    batch = make_batch()
    outputs = model(batch)
    assert [o["sample_token"] for o in outputs] == ["token_0", "token_1"]
    for output in outputs:
        assert output["boxes"].shape[1] == 9
        assert output["scores"].shape == output["labels"].shape == output["boxes"].shape[:1]

    # The head predicts in the augmented frame; the model maps back to the original one.
    augmented_boxes = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.5, 0.4, 3.0, -1.0]])
    monkeypatch.setattr(model.det_head, "predict", lambda bev: [
        {"boxes": augmented_boxes.clone(), "scores": torch.ones(1),
         "labels": torch.zeros(1, dtype=torch.long)} for _ in range(bev.shape[0])])
    angle, scale = 0.5, 1.1
    aug = torch.eye(4)
    aug[:2, :2] = torch.tensor([[math.cos(angle), math.sin(angle)],
                                [math.sin(angle), -math.cos(angle)]])  # rotation + mirror
    aug[:3, :3] *= scale
    aug[:3, 3] = torch.tensor([0.5, -0.2, 0.1])
    batch["aug_matrix"] = torch.stack([torch.eye(4), aug])
    outputs = model(batch)
    assert torch.allclose(outputs[0]["boxes"], augmented_boxes, atol=1e-6)
    original = outputs[1]["boxes"]
    assert torch.allclose(transform_boxes(original, aug.double()), augmented_boxes, atol=1e-5)
    assert torch.allclose(original[:, 3:6], augmented_boxes[:, 3:6] / scale, atol=1e-5)


def _encoder_checkpoint(model):
    state = model.state_dict()
    return {
        "module.lidar_backbone.linear.weight": torch.full_like(
            state["lidar_backbone.linear.weight"], 0.5),
        "module.lidar_backbone.linear.bias": torch.zeros(7),  # wrong shape
        "module.fusion.conv.weight": torch.full_like(state["fusion.conv.weight"], -0.25),
        "module.lidar_backbone.extra.weight": torch.zeros(3),  # not in the model
        "module.render_head.mlp.weight": torch.zeros(2, 2),  # not an encoder
    }


def test_load_pretrained_encoders_reports_every_key(tmp_path):
    model = build_model(tiny_cfg())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "pretrain.pth"
    torch.save({"model": _encoder_checkpoint(model), "iteration": 10}, path)

    report = load_pretrained_encoders(model, path)  # a pathlib.Path
    assert sorted(report.loaded) == ["fusion.conv.weight", "lidar_backbone.linear.weight"]
    assert report.mismatched == {"lidar_backbone.linear.bias": ((7,), (4,))}
    assert report.unexpected == ["lidar_backbone.extra.weight"]
    assert report.skipped == ["render_head.mlp.weight"]
    encoder_keys = [k for k in before if k.split(".")[0] in
                    ("lidar_backbone", "image_backbone", "view_transform", "fusion")]
    assert sorted(report.missing) == sorted(
        set(encoder_keys) - {"fusion.conv.weight", "lidar_backbone.linear.weight",
                             "lidar_backbone.linear.bias"})

    state = model.state_dict()
    assert torch.all(state["lidar_backbone.linear.weight"] == 0.5)
    assert torch.all(state["fusion.conv.weight"] == -0.25)
    for key in before:
        if key not in report.loaded:
            assert torch.equal(state[key], before[key]), key


def test_pretrained_encoders_load_at_build_from_the_config(tmp_path):
    source = build_model(tiny_cfg())
    # A pre-training model stored with a `model.` wrapper prefix, keys as a plain state dict.
    checkpoint = {f"model.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "pretrain.pth"
    torch.save(checkpoint, path)
    cfg = tiny_cfg()
    cfg.MODEL.PRETRAINED_ENCODERS = str(path)
    torch.manual_seed(123)
    model = build_model(cfg)
    assert model.pretrained_report is not None
    assert not model.pretrained_report.missing and not model.pretrained_report.mismatched
    for key, value in source.state_dict().items():
        if key.startswith(("lidar_backbone.", "image_backbone.", "view_transform.", "fusion.")):
            assert torch.equal(model.state_dict()[key], value), key
    # The detection head is not an encoder: it keeps its own initialisation.
    assert "det_head.heatmap.0.weight" in model.pretrained_report.skipped


def test_load_pretrained_encoders_rejects_a_checkpoint_without_encoder_weights():
    model = build_model(tiny_cfg(("lidar",)))
    with pytest.raises(ValueError, match="no tensor matches"):
        load_pretrained_encoders(model, {"model": {"render_head.weight": torch.zeros(1)}})
