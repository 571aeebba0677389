from .build import IMAGE_BACKBONE_REGISTRY, build_image_backbone
from .fpn import FPN, ResNetFPN
from .layers import FrozenBatchNorm2d, mask_image_patches, normalize_images
from .resnet import ResNet, read_torchvision_state_dict

__all__ = [
    "FPN", "IMAGE_BACKBONE_REGISTRY", "FrozenBatchNorm2d", "ResNet", "ResNetFPN",
    "build_image_backbone", "mask_image_patches", "normalize_images",
    "read_torchvision_state_dict",
]
