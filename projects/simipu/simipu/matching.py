"""Correspondences between the points sampled in two views of one cloud."""

from typing import Tuple

import torch
from scipy.optimize import linear_sum_assignment

from .views import transform_points

__all__ = ["match_views"]


def match_views(
    view1_xyz: torch.Tensor, view2_xyz: torch.Tensor, view_transform: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pair the view-2 points with view-1 points by a minimum-cost one-to-one assignment.

    View-2 points are mapped back into view 1 (inverse of `view_transform`), then the Hungarian
    algorithm (`scipy.optimize.linear_sum_assignment`) minimises the summed Euclidean distance.

    Args:
        view1_xyz: (N1, 3) points of view 1, meters.
        view2_xyz: (N2, 3) points of view 2, meters.
        view_transform: (4, 4) view 2 = view_transform @ view 1.
    Returns:
        view1_index, view2_index: (min(N1, N2),) long, on the device of `view1_xyz`; pair k is
        (view1_xyz[view1_index[k]], view2_xyz[view2_index[k]]).
    """
    device = view1_xyz.device
    if view1_xyz.shape[0] == 0 or view2_xyz.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    inverse = torch.linalg.inv(view_transform.to(torch.float64))
    back = transform_points(view2_xyz[:, :3].detach().to(torch.float64), inverse)
    cost = torch.cdist(back, view1_xyz[:, :3].detach().to(torch.float64))
    view2_index, view1_index = linear_sum_assignment(cost.cpu().numpy())
    return (
        torch.as_tensor(view1_index, dtype=torch.long, device=device),
        torch.as_tensor(view2_index, dtype=torch.long, device=device),
    )
