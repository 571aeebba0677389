"""Sinkhorn-Knopp equipartition of samples over prototypes, correct across DDP ranks."""

import torch
import torch.distributed as dist


def reduction_world_size() -> int:
    """Number of processes that statistics are summed over: 1 unless torch.distributed runs."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _all_reduce(tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """All-reduce `tensor` in place over every rank (no-op in a single process)."""
    if reduction_world_size() > 1:
        dist.all_reduce(tensor, op=op)
    return tensor


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, num_iters: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """Soft codes that spread the samples evenly over the prototypes (SwAV's swapped targets).

    The transport plan starts as `exp(scores / epsilon)`, normalised to total mass 1, and each
    iteration first rescales every prototype's total (a column of `scores`) to 1/K, then every
    sample's total (a row) to 1/B, where K is the number of prototypes and B the number of samples
    over all ranks. After the last iteration each sample's row sums to exactly 1/B and each
    prototype's column to approximately 1/K (exactly once the iterations converge). The result is
    that plan multiplied by B, so every row is a distribution over prototypes that sums to 1.

    Under torch.distributed with world size > 1 the samples are split over the ranks: the plan's
    total mass, the prototype totals and the maximum score are all-reduced, and B is the global
    sample count, so every rank gets its rows of the single-process result on the concatenated
    samples. Every rank must call this function (also with zero local samples).

    Args:
        scores: (..., B_local, K) similarities of this rank's samples to the prototypes (cosine
            similarities in [-1, 1] for unit vectors). Leading dimensions are independent
            problems solved together (one set of collective calls for all of them).
        num_iters: Sinkhorn iterations (each one column and one row normalisation).
        epsilon: entropic regularisation; smaller gives sharper codes.

    Returns:
        (..., B_local, K) float32 codes, rows summing to 1; no gradient.
    """
    if epsilon <= 0:
        raise ValueError(f"Sinkhorn epsilon must be positive, got {epsilon}")
    scores = scores.detach().float()
    num_local = scores.shape[-2]
    # Subtract the global maximum before exponentiating; a constant factor cancels out.
    if num_local > 0:
        local_max = scores.amax(dim=(-2, -1), keepdim=True)
    else:
        local_max = scores.new_full(scores.shape[:-2] + (1, 1), float("-inf"))
    global_max = _all_reduce(local_max.contiguous(), op=dist.ReduceOp.MAX)
    plan = torch.exp((scores - global_max) / epsilon)

    num_prototypes = scores.shape[-1]
    num_samples = _all_reduce(torch.tensor(float(num_local), device=scores.device))
    total_mass = _all_reduce(plan.sum(dim=(-2, -1), keepdim=True))
    plan = plan / total_mass
    for _ in range(num_iters):
        prototype_mass = _all_reduce(plan.sum(dim=-2, keepdim=True))
        plan = plan / (prototype_mass * num_prototypes)
        plan = plan / (plan.sum(dim=-1, keepdim=True) * num_samples)
    return plan * num_samples
