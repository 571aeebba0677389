from fvcore.common.registry import Registry

IMAGE_BACKBONE_REGISTRY = Registry("IMAGE_BACKBONE")
IMAGE_BACKBONE_REGISTRY.__doc__ = """
Registry for image backbones.

A registered class is called as `cls(cfg)` and returns an `nn.Module` with
`forward(images: Tensor (N, 3, H, W), normalised) -> dict[str, Tensor (N, C, H / s, W / s)]`
and `output_shape() -> dict[str, ShapeSpec(channels=C, stride=s)]`. Images are normalised by
the caller (`normalize_images` with MODEL.PIXEL_MEAN / PIXEL_STD). Backbones that mask image
patches in training also accept `return_mask=True` and then return `(features, patch_mask)`
(patch_mask (N, rows, cols) bool, True for masked patches, or None when nothing was masked).
"""


def build_image_backbone(cfg):
    """Build `cfg.MODEL.IMAGE_BACKBONE.NAME`."""
    return IMAGE_BACKBONE_REGISTRY.get(cfg.MODEL.IMAGE_BACKBONE.NAME)(cfg)
