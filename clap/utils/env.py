"""Seeding, random-number-generator states and a description of the software environment."""

import hashlib
import importlib.metadata
import os
import platform
import random
import sys
from datetime import datetime
from typing import Any, Dict, Optional

import numpy as np
import torch

__all__ = ["collect_env_info", "derive_seed", "get_rng_states", "seed_all_rng", "set_rng_states"]


def seed_all_rng(seed: Optional[int] = None) -> int:
    """Seed python's `random`, numpy's global RNG and torch (CPU and every GPU).

    Args:
        seed: the seed; None draws one from the process id, the clock and os.urandom.
    Returns:
        The seed used (so a drawn seed can be logged).
    """
    if seed is None:
        seed = (
            os.getpid()
            + int(datetime.now().strftime("%S%f"))
            + int.from_bytes(os.urandom(2), "big")
        ) % 2**31
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def derive_seed(*parts: int) -> int:
    """A seed in [0, 2**31) mixed from integers (run seed, rank, worker id, sample position...).

    Unlike `sum` or `hash`, nearby inputs give unrelated seeds, and the value is the same in
    every process and python version.
    """
    digest = hashlib.sha256(",".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") % 2**31


def get_rng_states() -> Dict[str, Any]:
    """The state of every global RNG this process uses, as tensors and python primitives.

    The result can be saved in a checkpoint that is loaded with `torch.load(weights_only=True)`.
    """
    np_state = np.random.get_state(legacy=False)
    states = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    """Restore what `get_rng_states` returned (the CUDA state only when CUDA is in use)."""
    random.setstate(_as_python_random_state(states["python"]))
    numpy_state = states["numpy"]
    key = numpy_state["key"].numpy().astype(np.uint32)
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": key, "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def _as_python_random_state(state):
    """`random.setstate` needs tuples; a round trip through a checkpoint may give lists."""
    version, internal, gauss_next = state
    return (version, tuple(internal), gauss_next)


def collect_env_info() -> str:
    """A multi-line description of python, torch, CUDA and the main libraries, for the log.

    Library versions come from the installed package metadata (nothing heavy is imported).
    """
    rows = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", " ")),
        ("platform", platform.platform()),
        ("torch", f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"),
        ("torch debug build", str(torch.version.debug)),
        ("CPU threads (torch)", str(torch.get_num_threads())),
        ("CUDA available", str(torch.cuda.is_available())),
    ]
    if torch.cuda.is_available():
        rows.append(("CUDA (torch built with)", str(torch.version.cuda)))
        rows.append(("cuDNN", str(torch.backends.cudnn.version())))
        for index in range(torch.cuda.device_count()):
            rows.append((f"GPU {index}", torch.cuda.get_device_name(index)))
    for distribution in (
        "numpy",
        "fvcore",
        "iopath",
        "nuscenes-devkit",
        "opencv-python-headless",
        "tensorboard",
        "trimesh",
        "embreex",
        "scipy",
        "torchsparse",
    ):
        rows.append((distribution, _installed_version(distribution)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
