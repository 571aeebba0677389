"""SimIPU baseline: contrastive LiDAR / image pre-training on clap's encoders.

Importing this package registers the `SimIPU` meta-architecture in clap's META_ARCH_REGISTRY.
"""

from .config import add_simipu_config
from .meta_arch import SimIPU
from .solver import AdamWSGD, build_split_optimizer

__all__ = ["AdamWSGD", "SimIPU", "add_simipu_config", "build_split_optimizer"]
