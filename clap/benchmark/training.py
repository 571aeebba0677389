"""Where the time and memory of a training step go (`benchmark_training`).

Runs training steps of a model built from a config (data loading, forward, backward, optimizer
step, as `SimpleTrainer.run_step` does) and splits each step by component with
`ComponentProfiler`. The numbers are medians over the timed iterations (warm-up iterations
excluded). `tools/benchmark.py` is the command line; docs/performance.md explains the method.
"""

import logging
import time
from typing import Dict, List

import torch

from .memory import PeakMemory, max_rss_bytes
from .profiler import ComponentProfiler, clap_components
from .timing import median, synchronize, to_device

__all__ = ["benchmark_training"]

logger = logging.getLogger(__name__)

def _rendered_rays(sampled: dict) -> int:
    """Rays one step rendered: LiDAR rays plus camera pixels of the sampler's output."""
    rays = 0
    if sampled.get("lidar_ray_index") is not None:
        rays += sampled["lidar_ray_index"].numel()
    if sampled.get("pixel_uv") is not None:
        rays += sampled["pixel_uv"].numel() // 2
    return rays


class _TrainingStep:
    """One instrumented training step of a model (data, forward, backward, optimizer)."""

    def __init__(self, cfg, model, optimizer, loader, profiler: ComponentProfiler):
        self.cfg = cfg
        self.model = model
        self.optimizer = optimizer
        self.loader = iter(loader)
        self.profiler = profiler
        self.device = torch.device(cfg.MODEL.DEVICE)
        self.amp_dtype = None
        if cfg.SOLVER.AMP.ENABLED:
            self.amp_dtype = torch.bfloat16 if cfg.SOLVER.AMP.DTYPE == "bfloat16" else torch.float16

    def __call__(self) -> Dict[str, object]:
        device = self.device
        wall_start, step_cpu_start = time.perf_counter(), time.process_time()
        batch = next(self.loader)
        batch = to_device(batch, device)
        synchronize(device)
        data_time = time.perf_counter() - wall_start

        self.profiler.start_step()
        start, cpu_start = time.perf_counter(), time.thread_time()
        if self.amp_dtype is None:
            loss_dict = self.model(batch)
        else:
            with torch.autocast(device.type, dtype=self.amp_dtype):
                loss_dict = self.model(batch)
        loss = sum(v for k, v in loss_dict.items() if k.startswith("loss_"))
        synchronize(device)
        forward_time = (time.perf_counter() - start, time.thread_time() - cpu_start)

        self.optimizer.zero_grad(set_to_none=True)
        num_nodes = self.profiler.attach(loss)
        start, cpu_start = time.perf_counter(), time.thread_time()
        loss.backward()
        synchronize(device)
        backward_time = (time.perf_counter() - start, time.thread_time() - cpu_start)

        start = time.perf_counter()
        self.optimizer.step()
        synchronize(device)
        optimizer_time = time.perf_counter() - start
        step = self.profiler.step_times(forward_time, backward_time)
        last = getattr(self.model, "last_step", {}) or {}
        return {
            "data": data_time,
            "forward_total": forward_time[0],
            "backward_total": backward_time[0],
            "forward_total_cpu": forward_time[1],
            "backward_total_cpu": backward_time[1],
            "optimizer": optimizer_time,
            "iteration": time.perf_counter() - wall_start,
            "iteration_cpu": time.process_time() - step_cpu_start,
            "components": step,
            "rays": _rendered_rays(last.get("sampled", {}) or {}),
            "graph_nodes": num_nodes,
        }


def _summarise(steps: List[Dict[str, object]]) -> Dict[str, object]:
    """Medians over steps of every time in `_TrainingStep`'s output."""
    components = {}
    for phase in ("forward", "backward", "forward_cpu", "backward_cpu"):
        names = steps[0]["components"][phase].keys()
        components[phase] = {n: median([s["components"][phase][n] for s in steps]) for n in names}
    summary = {
        key: median([s[key] for s in steps])
        for key in (
            "data", "forward_total", "backward_total", "forward_total_cpu", "backward_total_cpu",
            "optimizer", "iteration", "iteration_cpu",
        )
    }
    summary["components"] = components
    summary["rays"] = int(median([s["rays"] for s in steps]))
    summary["graph_nodes"] = int(median([s["graph_nodes"] for s in steps]))
    summary["data_fraction"] = summary["data"] / summary["iteration"]
    return summary


