"""Process-group helpers that also work without torch.distributed (a single process).

Every function here is safe to call when no process group is initialised: it then behaves as a
world of one process. Collective calls (`synchronize`, `all_gather`, `gather`, `reduce_dict`,
`shared_random_seed`) must be called by every rank in the same order.
"""

import os
from typing import Any, Dict, List

import numpy as np
import torch
import torch.distributed as dist

# Set by `clap.engine.launch` (or read from LOCAL_RANK / LOCAL_WORLD_SIZE under torchrun).
_LOCAL_RANK = None
_LOCAL_SIZE = None


def is_dist_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the default process group (1 without one)."""
    return dist.get_world_size() if is_dist_initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default process group (0 without one)."""
    return dist.get_rank() if is_dist_initialized() else 0


def get_local_rank() -> int:
    """Rank of this process among the processes of its machine (the GPU index it uses)."""
    if _LOCAL_RANK is not None:
        return _LOCAL_RANK
    return int(os.environ.get("LOCAL_RANK", 0)) if is_dist_initialized() else 0


def get_local_size() -> int:
    """Number of processes on this machine."""
    if _LOCAL_SIZE is not None:
        return _LOCAL_SIZE
    if is_dist_initialized():
        return int(os.environ.get("LOCAL_WORLD_SIZE", get_world_size()))
    return 1


def set_local_rank(local_rank: int, local_size: int) -> None:
    """Record this process's place on its machine (called by the launcher)."""
    global _LOCAL_RANK, _LOCAL_SIZE
    _LOCAL_RANK, _LOCAL_SIZE = int(local_rank), int(local_size)


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all ranks; a no-op in a single process."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather(data: Any) -> List[Any]:
    """Gather one picklable object from every rank; every rank gets the list ordered by rank."""
    world_size = get_world_size()
    if world_size == 1:
        return [data]
    gathered = [None] * world_size
    dist.all_gather_object(gathered, data)
    return gathered


def gather(data: Any, dst: int = 0) -> List[Any]:
    """Gather one picklable object from every rank on rank `dst` (others get an empty list)."""
    world_size = get_world_size()
    if world_size == 1:
        return [data]
    if get_rank() == dst:
        gathered = [None] * world_size
        dist.gather_object(data, gathered, dst=dst)
        return gathered
    dist.gather_object(data, None, dst=dst)
    return []


def reduce_dict(
    input_dict: Dict[str, torch.Tensor], average: bool = True
) -> Dict[str, torch.Tensor]:
    """Sum (or average) a dict of scalar tensors over ranks; the result is valid on rank 0.

    Every rank must pass the same keys. Keys are processed in sorted order.
    """
    world_size = get_world_size()
    if world_size == 1:
        return dict(input_dict)
    with torch.no_grad():
        names = sorted(input_dict)
        values = torch.stack([input_dict[k].detach().reshape(()) for k in names])
        dist.reduce(values, dst=0)
        if dist.get_rank() == 0 and average:
            values /= world_size
    return dict(zip(names, values))


def shared_random_seed() -> int:
    """A random integer in [0, 2**31) that is the same on every rank (drawn on rank 0).

    Uses numpy's global RNG of rank 0, so it is reproducible once `seed_all_rng` ran.
    """
    seed = int(np.random.randint(2**31))
    return all_gather(seed)[0]
