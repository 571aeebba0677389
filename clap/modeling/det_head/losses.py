"""Losses of the centre-based detection head."""

import torch
import torch.nn.functional as F


def gaussian_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                        beta: float = 4.0) -> torch.Tensor:
    """Penalty-reduced focal loss of CenterNet on Gaussian heatmaps, summed over all cells.

    At peak cells (target == 1): -(1 - p)^alpha log p. Elsewhere:
    -(1 - target)^beta p^alpha log(1 - p), so cells near a peak are penalised less. The logs come
    from `logsigmoid` of the logits, so no clamping of p is needed.

    Args:
        logits: (B, C, Y, X) heatmap logits.
        target: (B, C, Y, X) Gaussian targets in [0, 1].
    Returns:
        scalar sum (divide by the number of objects to normalise).
    """
    prob = torch.sigmoid(logits)
    positive = target.eq(1).to(logits.dtype)
    positive_loss = -F.logsigmoid(logits) * (1 - prob) ** alpha * positive
    negative_loss = (-F.logsigmoid(-logits) * prob ** alpha * (1 - target) ** beta
                     * (1 - positive))
    return positive_loss.sum() + negative_loss.sum()