class _Variant:
    """A model built from one config, with its optimizer, loader and profiled step."""

    def __init__(self, cfg, seed: int):
        from clap.data.build import build_train_loader
        from clap.modeling import build_model
        from clap.solver import build_optimizer
        from clap.utils.env import seed_all_rng

        seed_all_rng(seed)  # the same weights and the same samples for every variant
        self.cfg = cfg
        self.model = build_model(cfg)
        self.model.train()
        self.optimizer = build_optimizer(cfg, self.model)
        self.loader = build_train_loader(cfg)
        components, owners = clap_components(self.model)
        self.profiler = ComponentProfiler(components, owners, torch.device(cfg.MODEL.DEVICE))
        self.sampler = getattr(self.model, "ray_sampler", None)
        head = getattr(self.model, "render_head", None)
        self.samples_per_ray = 0
        if head is not None:
            self.samples_per_ray = head.num_uniform_samples + head.num_importance_samples

    def step(self) -> "_TrainingStep":
        return _TrainingStep(self.cfg, self.model, self.optimizer, self.loader, self.profiler)


def _curvature_overhead(sampled: Dict[str, object], uniform: Dict[str, object]) -> dict:
    """Relative cost of a curvature-sampling run over its uniform-sampling twin."""
    return {
        "wall": sampled["iteration"] / uniform["iteration"] - 1.0,
        "cpu": sampled["iteration_cpu"] / uniform["iteration_cpu"] - 1.0,
        "ray_sampling_fraction": sampled["components"]["forward_cpu"].get("ray_sampling", 0.0)
        / sampled["iteration_cpu"],
    }


