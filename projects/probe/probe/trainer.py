"""The probe: a DetectionModel whose LiDAR and image backbones are frozen, trained on their
cached features.

Only the layers after the backbones train (view transform, fusion, BEV backbone, head): the
backbones are the only parts every pre-training method trains (SimIPU pre-trains no lift or
fusion, and a merge of single-modal runs leaves the fusion at its initialisation), so frozen
parts are never parts a method did not pre-train. The trained layers start from their own
initialisation (SEED) for every method, never from a checkpoint.
"""

import hashlib
import logging
import os

import torch

from clap.data.build import build_test_loader, build_train_loader, get_dataset_dicts
from clap.data.collate import collate_batch
from clap.data.mapper import NuScenesMapper
from clap.engine import DefaultTrainer
from clap.modeling import build_model, load_pretrained_encoders
from clap.modeling.meta_arch import BACKBONE_PREFIXES

from .feature_cache import FeatureCache, collate_cached

__all__ = ["ProbeTrainer", "build_probe_model", "cache_identity", "fill_cache", "open_cache",
           "recalibrate_batch_norms"]

# Under "clap" so the handlers of clap's logger (console, log.txt) show it.
logger = logging.getLogger("clap.probe")

TRAIN_GROUP, TEST_GROUP = "train", "test"


def build_probe_model(cfg) -> torch.nn.Module:
    """The DetectionModel of `cfg` with frozen backbones: initialised under
    PROBE.ENCODER_SEED, then MODEL.PRETRAINED_ENCODERS' `lidar_backbone.*` / `image_backbone.*`
    (when set); every other layer has SEED's initialisation and trains."""
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.PRETRAINED_ENCODERS = ""
    plain.freeze()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.PROBE.ENCODER_SEED)
        reference = build_model(plain)
    model = build_model(plain)
    for prefix in BACKBONE_PREFIXES:
        name = prefix.rstrip(".")
        backbone = getattr(model, name, None)
        if backbone is not None:
            backbone.load_state_dict(getattr(reference, name).state_dict())
    if cfg.MODEL.PRETRAINED_ENCODERS:
        load_pretrained_encoders(model, cfg.MODEL.PRETRAINED_ENCODERS, BACKBONE_PREFIXES)
    for prefix in BACKBONE_PREFIXES:
        backbone = getattr(model, prefix.rstrip("."), None)
        if backbone is not None:
            backbone.requires_grad_(False)
    return model


def cache_identity(cfg) -> dict:
    """What the cached features depend on: the checkpoint, the encoder seed, and the input and
    backbone config (as a digest)."""
    relevant = "\n".join([cfg.INPUT.dump(), cfg.MODEL.LIDAR_BACKBONE.dump(),
                          cfg.MODEL.IMAGE_BACKBONE.dump(), str(list(cfg.MODEL.MODALITIES)),
                          str(list(cfg.MODEL.PIXEL_MEAN)), str(list(cfg.MODEL.PIXEL_STD))])
    identity = {"pretrained": os.path.abspath(cfg.MODEL.PRETRAINED_ENCODERS)
                if cfg.MODEL.PRETRAINED_ENCODERS else "",
                "encoder_seed": int(cfg.PROBE.ENCODER_SEED),
                "config_sha1": hashlib.sha1(relevant.encode()).hexdigest()}
    if cfg.PROBE.BN_RECALIBRATION_FRAMES > 0:  # absent when off: caches made before stay valid
        identity["bn_recalibration_frames"] = int(cfg.PROBE.BN_RECALIBRATION_FRAMES)
    return identity


def open_cache(cfg) -> FeatureCache:
    """The FeatureCache of PROBE.CACHE_DIR for this config.

    Raises:
        ValueError: when PROBE.CACHE_DIR is empty.
    """
    if not cfg.PROBE.CACHE_DIR:
        raise ValueError("PROBE.CACHE_DIR is empty: the probe needs a folder for its features")
    return FeatureCache(cfg.PROBE.CACHE_DIR, cache_identity(cfg))


