"""Config keys of the probe protocol."""

from clap.config import CfgNode as CN

__all__ = ["add_probe_config"]


def add_probe_config(cfg) -> None:
    """Add the probe's keys to `cfg` (from `clap.config.get_cfg()`), before `merge_from_file`.

    The probe trains a DetectionModel config's lift, fusion, BEV backbone and head on cached
    features of its frozen LiDAR and image backbones (see projects/probe/README.md).
    """
    cfg.PROBE = CN()
    # Folder of the feature cache (FeatureCache). One folder per set of frozen backbones: the
    # cache records the checkpoint, encoder seed and input / backbone config it was made with
    # and refuses another. Required.
    cfg.PROBE.CACHE_DIR = ""
    # Seed of the backbones' random initialisation, drawn apart from SEED so that every probe
    # seed of one method sees the same frozen backbones (with no MODEL.PRETRAINED_ENCODERS, the
    # "frozen random encoders" baseline). SEED still draws the trained layers' initialisation
    # and the data order.
    cfg.PROBE.ENCODER_SEED = 0
    # Training frames (the first of DATASETS.TRAIN, unaugmented) on which the frozen backbones'
    # batch-norm statistics are re-estimated before their features are cached; 0 keeps the
    # statistics of the checkpoint (or of the initialisation). A pre-training that masks its
    # inputs collects its statistics on masked inputs, which the probe never shows the
    # backbones (docs/comparison.md, "Batch-norm statistics").
    cfg.PROBE.BN_RECALIBRATION_FRAMES = 0
