"""What the render-head benchmarks start from: the head, a random field volume and one batch."""

from typing import Tuple

import torch

from .timing import to_device

__all__ = ["render_head_inputs"]


def render_head_inputs(cfg, device: torch.device) -> Tuple[torch.nn.Module, torch.Tensor, dict]:
    """The render head built from `cfg` (MODEL.RENDER_HEAD on the config's volume grid), in
    training mode on `device`; its field volume F~ (1, C, Z, Y, X), C =
    MODEL.RENDER_HEAD.FIELD_CONV_CHANNELS (MODEL.FUSION.OUT_CHANNELS without f_3D), a seeded
    random leaf tensor that requires gradients, so a benchmark covers the head down to the
    volume but no encoder; and the first sample of DATASETS.TRAIN as a batch of one on
    `device`."""
    from clap.data.build import build_train_loader
    from clap.layers import ShapeSpec, VolumeGrid
    from clap.modeling.render_head import build_render_head

    grid = VolumeGrid.from_config(cfg)
    head = build_render_head(cfg, ShapeSpec(channels=cfg.MODEL.FUSION.OUT_CHANNELS))
    head.to(device).train()
    channels = cfg.MODEL.RENDER_HEAD.FIELD_CONV_CHANNELS or cfg.MODEL.FUSION.OUT_CHANNELS
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn((1, channels) + tuple(grid.volume_shape), generator=generator)
    volume = volume.to(device).requires_grad_(True)

    cfg_one = cfg.clone()
    cfg_one.defrost()
    cfg_one.SOLVER.IMS_PER_BATCH = 1
    cfg_one.DATALOADER.NUM_WORKERS = 0
    batch = to_device(next(iter(build_train_loader(cfg_one))), device)
    return head, volume, batch
