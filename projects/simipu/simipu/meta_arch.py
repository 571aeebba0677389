"""SimIPU: intra-modal (point <-> point) and inter-modal (image <-> point) contrastive
pre-training of clap's LiDAR and image encoders."""

from typing import Dict, List, Sequence

import torch
from torch import nn

from clap.config import configurable
from clap.layers import VolumeGrid
from clap.modeling import META_ARCH_REGISTRY, build_image_backbone, build_lidar_backbone
from clap.modeling.image_backbone import normalize_images

from .losses import ProjectionHead, info_nce
from .matching import match_views
from .sampling import (
    project_to_first_camera,
    sample_image_features,
    sample_point_subset,
    sample_volume_at_points,
)
from .views import SecondView

__all__ = ["SimIPU"]

_BATCH_TENSORS = ("points", "points_batch", "voxel_features", "voxel_coords", "images",
                  "lidar2img")


@META_ARCH_REGISTRY.register()
class SimIPU(nn.Module):
    """Contrastive pre-training of a LiDAR encoder and an image encoder.

    For each sample, view 1 is the batch's (augmented) point cloud and view 2 the same cloud
    rotated / scaled / mirrored by `second_view` and re-voxelized. Both views go through
    `lidar_backbone` (one call on 2B volumes); `num_points` points per view are sampled
    independently and their features read from the dense volumes by trilinear interpolation,
    then projected by `point_head`.

    - Intra-modal: view-2 points are mapped back to view 1 and paired with view-1 points by
      Hungarian matching on distances; InfoNCE with view-2 embeddings as queries and the
      (stop-gradient) view-1 embeddings as keys.
    - Inter-modal: view-1 points are projected into the images (`lidar2img`); those in front of a
      camera and inside its image (the first such camera) take the bilinear `image_feature` of
      `image_backbone` at their pixel, projected by `image_head`; InfoNCE with image embeddings
      as queries and the (stop-gradient) view-1 point embeddings as keys.

    Negatives are all other pairs of the batch. A loss without at least two pairs is an exact
    zero that still reaches the parameters it would train (so every rank back-propagates
    through the same modules).
    """

    @configurable
    def __init__(
        self, *, lidar_backbone: nn.Module, image_backbone: nn.Module, point_head: nn.Module,
        image_head: nn.Module, grid: VolumeGrid, second_view: SecondView, image_feature: str,
        num_points: int, point_sampling: str, temperature: float, inter_weight: float,
        min_depth: float, pixel_mean: Sequence[float], pixel_std: Sequence[float],
    ):
        """
        Args:
            lidar_backbone: sparse voxels -> dense volume (B, C_P, Z, Y, X) (clap's contract).
            image_backbone: (N, 3, H, W) normalised images -> dict of feature maps.
            point_head: (M, C_P) -> (M, D) projection of point features.
            image_head: (M, C_img) -> (M, D) projection of image features.
            grid: the input voxel grid and dense volume (INPUT.*, MODEL.VOLUME_STRIDE).
            second_view: draws and voxelizes view 2.
            image_feature: key of the image backbone output that is sampled.
            num_points: points sampled per view and sample.
            point_sampling: "random" or "farthest".
            temperature: InfoNCE temperature.
            inter_weight: weight of the inter-modal loss.
            min_depth: meters in front of a camera below which a point is not seen.
            pixel_mean, pixel_std: RGB image normalisation (0-255 values).
        """
        super().__init__()
        self.lidar_backbone = lidar_backbone
        self.image_backbone = image_backbone
        self.point_head = point_head
        self.image_head = image_head
        self.grid = grid
        self.second_view = second_view
        self.image_feature = image_feature
        self.image_stride = _image_feature_shape(image_backbone, image_feature).stride
        self.num_points = int(num_points)
        self.point_sampling = point_sampling
        self.temperature = float(temperature)
        self.inter_weight = float(inter_weight)
        self.min_depth = float(min_depth)
        self.pixel_mean = [float(v) for v in pixel_mean]
        self.pixel_std = [float(v) for v in pixel_std]

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.SIMIPU
        lidar_backbone = build_lidar_backbone(cfg)
        image_backbone = build_image_backbone(cfg)
        point_channels = lidar_backbone.output_shape().channels
        image_channels = _image_feature_shape(image_backbone, c.IMAGE_FEATURE).channels
        return {
            "lidar_backbone": lidar_backbone,
            "image_backbone": image_backbone,
            "point_head": ProjectionHead(point_channels, c.PROJ_HIDDEN_DIM, c.PROJ_DIM),
            "image_head": ProjectionHead(image_channels, c.PROJ_HIDDEN_DIM, c.PROJ_DIM),
            "grid": VolumeGrid.from_config(cfg),
            "second_view": SecondView(
                c.ROTATION, c.SCALE, c.FLIP_PROB, cfg.INPUT.POINT_CLOUD_RANGE,
                cfg.INPUT.VOXEL_SIZE, cfg.INPUT.MAX_POINTS_PER_VOXEL, cfg.INPUT.MAX_VOXELS_TRAIN,
            ),
            "image_feature": c.IMAGE_FEATURE,
            "num_points": c.NUM_POINTS,
            "point_sampling": c.POINT_SAMPLING,
            "temperature": c.TEMPERATURE,
            "inter_weight": c.INTER_WEIGHT,
            "min_depth": c.MIN_DEPTH,
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
        }

    @property
    def device(self) -> torch.device:
        return next(self.point_head.parameters()).device

    def forward(self, batch: Dict[str, object]) -> Dict[str, torch.Tensor]:
        """
        Args:
            batch: a collated batch (docs/data.md); uses points, points_batch, voxel_features,
                voxel_coords, images, lidar2img, image_size, batch_size.
        Returns:
            {"loss_intra": scalar, "loss_inter": scalar (already times INTER_WEIGHT)}.
        """
        if not self.training:
            raise RuntimeError("SimIPU is a pre-training model: it only runs in training mode")
        batch = dict(batch)
        for key in _BATCH_TENSORS:
            batch[key] = batch[key].to(self.device)
        batch_size = int(batch["batch_size"])

        # Both views through the LiDAR encoder at once (view 2 as samples B .. 2B - 1).
        view_transforms, view2_points, view2_features, view2_coords = self.second_view(
            batch["points"], batch["points_batch"], batch_size
        )
        view2_coords = view2_coords.clone()
        view2_coords[:, 0] += batch_size
        volumes = self.lidar_backbone(
            torch.cat([batch["voxel_features"], view2_features]),
            torch.cat([batch["voxel_coords"], view2_coords]),
            2 * batch_size,
        )

        view1_xyz, view1_features, view2_pair_features, view1_pair_index = self._sample_and_match(
            batch, volumes, view_transforms, view2_points
        )

        # One head call on both views (shared batch-norm statistics).
        num_view1 = view1_features.shape[0]
        if num_view1 + view2_pair_features.shape[0] >= 2:
            embeddings = self.point_head(torch.cat([view1_features, view2_pair_features]))
            view1_embeddings, view2_embeddings = embeddings[:num_view1], embeddings[num_view1:]
        else:
            view1_embeddings = view2_embeddings = None
        if view2_pair_features.shape[0] >= 2:
            loss_intra = info_nce(
                view2_embeddings, view1_embeddings[view1_pair_index].detach(), self.temperature
            )
        else:
            loss_intra = _zero_loss([volumes], [self.point_head])

        loss_inter = self._inter_modal_loss(batch, view1_xyz, view1_embeddings)
        return {"loss_intra": loss_intra, "loss_inter": self.inter_weight * loss_inter}

    def _sample_and_match(self, batch, volumes, view_transforms, view2_points):
        """Sample points in each view, read their volume features, match view 2 to view 1.

        Returns:
            view1_xyz: per sample (P_b, 3) sampled view-1 points;
            view1_features: (sum P_b, C_P) their features, samples concatenated;
            view2_pair_features: (M, C_P) features of the matched view-2 points;
            view1_pair_index: (M,) row of `view1_features` each of them is matched to.
        """
        batch_size = int(batch["batch_size"])
        point_cloud_range = self.grid.point_cloud_range
        view1_xyz, view1_features, view2_pair_features, view1_pair_index = [], [], [], []
        offset = 0
        for index in range(batch_size):
            xyz1 = batch["points"][batch["points_batch"] == index, :3]
            xyz1 = xyz1[sample_point_subset(xyz1, self.num_points, self.point_sampling)]
            xyz2 = view2_points[index][:, :3]
            xyz2 = xyz2[sample_point_subset(xyz2, self.num_points, self.point_sampling)]
            index1, index2 = match_views(xyz1, xyz2, view_transforms[index])
            features1 = sample_volume_at_points(volumes[index], xyz1, point_cloud_range)
            features2 = sample_volume_at_points(
                volumes[batch_size + index], xyz2[index2], point_cloud_range
            )
            view1_xyz.append(xyz1)
            view1_features.append(features1)
            view2_pair_features.append(features2)
            view1_pair_index.append(index1 + offset)
            offset += xyz1.shape[0]
        return (view1_xyz, torch.cat(view1_features), torch.cat(view2_pair_features),
                torch.cat(view1_pair_index))

    def _inter_modal_loss(
        self, batch: Dict[str, object], view1_xyz: List[torch.Tensor], view1_embeddings
    ) -> torch.Tensor:
        """InfoNCE between image features at the visible view-1 points (queries) and the
        points' stop-gradient embeddings (keys)."""
        images = batch["images"]
        batch_size, num_cameras = images.shape[:2]
        images = normalize_images(images.flatten(0, 1), self.pixel_mean, self.pixel_std)
        feature_maps = self.image_backbone(images)[self.image_feature]
        feature_maps = feature_maps.view(batch_size, num_cameras, *feature_maps.shape[1:])
        image_features, visible_rows = [], []
        offset = 0
        for index, xyz in enumerate(view1_xyz):
            camera, uv, visible = project_to_first_camera(
                xyz, batch["lidar2img"][index], batch["image_size"], self.min_depth
            )
            image_features.append(sample_image_features(
                feature_maps[index], self.image_stride, camera[visible], uv[visible]
            ))
            visible_rows.append(visible.nonzero().squeeze(1) + offset)
            offset += xyz.shape[0]
        image_features = torch.cat(image_features)
        if image_features.shape[0] < 2:
            return _zero_loss([feature_maps], [self.image_head])
        keys = view1_embeddings[torch.cat(visible_rows)].detach()
        return info_nce(self.image_head(image_features), keys, self.temperature)


def _image_feature_shape(image_backbone: nn.Module, name: str):
    shapes = image_backbone.output_shape()
    if name not in shapes:
        raise ValueError(f"MODEL.SIMIPU.IMAGE_FEATURE '{name}' is not an output of the image "
                         f"backbone {type(image_backbone).__name__}; it returns {sorted(shapes)} "
                         "(a ResNetFPN: the levels of MODEL.IMAGE_BACKBONE.FPN.OUT_FEATURES)")
    return shapes[name]


def _zero_loss(tensors: List[torch.Tensor], modules: List[nn.Module]) -> torch.Tensor:
    """An exact 0 that depends on `tensors` and on the parameters of `modules`."""
    total = sum(t.sum() for t in tensors)
    for module in modules:
        total = total + sum(p.sum() for p in module.parameters())
    return total * 0.0
