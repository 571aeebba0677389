"""Collapse diagnostics: how spread the prototypes are, and how evenly cells use them."""

from typing import Dict

import torch

from .gram import gram_mean_squared_off_diagonal

__all__ = [
    "assignment_perplexity", "perplexity_from_counts", "prototype_spread", "top_singular_share",
]


@torch.no_grad()
def top_singular_share(vectors: torch.Tensor) -> float:
    """s_1^2 / sum_i s_i^2 of the singular values of `vectors` (M, d), M >= 1: the fraction of
    their energy along the top direction; 1 when all rows are +-one vector, 1 / min(M, d) when
    they are evenly spread."""
    energy = torch.linalg.svdvals(vectors.detach().float()).pow(2)
    return float(energy[0] / energy.sum().clamp(min=1e-12))


@torch.no_grad()
def prototype_spread(prototypes: torch.Tensor) -> Dict[str, float]:
    """Spread of the prototypes K (N_K, d_K) from the singular values s_1 >= ... >= s_r of K.

    Returns:
        dict of floats:
        - "top_singular_share": s_1^2 / sum_i s_i^2, the fraction of K's energy along its top
          direction: 1 when all prototypes are +-one vector (collapse, antipodal included),
          1 / min(N_K, d_K) for a tight frame (evenly spread);
        - "mean_squared_off_diagonal": `gram_mean_squared_off_diagonal(K)`, mean squared cosine
          between distinct prototypes (for unit rows);
        - "effective_rank": exp(entropy of s / sum s) (Roy and Vetterli, 2007), in
          [1, min(N_K, d_K)]: 1 for a rank-one K, min(N_K, d_K) for equal singular values.
    """
    prototypes = prototypes.detach().float()
    singular_values = torch.linalg.svdvals(prototypes)
    share = singular_values / singular_values.sum().clamp(min=1e-12)
    entropy = -(share * torch.log(share.clamp(min=1e-30))).sum()
    return {
        "top_singular_share": top_singular_share(prototypes),
        "mean_squared_off_diagonal": float(gram_mean_squared_off_diagonal(prototypes)),
        "effective_rank": float(torch.exp(entropy)),
    }


def assignment_perplexity(assignment: torch.Tensor, num_prototypes: int) -> torch.Tensor:
    """exp(entropy) of the histogram of hard assignments: the effective number of prototypes used.

    Args:
        assignment: (N,) long prototype index per cell.
        num_prototypes: N_K.

    Returns:
        Scalar float tensor in [1, N_K]; 0 when `assignment` is empty.
    """
    counts = torch.bincount(assignment, minlength=num_prototypes).float()
    return perplexity_from_counts(counts)


def perplexity_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of the usage distribution `counts / counts.sum()`, (..., N_K) -> (...)."""
    counts = counts.float()
    total = counts.sum(dim=-1, keepdim=True)
    probability = counts / total.clamp(min=1.0)
    entropy = -(probability * torch.log(probability.clamp(min=1e-30))).sum(dim=-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(entropy), torch.zeros_like(entropy))
