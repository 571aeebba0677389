"""CLAP: joint LiDAR + camera pre-training by rendering the fused volume, with prototypes."""

from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from clap.config import configurable
from clap.layers import VolumeGrid

from ..fusion import build_fusion
from ..image_backbone import build_image_backbone
from ..lidar_backbone import build_lidar_backbone
from ..prototype_head import build_prototype_head
from ..ray_sampler import build_ray_sampler
from ..render_head import build_render_head
from ..render_head.rays import build_rays
from ..view_transform import build_view_transform, project_points
from .build import META_ARCH_REGISTRY

__all__ = ["CLAP", "occupied_cells", "unmasked_camera_cells"]


def occupied_cells(voxel_coords: torch.Tensor, batch_size: int, grid: VolumeGrid) -> torch.Tensor:
    """Dense-volume cells holding at least one input voxel.

    Args:
        voxel_coords: (V, 4) int `[batch, x, y, z]` on the input voxel grid.
        batch_size: B.
        grid: the shared grid.

    Returns:
        (B, Z, Y, X) bool.
    """
    z_n, y_n, x_n = grid.volume_shape
    occupied = torch.zeros(batch_size, z_n, y_n, x_n, dtype=torch.bool, device=voxel_coords.device)
    if voxel_coords.shape[0] > 0:
        coords = voxel_coords.long()
        stride = coords.new_tensor(grid.volume_stride)
        cell = coords[:, 1:] // stride
        occupied[coords[:, 0], cell[:, 2], cell[:, 1], cell[:, 0]] = True
    return occupied


def unmasked_camera_cells(
    patch_mask: torch.Tensor, patch_size: int, lidar2img: torch.Tensor,
    image_size: Sequence[int], grid: VolumeGrid, min_depth: float,
) -> torch.Tensor:
    """Dense-volume cells whose centre some camera sees at a pixel of an unmasked patch.

    Pixel convention of `clap.modeling.view_transform` (integer pixel centres; pixel (row i,
    column j) covers area coordinates [j, j + 1) x [i, i + 1)); patch (r, c) covers pixel rows
    [r p, (r + 1) p) and columns [c p, (c + 1) p), as in `mask_image_patches`.

    Args:
        patch_mask: (B * N_cam, rows, cols) bool, True for masked patches, camera-major within
            each sample.
        patch_size: p, patch edge in pixels.
        lidar2img: (B, N_cam, 4, 4).
        image_size: (H, W) pixels.
        grid: the shared grid.
        min_depth: meters; a cell centre not farther than this in front of a camera is unseen.

    Returns:
        (B, Z, Y, X) bool.
    """
    batch_size, num_cameras = lidar2img.shape[:2]
    rows, cols = patch_mask.shape[-2:]
    centers = grid.volume_centers(device=lidar2img.device, dtype=torch.float32).reshape(-1, 3)
    uv, _, in_front = project_points(centers, lidar2img, min_depth)
    u, v = (uv + 0.5).unbind(-1)  # area coordinates
    height, width = image_size
    inside = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    row = torch.div(v, patch_size, rounding_mode="floor").long().clamp(0, rows - 1)
    col = torch.div(u, patch_size, rounding_mode="floor").long().clamp(0, cols - 1)
    unmasked = ~patch_mask.reshape(batch_size, num_cameras, rows * cols)
    seen_unmasked = inside & unmasked.gather(2, row * cols + col)
    return seen_unmasked.any(dim=1).reshape(batch_size, *grid.volume_shape)


