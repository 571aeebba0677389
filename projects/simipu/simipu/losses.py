"""Contrastive loss and the projection head of SimIPU."""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "info_nce"]


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE: each query must pick its own key among all keys.

    Args:
        queries: (M, D) embeddings; row k's positive is row k of `keys`, every other row of
            `keys` is a negative.
        keys: (M, D) embeddings (the caller detaches them for a stop-gradient side).
        temperature: softmax temperature tau of the cosine similarities.
    Returns:
        scalar mean cross-entropy over the M queries.
    """
    logits = F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).T / temperature
    targets = torch.arange(queries.shape[0], device=queries.device)
    return F.cross_entropy(logits, targets)


class ProjectionHead(nn.Sequential):
    """3-layer MLP (Linear-BN-ReLU, Linear-BN-ReLU, Linear) mapping features (M, C_in) to
    embeddings (M, out_channels). Training-mode batch norm needs M >= 2."""

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int):
        super().__init__(
            nn.Linear(in_channels, hidden_channels, bias=False),
            nn.BatchNorm1d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_channels, hidden_channels, bias=False),
            nn.BatchNorm1d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_channels, out_channels),
        )
