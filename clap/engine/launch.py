"""Start one training process per GPU (or per CPU slot), or join a torchrun-started group.

    launch(main, num_gpus_per_machine=2, dist_url="auto", args=(args,))

spawns two processes running `main(args)` in a process group: NCCL with one GPU per process
when CUDA is available, otherwise gloo on the CPU (so `--num-gpus 2` on a CPU-only machine
trains with two CPU processes). Under `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK set in the
environment) nothing is spawned: the process joins the group through env:// and runs `main`.
"""

import logging
import os
import socket
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from clap.utils import comm

__all__ = ["DEFAULT_TIMEOUT", "launch"]

DEFAULT_TIMEOUT = timedelta(minutes=30)

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _find_free_port() -> int:
    """A TCP port that is free on this machine right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _started_by_torchrun() -> bool:
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run `main_func(*args)` in every process of a (possibly single-process) group.

    Args:
        main_func: must be importable by name (a module-level function): spawned processes
            re-import the main module.
        num_gpus_per_machine: processes per machine (one per GPU; CPU processes without GPU).
        num_machines, machine_rank: several machines each run `launch` with their rank.
        dist_url: rendezvous such as "tcp://10.0.0.1:29500"; None or "auto" picks a free
            local port (one machine only).
        args: arguments of `main_func` (picklable).
        timeout: for collective operations.
    """
    logger = logging.getLogger(__name__)
    if _started_by_torchrun():
        logger.info("Started by torchrun: joining its process group (env://), not spawning")
        _run_under_torchrun(main_func, args, timeout)
        return
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError(
                "dist_url='auto' works on one machine only; with --num-machines > 1 give "
                "--dist-url tcp://<address of machine 0>:<port>"
            )
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url)
        + (tuple(args), timeout),
        daemon=False,
        start_method="spawn",
    )


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: timedelta,
) -> None:
    use_cuda = torch.cuda.is_available()
    if use_cuda and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"--num-gpus {num_gpus_per_machine} but this machine has "
            f"{torch.cuda.device_count()} GPUs"
        )
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    dist.init_process_group(
        backend=_backend(),
        init_method=dist_url,
        world_size=world_size,
        rank=global_rank,
        timeout=timeout,
    )
    comm.set_local_rank(local_rank, num_gpus_per_machine)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    comm.synchronize()
    try:
        main_func(*args)
        comm.synchronize()
    finally:
        dist.destroy_process_group()


def _run_under_torchrun(main_func: Callable[..., Any], args: Sequence[Any], timeout) -> None:
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    comm.set_local_rank(local_rank, local_size)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if world_size <= 1:
        main_func(*args)
        return
    dist.init_process_group(backend=_backend(), init_method="env://", timeout=timeout)
    try:
        main_func(*args)
        comm.synchronize()
    finally:
        dist.destroy_process_group()
