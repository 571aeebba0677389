"""Two CPU processes (gloo, `launch`) train every shipped config for two iterations, each shrunk
by overrides to tiny inputs (small grid and images, few voxels, rays and points), in one group.
Used by tests/test_launch.py:

    python tests/ddp_configs_probe.py <data root> <output folder>

The data root is a synthetic world (`clap.data.synthetic.generate_dataset`) with a mini_train
split and one sweep. Each process trains the configs one after the other with the trainer its
entry point uses (DefaultTrainer, or SimIPU's), with the model's own hooks and the LR scheduler
(no checkpoints, writers or evaluation), and rank 0 writes `<output folder>/results.json`:
config path -> "ok" or the error of the first rank that failed. DistributedDataParallel runs
with `find_unused_parameters` as the config sets it, so a parameter that the forward does not
use fails the second iteration.
"""

import glob
import importlib.util
import json
import os
import sys
import time
import traceback
from datetime import timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import clap.modeling  # noqa: E402,F401  (registers every model component)
from clap.config import get_cfg  # noqa: E402
from clap.data.datasets import register_from_config  # noqa: E402
from clap.engine import DefaultTrainer, hooks, launch  # noqa: E402
from clap.utils import comm  # noqa: E402
from clap.utils.env import seed_all_rng  # noqa: E402

CONFIG_GLOBS = ("configs/**/*.yaml", "projects/*/configs/**/*.yaml")
# Bases that are not a model by themselves, and the configs built on them that cover them.
NOT_TRAINABLE = {
    # PassThroughFusion with both modalities of Base-CLAP: each child chooses one
    "projects/single_modal/configs/Base-SingleModal.yaml": (
        "projects/single_modal/configs/nuscenes/camera_only.yaml",
        "projects/single_modal/configs/nuscenes/lidar_only.yaml",
    ),
}


def shipped_configs() -> list:
    """Every yaml config of configs/ and projects/*/configs/ (relative to the repository) that
    describes a model by itself."""
    found = set()
    for pattern in CONFIG_GLOBS:
        found.update(glob.glob(os.path.join(ROOT, pattern), recursive=True))
    found = {os.path.relpath(path, ROOT) for path in found}
    return sorted(found - set(NOT_TRAINABLE))


def _load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entry_point(config: str):
    """(function adding the project's config keys or None, trainer class) of a config's
    train_net.py."""
    if config.startswith("projects/simipu/"):
        module = _load_module("projects/simipu/train_net.py", "simipu_train_net")
        from simipu import add_simipu_config

        return add_simipu_config, module.SimIPUTrainer
    if config.startswith("projects/single_modal/"):
        _load_module("projects/single_modal/train_net.py", "single_modal_train_net")
        from single_modal import add_single_modal_config

        return add_single_modal_config, DefaultTrainer
    return None, DefaultTrainer


def tiny_config(config: str, data_root: str, output_dir: str, add_config=None):
    """The config of `config` on the tiny world: the same model structure, tiny inputs."""
    cfg = get_cfg()
    if add_config is not None:
        add_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.INPUT.POINT_CLOUD_RANGE = [-16.0, -16.0, -3.0, 16.0, 16.0, 3.0]
    cfg.INPUT.VOXEL_SIZE = [0.5, 0.5, 0.375]  # 64 x 64 x 16 voxels
    cfg.INPUT.NUM_SWEEPS = min(cfg.INPUT.NUM_SWEEPS, 1)
    cfg.INPUT.MAX_VOXELS_TRAIN = cfg.INPUT.MAX_VOXELS_TEST = 2000
    cfg.INPUT.IMAGE_SIZE = [32, 96]
    if cfg.INPUT.CAMERAS:
        cfg.INPUT.CAMERAS = ["CAM_FRONT", "CAM_BACK"]
    cfg.MODEL.IMAGE_BACKBONE.MASK_PATCH_SIZE = 16
    cfg.MODEL.LIDAR_BACKBONE.MASK_BLOCK_SIZE = 4
    sampler = cfg.MODEL.RAY_SAMPLER
    sampler.NUM_LIDAR_RAYS = min(sampler.NUM_LIDAR_RAYS, 64)
    sampler.NUM_PIXELS_PER_CAMERA = min(sampler.NUM_PIXELS_PER_CAMERA, 16)
    sampler.CURVATURE_MAX_POINTS = 256
    cfg.MODEL.RENDER_HEAD.NUM_UNIFORM_SAMPLES = 8
    cfg.MODEL.RENDER_HEAD.NUM_IMPORTANCE_SAMPLES = 4
    cfg.MODEL.PROTOTYPE_HEAD.EM_PERIOD = 1
    if "SIMIPU" in cfg.MODEL:
        cfg.MODEL.SIMIPU.NUM_POINTS = 32
    cfg.DATASETS.ROOT = data_root
    cfg.DATASETS.VERSION = "v1.0-mini"
    cfg.DATASETS.CACHE_DIR = os.path.join(output_dir, "cache")
    cfg.DATASETS.TRAIN = ["nuscenes_v1.0-mini_mini_train"]
    cfg.DATASETS.TEST = []
    cfg.DATASETS.TRAIN_FRACTION = 1.0
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2  # one sample per process
    cfg.SOLVER.MAX_ITER = 2
    cfg.SOLVER.WARMUP_ITERS = 0
    # bfloat16 autocast of the GPU configs on the CPU at these tiny inputs can blow up in the
    # second iteration; the process layout does not depend on it
    cfg.SOLVER.AMP.ENABLED = False
    cfg.VIS_PERIOD = 0
    cfg.CPU.NUM_THREADS = 1
    cfg.OUTPUT_DIR = os.path.join(output_dir, config.replace("/", "_"))
    cfg.freeze()
    return cfg


def _probe_trainer(trainer_class):
    class ProbeTrainer(trainer_class):
        def build_hooks(self):
            return [hooks.LRScheduler(self.scheduler), *self.build_model_hooks()]

    return ProbeTrainer


def train_two_iterations(config: str, data_root: str, output_dir: str) -> None:
    add_config, trainer_class = _entry_point(config)
    cfg = tiny_config(config, data_root, output_dir, add_config)
    register_from_config(cfg)
    seed_all_rng(cfg.SEED + comm.get_rank())
    trainer = _probe_trainer(trainer_class)(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    if trainer.iter != cfg.SOLVER.MAX_ITER:
        raise RuntimeError(f"stopped at iteration {trainer.iter}")


def main(data_root: str, output_dir: str) -> None:
    torch.set_num_threads(1)
    results = {}
    for config in shipped_configs():
        start = time.perf_counter()
        try:
            train_two_iterations(config, data_root, output_dir)
            error = None
        except Exception:  # noqa: BLE001 -- reported per config, the next one still runs
            error = traceback.format_exc(limit=4)
        errors = [e for e in comm.all_gather(error) if e is not None]
        results[config] = {"result": errors[0] if errors else "ok",
                           "seconds": round(time.perf_counter() - start, 2)}
    if comm.is_main_process():
        with open(os.path.join(output_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    launch(main, 2, args=(sys.argv[1], sys.argv[2]), timeout=timedelta(seconds=120))
