"""A tiny regression model, data sets, mapper, collate function and evaluator for engine tests.

Importing this module registers `TinyRegressionModel` (META_ARCH_REGISTRY) and the data sets
"tiny_regression_train" / "tiny_regression_test" (DatasetCatalog).

The model has dropout and the mapper adds random noise (numpy and torch RNGs), so runs are
reproducible only when model RNG states, sample order and per-sample seeds are all restored.
Set the environment variable CLAP_TINY_STEP_SECONDS to slow each iteration down (to interrupt
a run in the middle).
"""

import importlib.util
import os
import sys
import time
from typing import Dict, List

import numpy as np
import torch
from torch import nn

from clap.data import DatasetCatalog
from clap.data.build import build_test_loader, build_train_loader
from clap.engine import DefaultTrainer, HookBase
from clap.modeling import META_ARCH_REGISTRY
from clap.utils import comm

INPUT_DIM = 4
TRAIN_NAME = "tiny_regression_train"
TEST_NAME = "tiny_regression_test"
_TRUE_WEIGHTS = np.array([1.5, -2.0, 0.5, 1.0], dtype=np.float32)


def make_tiny_dicts(num_samples: int, seed: int) -> List[dict]:
    """Samples {"index", "x" (INPUT_DIM,) float32, "y" float} of a noisy linear function."""
    rng = np.random.RandomState(seed)
    x = rng.randn(num_samples, INPUT_DIM).astype(np.float32)
    y = x @ _TRUE_WEIGHTS + 0.1 * rng.randn(num_samples).astype(np.float32)
    return [{"index": i, "x": x[i], "y": float(y[i])} for i in range(num_samples)]


def tiny_mapper(dataset_dict: dict) -> dict:
    """One sample -> tensors, with random input noise (torch) and random scaling (numpy)."""
    scale = float(np.random.uniform(0.9, 1.1))
    x = torch.from_numpy(np.asarray(dataset_dict["x"])) + 0.05 * torch.randn(INPUT_DIM)
    return {
        "x": x * scale,
        "y": torch.tensor(dataset_dict["y"] * scale, dtype=torch.float32),
        "index": dataset_dict["index"],
    }


def tiny_test_mapper(dataset_dict: dict) -> dict:
    """One sample -> tensors, no augmentation."""
    return {
        "x": torch.from_numpy(np.asarray(dataset_dict["x"])),
        "y": torch.tensor(dataset_dict["y"], dtype=torch.float32),
        "index": dataset_dict["index"],
    }


def tiny_collate(samples: List[dict]) -> Dict[str, torch.Tensor]:
    return {
        "x": torch.stack([s["x"] for s in samples]),
        "y": torch.stack([s["y"] for s in samples]),
        "index": torch.tensor([s["index"] for s in samples]),
    }


class WeightNormEMAHook(HookBase):
    """A stateful hook: counts steps and keeps an EMA of the output layer's weight norm."""

    def __init__(self, momentum: float = 0.9):
        self.momentum = momentum
        self.steps = 0
        self.weight_norm_ema = 0.0

    def after_step(self):
        model = self.trainer.model
        model = getattr(model, "module", model)
        norm = float(model.out.weight.detach().norm())
        self.steps += 1
        self.weight_norm_ema = self.momentum * self.weight_norm_ema + (1 - self.momentum) * norm
        if comm.is_main_process():
            self.trainer.storage.put_scalar("weight_norm_ema", self.weight_norm_ema)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "weight_norm_ema": self.weight_norm_ema}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.weight_norm_ema = float(state["weight_norm_ema"])


class StepDelayHook(HookBase):
    """Sleeps after every step (makes a run long enough to be interrupted)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def after_step(self):
        time.sleep(self.seconds)


class TinyRegressionModel(nn.Module):
    """x (B, INPUT_DIM) -> y (B,): Linear, LayerNorm, ReLU, Dropout(0.2), Linear."""

    def __init__(self, cfg):
        super().__init__()
        self.hidden = nn.Linear(INPUT_DIM, 16)
        self.norm = nn.LayerNorm(16)
        self.dropout = nn.Dropout(0.2)
        self.out = nn.Linear(16, 1)

    def forward(self, batch: dict):
        features = self.dropout(torch.relu(self.norm(self.hidden(batch["x"]))))
        prediction = self.out(features).squeeze(-1)
        if not self.training:
            return [{"prediction": p} for p in prediction]
        error = prediction - batch["y"]
        return {"loss_mse": (error**2).mean(), "loss_l1": 0.1 * error.abs().mean()}

    def build_hooks(self, cfg) -> List[HookBase]:
        hooks: List[HookBase] = [WeightNormEMAHook()]
        delay = float(os.environ.get("CLAP_TINY_STEP_SECONDS", "0"))
        if delay > 0:
            hooks.append(StepDelayHook(delay))
        return hooks


class TinyMSEEvaluator:
    """Mean squared error of the predictions, over every rank."""

    def reset(self):
        self._squared_errors = []

    def process(self, batch, outputs):
        predictions = torch.stack([o["prediction"] for o in outputs])
        self._squared_errors.extend(((predictions - batch["y"]) ** 2).tolist())

    def evaluate(self):
        all_errors = [e for part in comm.gather(self._squared_errors) for e in part]
        if not comm.is_main_process():
            return None
        return {"mse": float(np.mean(all_errors)), "num_samples": len(all_errors)}


class TinyTrainer(DefaultTrainer):
    """DefaultTrainer with the tiny data pipeline and evaluator."""

    @classmethod
    def build_train_loader(cls, cfg, start_iter: int = 0):
        return build_train_loader(
            cfg, mapper=tiny_mapper, collate_fn=tiny_collate, start_iter=start_iter
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        return build_test_loader(
            cfg, dataset_name, mapper=tiny_test_mapper, collate_fn=tiny_collate
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str):
        return TinyMSEEvaluator()


if "TinyRegressionModel" not in META_ARCH_REGISTRY:
    META_ARCH_REGISTRY.register(TinyRegressionModel)
if TRAIN_NAME not in DatasetCatalog:
    DatasetCatalog.register(TRAIN_NAME, lambda: make_tiny_dicts(24, seed=1))
if TEST_NAME not in DatasetCatalog:
    DatasetCatalog.register(TEST_NAME, lambda: make_tiny_dicts(10, seed=2))


def hook_states_without_wall_clock(hook_states: dict) -> dict:
    """A checkpoint's hook states without the wall-clock scalars ("time", "data_time") among
    PeriodicWriter's recent values: what two equal runs share."""
    states = {name: dict(state) for name, state in hook_states.items()}
    writer = states.get("PeriodicWriter")
    if writer is not None:
        writer["recent_scalars"] = {
            name: values
            for name, values in writer["recent_scalars"].items()
            if name not in ("time", "data_time")
        }
    return states


def tiny_train_command(output_dir, *opts, resume=False, num_gpus=1, config_file=None):
    """The command line running tests/tiny_train_net.py (as tools/train_net.py would run)."""
    here = os.path.dirname(os.path.abspath(__file__))
    command = [sys.executable, os.path.join(here, "tiny_train_net.py")]
    command += ["--config-file", config_file or os.path.join(here, "configs", "tiny.yaml")]
    command += ["--num-gpus", str(num_gpus)]
    if resume:
        command.append("--resume")
    return command + ["OUTPUT_DIR", str(output_dir), *[str(o) for o in opts]]


def load_train_net_module():
    """tools/train_net.py imported as a module (its `setup`, `main`, `invoke_main`)."""
    path = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "train_net.py"
    )
    spec = importlib.util.spec_from_file_location("train_net", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
