"""Downstream 3D detector: the pre-trainable encoders, a BEV backbone and a detection head."""

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from clap.config import configurable
from clap.layers import ShapeSpec, VolumeGrid

from ..bev_backbone import build_bev_backbone
from ..det_head import build_det_head, transform_boxes
from ..fusion import build_fusion
from ..image_backbone import build_image_backbone
from ..lidar_backbone import build_lidar_backbone
from ..view_transform import build_view_transform
from .build import META_ARCH_REGISTRY
from .pretrained import load_pretrained_encoders

_MODALITIES = ("lidar", "camera")
# The sub-modules before the split of `DetectionModel.encode_backbones`.
BACKBONE_PREFIXES = ("lidar_backbone.", "image_backbone.")


@META_ARCH_REGISTRY.register()
class DetectionModel(nn.Module):
    """LiDAR / camera / fused volume -> BEV map -> BEV backbone -> detection head.

    The encoders carry the attribute names of the key contract (`lidar_backbone`,
    `image_backbone`, `view_transform`, `fusion`) so pre-training checkpoints load into them.
    The fused volume (B, C_F, Z, Y, X) becomes a BEV map by folding Z into the channels:
    (B, C_F * Z, Y, X), channel c * Z + z.

    `forward(batch)` (batch of docs/data.md) returns the head's losses in training and, in eval
    mode, one dict per sample: {"sample_token", "boxes" (M, 9) in the LiDAR frame before the
    batch's point augmentation (`aug_matrix` undone), "scores" (M,), "labels" (M,)}.

    The model splits at the backbones' outputs (`BACKBONE_PREFIXES`): `encode_backbones(batch)`
    gives them, and a batch holding them under "backbone_features" (e.g. read from a feature
    cache, with `lidar2img`, `image_size` and, in training, the targets) skips the backbones;
    the lift, fusion, BEV backbone and head run on them.
    """

    @configurable
    def __init__(
        self,
        *,
        lidar_backbone: Optional[nn.Module],
        image_backbone: Optional[nn.Module],
        view_transform: Optional[nn.Module],
        fusion: nn.Module,
        bev_backbone: nn.Module,
        det_head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        pretrained_encoders: str = "",
    ):
        """
        Args:
            lidar_backbone: LiDAR encoder, None for a camera-only model.
            image_backbone, view_transform: camera encoder and lift, both None for LiDAR-only.
            fusion: fusion encoder (also run with a single modality, the other one None).
            bev_backbone: 2D backbone on the flattened volume.
            det_head: detection head on the BEV backbone's output.
            pixel_mean, pixel_std: RGB normalisation of 0-255 images.
            pretrained_encoders: checkpoint path whose encoder weights initialise the model
                (see `load_pretrained_encoders`); empty for none.
        """
        super().__init__()
        if lidar_backbone is None and image_backbone is None:
            raise ValueError("DetectionModel needs at least one of the LiDAR and camera encoders")
        if (image_backbone is None) != (view_transform is None):
            raise ValueError("DetectionModel: image_backbone and view_transform come together")
        self.lidar_backbone = lidar_backbone
        self.image_backbone = image_backbone
        self.view_transform = view_transform
        self.fusion = fusion
        self.bev_backbone = bev_backbone
        self.det_head = det_head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), False)
        self.pretrained_report = None
        if pretrained_encoders:
            self.pretrained_report = load_pretrained_encoders(self, pretrained_encoders)

    @classmethod
    def from_config(cls, cfg):
        modalities = tuple(cfg.MODEL.MODALITIES)
        unknown = [m for m in modalities if m not in _MODALITIES]
        if unknown or not modalities:
            raise ValueError(f"MODEL.MODALITIES must be a non-empty subset of {_MODALITIES}, "
                             f"got {list(modalities)}")
        lidar_backbone = image_backbone = view_transform = None
        lidar_shape = camera_shape = None
        if "lidar" in modalities:
            lidar_backbone = build_lidar_backbone(cfg)
            lidar_shape = lidar_backbone.output_shape()
        if "camera" in modalities:
            image_backbone = build_image_backbone(cfg)
            view_transform = build_view_transform(cfg, image_backbone.output_shape())
            camera_shape = view_transform.output_shape()
        fusion = build_fusion(cfg, lidar_shape, camera_shape)

        fused = fusion.output_shape()
        depth, height, width = VolumeGrid.from_config(cfg).volume_shape
        bev_shape = ShapeSpec(channels=fused.channels * (fused.depth or depth),
                              height=fused.height or height, width=fused.width or width)
        bev_backbone = build_bev_backbone(cfg, bev_shape)
        det_head = build_det_head(cfg, bev_backbone.output_shape())
        return {
            "lidar_backbone": lidar_backbone,
            "image_backbone": image_backbone,
            "view_transform": view_transform,
            "fusion": fusion,
            "bev_backbone": bev_backbone,
            "det_head": det_head,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "pretrained_encoders": cfg.MODEL.PRETRAINED_ENCODERS,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def encode_backbones(self, batch: dict) -> Dict[str, object]:
        """The backbones' outputs of a batch: {"lidar_volume": (B, C_P, Z, Y, X) or None,
        "image_features": {level: (B * N_cam, C, h, w)} or None}."""
        lidar_volume = image_features = None
        if self.lidar_backbone is not None:
            lidar_volume = self.lidar_backbone(
                batch["voxel_features"].to(self.device),
                batch["voxel_coords"].to(self.device),
                batch["batch_size"],
            )
        if self.image_backbone is not None:
            images = batch["images"].to(self.device, torch.float32)
            images = (images.flatten(0, 1) - self.pixel_mean) / self.pixel_std
            image_features = self.image_backbone(images)
        return {"lidar_volume": lidar_volume, "image_features": image_features}

    def encode(self, batch: dict) -> torch.Tensor:
        """The fused volume (B, C_F, Z, Y, X) of a batch (from its "backbone_features" when it
        has them)."""
        features = batch.get("backbone_features")
        if features is None:
            features = self.encode_backbones(batch)
        lidar_volume = camera_volume = None
        if self.lidar_backbone is not None:
            lidar_volume = features["lidar_volume"].to(self.device, torch.float32)
        if self.image_backbone is not None:
            image_features = {name: value.to(self.device, torch.float32)
                              for name, value in features["image_features"].items()}
            camera_volume, _ = self.view_transform(
                image_features,
                batch["lidar2img"].to(self.device, torch.float32),
                tuple(batch["image_size"]),
            )
        return self.fusion(lidar_volume, camera_volume)

    def forward(self, batch: dict):
        volume = self.encode(batch)
        bev = self.bev_backbone(volume.flatten(1, 2))
        if self.training:
            targets = [{"gt_boxes": boxes, "gt_labels": labels}
                       for boxes, labels in zip(batch["gt_boxes"], batch["gt_labels"])]
            return self.det_head(bev, targets)
        return self._postprocess(self.det_head.predict(bev), batch)

    @staticmethod
    def _postprocess(detections: List[Dict[str, torch.Tensor]], batch: dict) -> List[dict]:
        """Undo the point augmentation and attach the sample tokens."""
        results = []
        aug_matrix = batch.get("aug_matrix")
        for index, detection in enumerate(detections):
            boxes = detection["boxes"]
            if aug_matrix is not None:
                original_from_augmented = torch.linalg.inv(aug_matrix[index].double())
                boxes = transform_boxes(boxes, original_from_augmented)
            results.append({
                "sample_token": batch["sample_token"][index],
                "boxes": boxes,
                "scores": detection["scores"],
                "labels": detection["labels"],
            })
        return results