def frame_mapper(cfg, group: str) -> NuScenesMapper:
    """Frames as evaluated (no augmentation: their features are computed once); the training
    group keeps the training filter of boxes by LiDAR points."""
    arguments = NuScenesMapper.from_config(cfg, is_train=False)
    if group == TRAIN_GROUP:
        arguments["min_box_lidar_points"] = cfg.INPUT.MIN_BOX_LIDAR_POINTS
    return NuScenesMapper(**arguments)


@torch.no_grad()
def recalibrate_batch_norms(cfg, model: torch.nn.Module, num_frames: int) -> int:
    """Re-estimate the running statistics of every batch norm of the model's backbones
    (`BACKBONE_PREFIXES`) as the plain average over the first `num_frames` frames of
    DATASETS.TRAIN (one frame per forward, unaugmented); the backbones' weights do not change.
    Returns the number of batch norms re-estimated."""
    norms = [m for prefix in BACKBONE_PREFIXES
             for m in getattr(model, prefix.rstrip("."), torch.nn.Identity()).modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    frames = get_dataset_dicts(list(cfg.DATASETS.TRAIN), cfg)[:num_frames]
    mapper = frame_mapper(cfg, TRAIN_GROUP)
    momenta = [m.momentum for m in norms]
    model.eval()
    try:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the frames
            norm.train()
        for dataset_dict in frames:
            model.encode_backbones(collate_batch([mapper(dataset_dict)]))
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
            norm.eval()
    logger.info("Re-estimated %d batch norms of the backbones on %d training frames",
                len(norms), len(frames))
    return len(norms)


def fill_cache(cfg, model: torch.nn.Module) -> int:
    """Cache the frozen backbones' features of every frame of DATASETS.TRAIN (with its
    fraction) and DATASETS.TEST not cached yet, after `recalibrate_batch_norms` with
    PROBE.BN_RECALIBRATION_FRAMES > 0; returns the number of frames encoded."""
    cache = open_cache(cfg)
    named = ((TRAIN_GROUP, cfg.DATASETS.TRAIN), (TEST_GROUP, cfg.DATASETS.TEST))
    groups = {group: get_dataset_dicts(list(names), cfg) for group, names in named if names}
    if not any(cache.missing(group, [d["sample_token"] for d in dicts])
               for group, dicts in groups.items()):
        return 0
    was_training = model.training
    if cfg.PROBE.BN_RECALIBRATION_FRAMES > 0:
        recalibrate_batch_norms(cfg, model, cfg.PROBE.BN_RECALIBRATION_FRAMES)
    model.eval()
    try:
        encoded = 0
        for group, dicts in groups.items():
            encoded += cache.fill(group, dicts, frame_mapper(cfg, group), collate_batch,
                                  model.encode_backbones)
    finally:
        model.train(was_training)
    return encoded


class ProbeTrainer(DefaultTrainer):
    """DefaultTrainer on the probe model (`build_probe_model`), whose loaders read the feature
    cache; the cache is filled when the trainer is built. Checkpoints, resuming, evaluation
    (DATASETS.TEST through the cache) and logging are DefaultTrainer's."""

    def __init__(self, cfg):
        super().__init__(cfg)
        fill_cache(cfg, self.unwrapped_model)

    @classmethod
    def build_model(cls, cfg) -> torch.nn.Module:
        model = build_probe_model(cfg)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        logger.info("Probe model: %d trainable parameters, %d frozen in %s", trainable, frozen,
                    "/".join(p.rstrip(".") for p in BACKBONE_PREFIXES))
        return model

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        return build_train_loader(cfg, mapper=open_cache(cfg).mapper(TRAIN_GROUP),
                                  collate_fn=collate_cached, start_iter=start_iter)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        return build_test_loader(cfg, dataset_name, mapper=open_cache(cfg).mapper(TEST_GROUP),
                                 collate_fn=collate_cached)
