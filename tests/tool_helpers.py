"""What tests of the command-line tools share: loading a tool as a module, and the tiny CLAP
config on the real frame."""

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import List

import torch
from nuscenes_frame_helpers import FRAME_ROOT

from clap.config import get_cfg
from clap.modeling import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY_CLAP = ROOT / "tests" / "configs" / "clap_tiny.yaml"


def load_tool(name: str) -> ModuleType:
    """`tools/<name>.py` as a module (its `main` is not run)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame_overrides(cache_dir) -> List[str]:
    """KEY VALUE overrides: the real frame, its sample cache in `cache_dir`, and no process-wide
    allocator or thread settings in the test process."""
    return ["DATASETS.ROOT", str(FRAME_ROOT), "DATASETS.CACHE_DIR", str(cache_dir),
            "CPU.NUM_THREADS", "1", "CPU.KEEP_FREED_MEMORY", "False"]


def tiny_clap_cfg(overrides: List[str]):
    """The tiny CLAP config with `overrides` merged."""
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY_CLAP))
    cfg.merge_from_list(list(overrides))
    return cfg


def seeded_model(cfg, seed: int = 0) -> torch.nn.Module:
    """`build_model(cfg)` with its weights drawn after `torch.manual_seed(seed)`."""
    torch.manual_seed(seed)
    return build_model(cfg)
