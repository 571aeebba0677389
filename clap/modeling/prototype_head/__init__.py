from .build import PROTOTYPE_HEAD_REGISTRY, build_prototype_head
from .diagnostics import (
    assignment_perplexity,
    perplexity_from_counts,
    prototype_spread,
    top_singular_share,
)
from .gram import (
    GRAM_TERMS,
    get_gram_term,
    gram_mean_off_diagonal,
    gram_mean_squared_off_diagonal,
)
from .sinkhorn import reduction_world_size, sinkhorn_knopp
from .swapped_prototype_head import SwappedPrototypeHead

__all__ = [
    "GRAM_TERMS", "PROTOTYPE_HEAD_REGISTRY", "SwappedPrototypeHead", "assignment_perplexity",
    "build_prototype_head", "get_gram_term", "gram_mean_off_diagonal",
    "gram_mean_squared_off_diagonal", "perplexity_from_counts", "prototype_spread",
    "reduction_world_size", "sinkhorn_knopp", "top_singular_share",
]
