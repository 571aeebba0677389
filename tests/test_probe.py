"""The probe protocol: the feature cache (fake encoder, tiny shapes), the DetectionModel split
at the backbones, and the probe model's frozen backbones."""

import os
import sys

import pytest
import stand_in_encoders  # noqa: F401  (registers the stand-in encoders)
import torch
from test_detection_model import make_batch, tiny_cfg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "projects", "probe"))
from probe import (  # noqa: E402
    FeatureCache,
    add_probe_config,
    build_probe_model,
    cache_identity,
    collate_cached,
)

from clap.modeling import build_model  # noqa: E402

NUM_CAMERAS = 2


def one_frame(seed):
    """The model inputs of one frame (a batch of one from make_batch), as a mapper gives them."""
    batch = make_batch(batch_size=1, seed=seed)
    sample = {key: batch[key][0] for key in ("lidar2img", "aug_matrix", "lidar2ego", "ego2global",
                                              "gt_boxes", "gt_labels")}
    sample.update(sample_token=f"frame_{seed}", image_size=batch["image_size"], batch=batch)
    return sample


class FakeEncoder:
    """Tiny features whose values name the frame; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        value = float(batch["seed"])
        return {"lidar_volume": torch.full((1, 3, 2, 4, 4), value, requires_grad=True),
                "image_features": {"p3": torch.full((NUM_CAMERAS, 5, 2, 3), value)},
                "nothing": None}


def fake_mapper(dataset_dict):
    sample = one_frame(dataset_dict["seed"])
    sample.pop("batch")
    return sample


def fake_collate(samples):
    assert len(samples) == 1  # the cache encodes one frame at a time
    return {"seed": int(samples[0]["sample_token"].split("_")[1])}


def frames(*seeds):
    return [{"sample_token": f"frame_{s}", "seed": s} for s in seeds]


def test_cache_encodes_each_frame_once_and_collates_along_the_first_dimension(tmp_path):
    cache = FeatureCache(str(tmp_path / "cache"), {"pretrained": "a.pth", "encoder_seed": 0})
    encoder = FakeEncoder()
    assert cache.fill("train", frames(1, 2), fake_mapper, fake_collate, encoder, False) == 2
    assert cache.fill("train", frames(1, 2, 3), fake_mapper, fake_collate, encoder, False) == 1
    assert encoder.calls == 3
    assert cache.missing("test", ["frame_1"]) == ["frame_1"]  # groups are apart

    entries = [cache.load("train", t) for t in ("frame_3", "frame_1")]
    assert not entries[0]["features"]["lidar_volume"].requires_grad
    batch = collate_cached(entries)
    features = batch["backbone_features"]
    assert features["lidar_volume"].shape == (2, 3, 2, 4, 4)
    assert features["lidar_volume"][:, 0, 0, 0, 0].tolist() == [3.0, 1.0]
    assert features["image_features"]["p3"].shape == (2 * NUM_CAMERAS, 5, 2, 3)
    assert features["image_features"]["p3"][:, 0, 0, 0].tolist() == [3.0, 3.0, 1.0, 1.0]
    assert features["nothing"] is None
    assert batch["batch_size"] == 2
    assert batch["sample_token"] == ["frame_3", "frame_1"]
    assert batch["lidar2img"].shape == (2, NUM_CAMERAS, 4, 4)
    assert batch["image_size"] == (32, 48)
    assert [b.shape for b in batch["gt_boxes"]] == [(2, 9), (2, 9)]

    mapper = cache.mapper("train")
    assert mapper({"sample_token": "frame_2"})["sample"]["sample_token"] == "frame_2"
    with pytest.raises(FileNotFoundError, match="frame_9"):
        mapper({"sample_token": "frame_9"})


def test_cache_refuses_features_of_other_encoders(tmp_path):
    FeatureCache(str(tmp_path), {"pretrained": "a.pth", "encoder_seed": 0})
    FeatureCache(str(tmp_path), {"encoder_seed": 0, "pretrained": "a.pth"})  # same identity
    with pytest.raises(ValueError, match="meta.json"):
        FeatureCache(str(tmp_path), {"pretrained": "b.pth", "encoder_seed": 0})


def test_detector_on_cached_features_predicts_what_it_predicts_from_the_inputs(tmp_path):
    torch.manual_seed(0)
    model = build_model(tiny_cfg()).eval()
    cache = FeatureCache(str(tmp_path), {"test": True})
    raw = {seed: one_frame(seed) for seed in (4, 5)}
    cache.fill("test", frames(4, 5), lambda d: raw[d["seed"]], lambda s: s[0]["batch"],
               model.encode_backbones, False)
    cached = collate_cached([cache.load("test", t) for t in ("frame_4", "frame_5")])
    with torch.no_grad():
        from_cache = model(cached)
        for index, seed in enumerate((4, 5)):
            direct = model(raw[seed]["batch"])[0]
            assert from_cache[index]["sample_token"] == f"frame_{seed}"
            for key in ("boxes", "scores", "labels"):
                assert torch.allclose(from_cache[index][key], direct[key], atol=1e-6)

    model.train()
    losses = model(cached)
    assert set(losses) == {"loss_heatmap", "loss_bbox"}


def probe_cfg(pretrained="", seed=0):
    cfg = tiny_cfg()
    add_probe_config(cfg)
    cfg.MODEL.PRETRAINED_ENCODERS = pretrained
    cfg.SEED = seed
    return cfg


def test_probe_model_freezes_the_same_backbones_for_every_seed_and_loads_only_them(tmp_path):
    torch.manual_seed(0)
    first = build_probe_model(probe_cfg())
    torch.manual_seed(1)
    second = build_probe_model(probe_cfg())
    for name in ("lidar_backbone", "image_backbone"):
        for (key, a), b in zip(getattr(first, name).state_dict().items(),
                               getattr(second, name).state_dict().values()):
            assert torch.equal(a, b), key
        assert not any(p.requires_grad for p in getattr(first, name).parameters())
    trained = [first.view_transform, first.fusion, first.bev_backbone, first.det_head]
    assert all(p.requires_grad for module in trained for p in module.parameters())
    assert not torch.equal(next(first.bev_backbone.parameters()),
                           next(second.bev_backbone.parameters()))  # SEED draws the rest

    # A pre-training checkpoint fills the backbones only; the lift keeps its initialisation.
    state = {k: torch.full_like(v, 0.5) for k, v in first.state_dict().items()
             if k.startswith(("lidar_backbone.", "image_backbone.", "view_transform."))
             and v.is_floating_point()}
    assert any(k.startswith("view_transform.") for k in state)
    path = str(tmp_path / "pretrained.pth")
    torch.save({"model": state}, path)
    loaded = build_probe_model(probe_cfg(path))
    for key, value in loaded.state_dict().items():
        if key in state and key.startswith(("lidar_backbone.", "image_backbone.")):
            assert torch.all(value == 0.5), key
        elif key in state:
            assert not torch.all(value == 0.5), key
    assert cache_identity(probe_cfg(path))["pretrained"] == os.path.abspath(path)
    assert cache_identity(probe_cfg(path)) != cache_identity(probe_cfg())


class _NormedBackbones(torch.nn.Module):
    """Backbones with batch norms: `encode_backbones` normalises each frame's values."""

    def __init__(self):
        super().__init__()
        self.lidar_backbone = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
        self.image_backbone = torch.nn.BatchNorm2d(2)
        self.det_head = torch.nn.BatchNorm1d(3)  # not a backbone: left alone

    def encode_backbones(self, batch):
        return {"lidar": self.lidar_backbone(batch["points"]),
                "image": self.image_backbone(batch["images"])}