def benchmark_training(
    cfg,
    num_iterations: int = 5,
    num_warmup: int = 2,
    compare_uniform: bool = False,
    data_loader_samples: int = 0,
    baseline_cfg=None,
) -> Dict[str, object]:
    """Time training steps of `cfg`'s model on `cfg.DATASETS.TRAIN`.

    Builds the model (`build_model`), the optimizer (`build_optimizer`) and the training loader
    (`build_train_loader`, DATALOADER.NUM_WORKERS workers), then runs `num_warmup` untimed and
    `num_iterations` timed steps. Each step: wait for the next batch (data time), forward (under
    autocast with SOLVER.AMP.ENABLED), backward, optimizer step.

    Args:
        compare_uniform: for a ray sampler with a `use_uniform` switch (curvature sampling),
            alternate the switch step by step (same process, interleaved) and report both runs
            and the relative cost of the sampler against uniform sampling.
        data_loader_samples: > 0 also measures the loader alone
            (`clap.data.benchmark.benchmark_data_loading` with the training mapper) on this
            many samples.
        baseline_cfg: a second config (e.g. `cfg` with float32 encoders) whose model, built
            with the same seed, runs step by step alternately with `cfg`'s in this process
            (run "baseline", and "baseline uniform" with `compare_uniform`), so that the two are
            compared under the same machine load.

    Returns:
        dict: `config` facts, `runs` {"main": summary[, "uniform": summary][, "baseline":
        summary, "baseline uniform": summary]} with per-run medians (seconds): `data`,
        `forward_total`, `backward_total`, `optimizer`, `iteration` (wall), `iteration_cpu`
        (process CPU time of the main process), `components` {"forward": {name: s},
        "backward": {name: s}} (including "other"), `rays` (rendered per step),
        `ray_samples_per_second` (rays x samples per ray / render forward + backward),
        `data_fraction`; `memory` (`peak_rss_mb`: largest resident set of the main process
        during the timed steps, `max_rss_mb`: over its whole life, `cuda_max_allocated_mb` on
        CUDA; with a baseline, of both models together); `curvature_overhead` (compare_uniform;
        `baseline_curvature_overhead` too with a baseline); `speedup` (baseline_cfg: the
        baseline's median iteration over the main one's, {"wall", "cpu"}); `data_loader`
        (data_loader_samples).
    """
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    device = torch.device(cfg.MODEL.DEVICE)
    seed = cfg.SEED if cfg.SEED >= 0 else 0
    variants = {"main": _Variant(cfg, seed)}
    if baseline_cfg is not None:
        variants["baseline"] = _Variant(baseline_cfg, seed)
    modes = []  # (run name, variant name, uniform sampling)
    for name, variant in variants.items():
        if compare_uniform and not hasattr(variant.sampler, "use_uniform"):
            raise ValueError(
                f"compare_uniform needs a ray sampler with a `use_uniform` switch; "
                f"MODEL.RAY_SAMPLER.NAME is {variant.cfg.MODEL.RAY_SAMPLER.NAME!r}"
            )
        modes.append((name, name, False))
        if compare_uniform:
            modes.append(("uniform" if name == "main" else f"{name} uniform", name, True))
    steps: Dict[str, List[Dict[str, object]]] = {run: [] for run, _, _ in modes}

    for variant in variants.values():
        variant.profiler.__enter__()
    try:
        step_of = {name: variant.step() for name, variant in variants.items()}
        memory = PeakMemory(device, release_free_memory=False)
        for index in range((num_warmup + num_iterations) * len(modes)):
            run, name, uniform = modes[index % len(modes)]
            if compare_uniform:
                variants[name].sampler.use_uniform = uniform
            timed = index >= num_warmup * len(modes)
            if index == num_warmup * len(modes):
                memory.__enter__()
            result = step_of[name]()
            if timed:
                steps[run].append(result)
            logger.info(
                f"benchmark step {index}: {run}, {result['iteration']:.3f} s"
                + ("" if timed else " (warm-up)")
            )
        memory.__exit__(None, None, None)
    finally:
        for variant in variants.values():
            variant.profiler.__exit__(None, None, None)

    runs = {}
    for run, name, _ in modes:
        summary = _summarise(steps[run])
        render = summary["components"]["forward"].get("render", 0.0) + summary["components"][
            "backward"
        ].get("render", 0.0)
        summary["ray_samples_per_second"] = (
            summary["rays"] * variants[name].samples_per_ray / render
            if render > 0
            else float("nan")
        )
        runs[run] = summary
    result: Dict[str, object] = {
        "config": {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "num_workers": cfg.DATALOADER.NUM_WORKERS,
            "batch_size": cfg.SOLVER.IMS_PER_BATCH,
            "num_iterations": num_iterations,
            "num_warmup": num_warmup,
            "ray_sampler": cfg.MODEL.RAY_SAMPLER.NAME,
            "samples_per_ray": variants["main"].samples_per_ray,
            "max_iter": cfg.SOLVER.MAX_ITER,
        },
        "runs": runs,
        "memory": {
            "peak_rss_mb": memory.peak_bytes / 2**20 if device.type == "cpu" else None,
            "max_rss_mb": max_rss_bytes() / 2**20,
            "cuda_max_allocated_mb": (
                memory.peak_bytes / 2**20 if device.type == "cuda" else None
            ),
        },
    }
    if compare_uniform:
        result["curvature_overhead"] = _curvature_overhead(runs["main"], runs["uniform"])
    if baseline_cfg is not None:
        result["speedup"] = {
            "wall": runs["baseline"]["iteration"] / runs["main"]["iteration"],
            "cpu": runs["baseline"]["iteration_cpu"] / runs["main"]["iteration_cpu"],
        }
        if compare_uniform:
            result["baseline_curvature_overhead"] = _curvature_overhead(
                runs["baseline"], runs["baseline uniform"]
            )
    if data_loader_samples > 0:
        result["data_loader"] = _data_loader_throughput(cfg, data_loader_samples)
    return result


def _data_loader_throughput(cfg, num_samples: int) -> Dict[str, float]:
    from clap.data.benchmark import benchmark_data_loading
    from clap.data.build import get_dataset_dicts
    from clap.data.mapper import build_mapper

    dataset_dicts = get_dataset_dicts(cfg.DATASETS.TRAIN, cfg)
    return benchmark_data_loading(
        dataset_dicts,
        build_mapper(cfg, is_train=True),
        cfg.DATALOADER.NUM_WORKERS,
        num_samples,
        batch_size=cfg.SOLVER.IMS_PER_BATCH,
    )
