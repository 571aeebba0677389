"""Gram terms on the prototypes K (N_K, d_K): the regulariser that is meant to keep them apart.

Two forms, selected by MODEL.PROTOTYPE_HEAD.GRAM_TERM:

- "mean_off_diagonal", the paper's literal L_GMM = mean_{i != j} (K K^T)_ij. For unit rows it
  equals (|sum_k K_k|^2 - N_K) / (N_K (N_K - 1)): its gradient is the same for every row, it only
  moves the prototypes' mean to the origin, and a collapse into two antipodal clusters is one of
  its minima (value -1 / (N_K - 1)). It cannot prevent collapse.
- "mean_squared_off_diagonal" (default), mean_{i != j} (K K^T)_ij^2, for unit rows
  ||K K^T - I||_F^2 / (N_K (N_K - 1)): every pair of prototypes is pushed towards orthogonality,
  and the minimum over unit rows is a tight frame (K^T K = (N_K / d_K) I, all singular values
  equal), value (N_K / d_K - 1) / (N_K - 1) when N_K >= d_K, 0 when N_K <= d_K.
"""

from typing import Callable, Dict

import torch

__all__ = [
    "GRAM_TERMS", "gram_mean_off_diagonal", "gram_mean_squared_off_diagonal", "get_gram_term",
]


def _off_diagonal_gram(prototypes: torch.Tensor):
    num_prototypes = prototypes.shape[0]
    if num_prototypes < 2:
        raise ValueError(f"A Gram term needs at least 2 prototypes, got {num_prototypes}")
    gram = prototypes @ prototypes.t()
    return gram, num_prototypes * (num_prototypes - 1)


def gram_mean_off_diagonal(prototypes: torch.Tensor) -> torch.Tensor:
    """The paper's L_GMM: mean of the off-diagonal entries of K K^T.

    Args:
        prototypes: (N_K, d_K), N_K >= 2 (unit rows in CLAP).

    Returns:
        Scalar: for unit rows the mean cosine between distinct prototypes, in [-1 / (N_K - 1), 1].
    """
    gram, num_pairs = _off_diagonal_gram(prototypes)
    return (gram.sum() - gram.diagonal().sum()) / num_pairs


def gram_mean_squared_off_diagonal(prototypes: torch.Tensor) -> torch.Tensor:
    """Mean of the squared off-diagonal entries of K K^T; ||K K^T - I||_F^2 / (N_K (N_K - 1)) for
    unit rows.

    Args:
        prototypes: (N_K, d_K), N_K >= 2.

    Returns:
        Scalar in [0, 1] for unit rows: 1 when every prototype is +-the same vector, 0 when they
        are orthogonal.
    """
    gram, num_pairs = _off_diagonal_gram(prototypes)
    return (gram.pow(2).sum() - gram.diagonal().pow(2).sum()) / num_pairs


GRAM_TERMS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mean_off_diagonal": gram_mean_off_diagonal,
    "mean_squared_off_diagonal": gram_mean_squared_off_diagonal,
}


def get_gram_term(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The Gram term called `name` (a key of `GRAM_TERMS`, MODEL.PROTOTYPE_HEAD.GRAM_TERM)."""
    if name not in GRAM_TERMS:
        raise ValueError(
            f"MODEL.PROTOTYPE_HEAD.GRAM_TERM must be one of {sorted(GRAM_TERMS)}, got {name!r}"
        )
    return GRAM_TERMS[name]