def test_batch_norm_recalibration_averages_the_backbones_statistics_over_training_frames(
        monkeypatch):
    import probe.trainer as trainer

    generator = torch.Generator().manual_seed(0)
    frames = [{"points": torch.randn(50, 3, generator=generator) * (i + 1) + i,
               "images": torch.randn(1, 2, 4, 4, generator=generator) + 3 * i} for i in range(4)]
    monkeypatch.setattr(trainer, "get_dataset_dicts", lambda names, cfg: frames)
    monkeypatch.setattr(trainer, "frame_mapper", lambda cfg, group: lambda d: d)
    monkeypatch.setattr(trainer, "collate_batch", lambda samples: samples[0])
    torch.manual_seed(0)
    model = _NormedBackbones()
    weights = {k: v.clone() for k, v in model.named_parameters()}
    head_mean = model.det_head.running_mean.clone()

    assert trainer.recalibrate_batch_norms(probe_cfg(), model, 3) == 2
    with torch.no_grad():
        linear = [model.lidar_backbone[0](f["points"]) for f in frames[:3]]
    expected = torch.stack([x.mean(dim=0) for x in linear]).mean(dim=0)
    assert torch.allclose(model.lidar_backbone[1].running_mean, expected, atol=1e-5)
    expected = torch.stack([f["images"].mean(dim=(0, 2, 3)) for f in frames[:3]]).mean(dim=0)
    assert torch.allclose(model.image_backbone.running_mean, expected, atol=1e-5)
    assert torch.equal(model.det_head.running_mean, head_mean)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert model.image_backbone.momentum == 0.1 and not model.image_backbone.training
    cfg = probe_cfg()
    cfg.PROBE.BN_RECALIBRATION_FRAMES = 3
    assert cache_identity(cfg) != cache_identity(probe_cfg())


def test_cache_identity_without_recalibration_is_the_one_caches_were_made_with():
    assert set(cache_identity(probe_cfg())) == {"pretrained", "encoder_seed", "config_sha1"}
