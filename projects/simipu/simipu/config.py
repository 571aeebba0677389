"""SimIPU's config keys, added to clap's default tree before a SimIPU yaml file is merged."""

import math

from clap.config import CfgNode as CN

__all__ = ["add_simipu_config"]


def add_simipu_config(cfg) -> None:
    """Add the `MODEL.SIMIPU` keys (with their defaults) to `cfg` in place.

    Call it on `clap.config.get_cfg()` before `merge_from_file` of a SimIPU config.
    """
    cfg.MODEL.SIMIPU = CN()
    c = cfg.MODEL.SIMIPU
    # Points sampled per view and per sample; their encoder features enter the losses (paper:
    # 1024). A sample with fewer points in range uses all of them.
    c.NUM_POINTS = 1024
    # How the points of each view are chosen, independently per view: "farthest" (farthest-point
    # sampling, PointNet++'s choice) or "random" (uniform without replacement).
    c.POINT_SAMPLING = "farthest"
    # Softmax temperature tau of both InfoNCE losses, dimensionless (paper: 0.07).
    c.TEMPERATURE = 0.07
    # Output dimension of the point and image projection heads (3-layer MLPs with BN; paper: 128).
    c.PROJ_DIM = 128
    # Hidden width (channels) of the two projection heads.
    c.PROJ_HIDDEN_DIM = 256
    # Weight of the inter-modal (image <-> point) loss; total = intra + INTER_WEIGHT * inter.
    c.INTER_WEIGHT = 1.0
    # Second point-cloud view, drawn per sample inside the model on top of the mapper's
    # augmentation: rotation about +z drawn uniformly from ROTATION (radians, paper: +-90 deg),
    # uniform scale from SCALE (paper: 0.75-1.25), mirror of the y axis (y -> -y) with FLIP_PROB.
    c.ROTATION = [-math.pi / 2, math.pi / 2]
    c.SCALE = [0.75, 1.25]
    c.FLIP_PROB = 0.5
    # Image backbone output sampled at the projected points (an FPN level "p2".."p5" for
    # "ResNetFPN", a stage "res2".."res5" for "ResNet").
    c.IMAGE_FEATURE = "p3"
    # Meters: a point not farther than this in front of a camera is not seen by it.
    c.MIN_DEPTH = 0.1
    # The original optimiser split: AdamW (POINT_LR, POINT_WEIGHT_DECAY, SOLVER.BETAS / EPS) for
    # the LiDAR encoder, SGD (IMAGE_LR, IMAGE_MOMENTUM, IMAGE_WEIGHT_DECAY) for the image encoder
    # and both heads; both follow SOLVER's LR schedule. False uses clap's build_optimizer
    # (SOLVER.OPTIMIZER, SOLVER.BASE_LR) for everything.
    c.OPTIMIZER_SPLIT = False
    # AdamW learning rate and weight decay of the LiDAR encoder (paper: lr 1e-3).
    c.POINT_LR = 1.0e-3
    c.POINT_WEIGHT_DECAY = 0.01
    # SGD learning rate, momentum and weight decay of the image encoder and heads (paper: 0.03).
    c.IMAGE_LR = 0.03
    c.IMAGE_MOMENTUM = 0.9
    c.IMAGE_WEIGHT_DECAY = 1.0e-4
