from .build import PROTOTYPE_HEAD_REGISTRY, build_prototype_head
from .sinkhorn import reduction_world_size, sinkhorn_knopp
from .swapped_prototype_head import (
    SwappedPrototypeHead,
    assignment_perplexity,
    gram_regularizer,
    perplexity_from_counts,
)

__all__ = [
    "PROTOTYPE_HEAD_REGISTRY", "SwappedPrototypeHead", "assignment_perplexity",
    "build_prototype_head", "gram_regularizer", "perplexity_from_counts", "reduction_world_size",
    "sinkhorn_knopp",
]