@META_ARCH_REGISTRY.register()
class CLAP(nn.Module):
    """LiDAR encoder + camera encoder + fusion, pre-trained by differentiable rendering.

    One step: encode the (masked) voxels into P^ (B, C_P, Z, Y, X) and the (masked) images into
    I^ (B, C_I, Z, Y, X), fuse them into F^, let the ray sampler choose LiDAR rays and pixels
    (curvature sampling reads the field of F^ at the observed points), render them with the
    render head, and tie the modalities with the prototype head at cells where both have data.

    With one modality in MODEL.MODALITIES it is the single-modal rendering baseline (UniPAD
    style): the other encoder, and the prototype head, are left out.

    Pairs for the prototype head are the cells where both modalities carry data after masking:
    at least one LiDAR voxel the block masking kept, and a camera that sees the cell centre at
    a pixel of an unmasked patch (every cell the lift sees when the images are not masked).

    The encoders keep the attribute names `lidar_backbone`, `image_backbone`, `view_transform`
    and `fusion`; the detector loads pre-trained weights by these prefixes.
    """

    @configurable
    def __init__(
        self,
        *,
        volume_grid: VolumeGrid,
        lidar_backbone: Optional[nn.Module],
        image_backbone: Optional[nn.Module],
        view_transform: Optional[nn.Module],
        fusion: nn.Module,
        render_head: nn.Module,
        ray_sampler,
        prototype_head: Optional[nn.Module],
        pixel_mean: List[float],
        pixel_std: List[float],
        image_mask_patch_size: int = 32,
        camera_min_depth: float = 0.1,
    ):
        """
        Args:
            volume_grid: the grid every volume lives on.
            lidar_backbone: voxels -> P^, or None for a camera-only model.
            image_backbone, view_transform: images -> I^, or None for a LiDAR-only model.
            fusion: (P^, I^) -> F^.
            render_head: neural field and renderer on F^.
            ray_sampler: chooses the rays rendered in a step.
            prototype_head: swapped prototype prediction on (P^, I^), or None.
            pixel_mean, pixel_std: RGB normalisation of 0-255 images.
            image_mask_patch_size: patch edge (pixels) of the image backbone's masking.
            camera_min_depth: meters; cells closer to a camera than this are not seen by it
                (the lift's MIN_DEPTH), for the pairing of masked images.
        """
        super().__init__()
        if lidar_backbone is None and image_backbone is None:
            raise ValueError("CLAP needs at least one of the LiDAR and camera encoders")
        if (image_backbone is None) != (view_transform is None):
            raise ValueError("image_backbone and view_transform come together")
        if prototype_head is not None and (lidar_backbone is None or image_backbone is None):
            raise ValueError("the prototype head needs both the LiDAR and the camera encoder")
        self.volume_grid = volume_grid
        self.lidar_backbone = lidar_backbone
        self.image_backbone = image_backbone
        self.view_transform = view_transform
        self.fusion = fusion
        self.render_head = render_head
        self.ray_sampler = ray_sampler
        self.prototype_head = prototype_head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 1, 3, 1, 1), False)
        self.image_mask_patch_size = image_mask_patch_size
        self.camera_min_depth = camera_min_depth
        self.last_step: Dict[str, object] = {}

    @classmethod
    def from_config(cls, cfg):
        modalities = set(cfg.MODEL.MODALITIES)
        unknown = modalities - {"lidar", "camera"}
        if unknown or not modalities:
            raise ValueError(
                "MODEL.MODALITIES must hold 'lidar' and/or 'camera', got "
                f"{list(cfg.MODEL.MODALITIES)}"
            )
        lidar_backbone = build_lidar_backbone(cfg) if "lidar" in modalities else None
        image_backbone = view_transform = None
        if "camera" in modalities:
            image_backbone = build_image_backbone(cfg)
            view_transform = build_view_transform(cfg, image_backbone.output_shape())
        lidar_shape = lidar_backbone.output_shape() if lidar_backbone is not None else None
        camera_shape = view_transform.output_shape() if view_transform is not None else None
        fusion = build_fusion(cfg, lidar_shape, camera_shape)
        prototype_head = None
        if modalities == {"lidar", "camera"} and cfg.MODEL.PROTOTYPE_HEAD.LOSS_WEIGHT > 0:
            prototype_head = build_prototype_head(cfg, lidar_shape, camera_shape)
        return {
            "volume_grid": VolumeGrid.from_config(cfg),
            "lidar_backbone": lidar_backbone,
            "image_backbone": image_backbone,
            "view_transform": view_transform,
            "fusion": fusion,
            "render_head": build_render_head(cfg, fusion.output_shape()),
            "ray_sampler": build_ray_sampler(cfg),
            "prototype_head": prototype_head,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "image_mask_patch_size": cfg.MODEL.IMAGE_BACKBONE.MASK_PATCH_SIZE,
            "camera_min_depth": cfg.MODEL.VIEW_TRANSFORM.MIN_DEPTH,
        }

    def encode(self, batch: dict) -> Dict[str, torch.Tensor]:
        """The encoders' volumes for a batch (docs/data.md).

        Returns:
            dict with "fused" F^ (B, C_F, Z, Y, X) and, per present modality, the volume and
            the cells where that modality carries data after masking, (B, Z, Y, X) bool:
            "lidar" P^ and "lidar_observed" (cells with at least one kept voxel), "camera" I^
            and "camera_observed" (cells seen at an unmasked pixel, `unmasked_camera_cells`).
        """
        batch_size = batch["batch_size"]
        volumes: Dict[str, torch.Tensor] = {}
        if self.lidar_backbone is not None:
            volumes["lidar"], keep = self.lidar_backbone(
                batch["voxel_features"], batch["voxel_coords"], batch_size, return_mask=True
            )
            volumes["lidar_observed"] = occupied_cells(
                batch["voxel_coords"][keep], batch_size, self.volume_grid
            )
        if self.image_backbone is not None:
            images = (batch["images"] - self.pixel_mean) / self.pixel_std
            features, patch_mask = self.image_backbone(images.flatten(0, 1), return_mask=True)
            volumes["camera"], visible = self.view_transform(
                features, batch["lidar2img"], batch["image_size"]
            )
            volumes["camera_observed"] = visible
            if patch_mask is not None:
                volumes["camera_observed"] = visible & unmasked_camera_cells(
                    patch_mask, self.image_mask_patch_size, batch["lidar2img"],
                    batch["image_size"], self.volume_grid, self.camera_min_depth,
                )
        volumes["fused"] = self.fusion(volumes.get("lidar"), volumes.get("camera"))
        return volumes

    def forward(self, batch: dict) -> Dict[str, torch.Tensor]:
        """One pre-training step's losses ("loss_*" scalars) for a batch (docs/data.md)."""
        volumes = self.encode(batch)
        field_volume = self.render_head.prepare_volume(volumes["fused"])
        sampled = self.ray_sampler.sample(batch, self.render_head.field_function(field_volume))
        rendered = self.render_head.render(field_volume, build_rays(batch, sampled))
        losses = {k: v for k, v in rendered.items() if k.startswith("loss_")}
        prototype_outputs = {}
        if self.prototype_head is not None:
            paired = volumes["lidar_observed"] & volumes["camera_observed"]
            prototype_outputs = self.prototype_head(volumes["lidar"], volumes["camera"], paired)
            losses.update({k: v for k, v in prototype_outputs.items() if k.startswith("loss_")})
        self.last_step = {
            "batch": batch,
            "field_volume": field_volume.detach(),
            "sampled": sampled,
            "rendered": {k: v for k, v in rendered.items() if not k.startswith("loss_")},
            "prototypes": {
                k: v for k, v in prototype_outputs.items() if not k.startswith("loss_")
            },
        }
        return losses

    def build_hooks(self, cfg) -> list:
        """Hooks the trainer registers for this model: prototype EM and Gram terms, the ray
        sampler's warm-up, and the TensorBoard views."""
        from clap.engine.clap_hooks import build_clap_hooks
        from clap.engine.clap_visualization import ClapVisualizationHook

        hooks = build_clap_hooks(cfg, self, iterations_per_epoch(cfg))
        if cfg.VIS_PERIOD > 0:
            hooks.append(ClapVisualizationHook(self, cfg.VIS_PERIOD))
        return hooks


def iterations_per_epoch(cfg) -> int:
    """Iterations in one pass over DATASETS.TRAIN at SOLVER.IMS_PER_BATCH samples each."""
    from clap.data.build import get_dataset_dicts

    num_samples = len(get_dataset_dicts(cfg.DATASETS.TRAIN, cfg))
    return max(1, num_samples // cfg.SOLVER.IMS_PER_BATCH)
