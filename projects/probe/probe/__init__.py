"""Probe protocol: frozen backbones, their features cached, the rest of a detector trained."""

from .config import add_probe_config
from .feature_cache import SAMPLE_KEYS, FeatureCache, collate_cached
from .trainer import (
    ProbeTrainer,
    build_probe_model,
    cache_identity,
    fill_cache,
    open_cache,
    recalibrate_batch_norms,
)

__all__ = [
    "SAMPLE_KEYS", "FeatureCache", "ProbeTrainer", "add_probe_config", "build_probe_model",
    "cache_identity", "collate_cached", "fill_cache", "open_cache", "recalibrate_batch_norms",
]
