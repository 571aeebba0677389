#!/usr/bin/env python
"""Check the GPU path in one command and write a report (JSON and markdown).

    python tools/gpu_check.py                   # on a machine with a CUDA GPU (about 5 minutes)
    python tools/gpu_check.py --cpu-dry-run     # the same steps at tiny scale on the CPU
    make gpu-check

Steps, each timed and recorded (a failing step is reported and the next one runs):
  environment      torch, CUDA, the device, which optional sparse backends import
  cuda_tests       the tests marked `cuda` (pytest -m cuda; skipped where there is no GPU)
  clap             configs/nuscenes/clap.yaml on the real frame (tests/data/nuscenes_frame) with
                   bf16 autocast at batch 1, 2 and 4: seconds per iteration and peak memory
  detection        configs/nuscenes/detection.yaml, the same way
  sparse_backends  every sparse backend that imports, against the pure-torch one (forward and
                   backward of a strided sparse encoder block)
  trilinear        the twice-differentiable trilinear sampler against grid_sample: agreement
                   (values, gradients, double backward) and speed at the paper's sizes
  ddp              one training process in an NCCL group (gloo for the dry run) with the model
                   in DistributedDataParallel: two steps of the CLAP model, no unused parameter

The report lands in --out (default output/gpu_check): gpu_check.json and gpu_check.md.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable, Dict, List

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import clap.modeling  # noqa: E402,F401  (registers every model component)
from clap.benchmark import benchmark_training, benchmark_trilinear  # noqa: E402
from clap.config import get_cfg  # noqa: E402
from clap.layers.sparse.backend import BACKENDS, resolve_sparse_backend  # noqa: E402
from clap.utils.env import seed_all_rng  # noqa: E402

FRAME_ROOT = os.path.join(ROOT, "tests", "data", "nuscenes_frame")

# The real frame as the training set of a paper-scale config.
FRAME_OVERRIDES = [
    "DATASETS.ROOT", FRAME_ROOT,
    "DATASETS.VERSION", "v1.0-mini",
    "DATASETS.TRAIN", "('nuscenes_v1.0-mini_mini_train',)",
    "DATASETS.TEST", "()",
    "DATASETS.TRAIN_FRACTION", "1.0",
    "SOLVER.AMP.ENABLED", "True",
    "SOLVER.AMP.DTYPE", "bfloat16",
]
# The dry run: the same configs shrunk to seconds on a CPU (small images, coarse voxels,
# ResNet-18, few rays and samples).
TINY_OVERRIDES = [
    "MODEL.DEVICE", "cpu",
    "INPUT.IMAGE_SIZE", "[64, 176]",
    "INPUT.VOXEL_SIZE", "[0.675, 0.675, 0.5]",
    "INPUT.NUM_SWEEPS", "0",
    "INPUT.MAX_VOXELS_TRAIN", "8000",
    "MODEL.IMAGE_BACKBONE.DEPTH", "18",
    "MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS", "128",
    "MODEL.RAY_SAMPLER.NUM_PIXELS_PER_CAMERA", "16",
    "MODEL.RAY_SAMPLER.CURVATURE_MAX_POINTS", "1024",
    "MODEL.RENDER_HEAD.NUM_UNIFORM_SAMPLES", "16",
    "MODEL.RENDER_HEAD.NUM_IMPORTANCE_SAMPLES", "8",
    "DATALOADER.NUM_WORKERS", "0",
]


class Check:
    """The settings of one run of the check: full scale on CUDA, or the CPU dry run."""

    def __init__(self, dry_run: bool, out_dir: str):
        self.dry_run = dry_run
        self.device = "cpu" if dry_run else "cuda"
        self.out_dir = out_dir
        self.batch_sizes = [1, 2] if dry_run else [1, 2, 4]
        self.iterations = 1 if dry_run else 4
        self.warmup = 0 if dry_run else 2
        self.cache_dir = tempfile.mkdtemp(prefix="gpu_check_cache_")

    def config(self, config_file: str, extra: List[str] = ()):
        """`config_file` on the real frame (shrunk for the dry run), with `extra` overrides."""
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(ROOT, config_file))
        overrides = FRAME_OVERRIDES + ["DATASETS.CACHE_DIR", self.cache_dir]
        if self.dry_run:
            overrides += TINY_OVERRIDES
        else:
            overrides += ["MODEL.DEVICE", "cuda", "DATALOADER.NUM_WORKERS", "4"]
        cfg.merge_from_list(overrides + list(extra))
        cfg.freeze()
        return cfg


# ------------------------------------------------------------------------------ steps
def step_environment(check: Check) -> Dict[str, object]:
    info: Dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "dry_run": check.dry_run,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            device_name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    info["sparse_backends"] = _importable_sparse_backends(check.device)
    return info


def step_cuda_tests(check: Check) -> Dict[str, object]:
    """`pytest -m cuda` in a subprocess; its closing line and exit code."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"]
    completed = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240 if check.dry_run else 180
    )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else ""
    # pytest exits 5 when every test was deselected; with cuda tests present it is 0 or 1.
    if completed.returncode not in (0, 5):
        raise RuntimeError(f"pytest -m cuda failed ({summary}):\n{completed.stdout[-4000:]}")
    return {"command": " ".join(command[1:]), "summary": summary, "exit_code": completed.returncode}


def _training_benchmark(check: Check, config_file: str) -> Dict[str, object]:
    rows = []
    for batch_size in check.batch_sizes:
        cfg = check.config(config_file, ["SOLVER.IMS_PER_BATCH", str(batch_size)])
        seed_all_rng(0)
        row: Dict[str, object] = {"batch_size": batch_size}
        try:
            result = benchmark_training(cfg, check.iterations, check.warmup)
        except torch.cuda.OutOfMemoryError as error:
            row["error"] = f"out of memory: {str(error).splitlines()[0]}"
            rows.append(row)
            torch.cuda.empty_cache()
            continue
        main = result["runs"]["main"]
        memory = result["memory"]
        peak = memory["cuda_max_allocated_mb"] or memory["peak_rss_mb"]
        row.update(
            seconds_per_iteration=main["iteration"],
            forward=main["forward_total"],
            backward=main["backward_total"],
            data=main["data"],
            samples_per_second=batch_size / main["iteration"],
            peak_memory_mib=peak,
            memory_kind="cuda max allocated" if memory["cuda_max_allocated_mb"] else "peak RSS",
            rays=main["rays"],
        )
        rows.append(row)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return {"config": config_file, "amp": "bfloat16", "rows": rows}


def step_clap(check: Check) -> Dict[str, object]:
    return _training_benchmark(check, "configs/nuscenes/clap.yaml")


def step_detection(check: Check) -> Dict[str, object]:
    return _training_benchmark(check, "configs/nuscenes/detection.yaml")


def _importable_sparse_backends(device: str) -> List[str]:
    names = []
    for name in BACKENDS:
        if name in ("auto", "torch"):
            continue
        try:
            names.append(resolve_sparse_backend(name, device))
        except (ImportError, ValueError):
            pass
    return names


def step_sparse_backends(check: Check) -> Dict[str, object]:
    """Each importable backend against the pure-torch one on the same sparse encoder block:
    submanifold conv, strided conv, submanifold conv, inverse conv; outputs and gradients."""
    from clap.layers.sparse import (
        SparseConv3d,
        SparseInverseConv3d,
        SparseTensor,
        SubMConv3d,
    )

    device = torch.device(check.device)
    generator = torch.Generator().manual_seed(0)
    shape = (24, 24, 8) if check.dry_run else (360, 360, 20)
    batch_size, channels = 2, 16
    occupancy = 0.05
    cells = torch.rand((batch_size,) + shape, generator=generator) < occupancy
    coords = torch.nonzero(cells)  # (N, 4): batch, x, y, z
    feats = torch.randn(coords.shape[0], channels, generator=generator)
    torch.manual_seed(0)
    modules = torch.nn.ModuleList(
        [SubMConv3d(channels, 32), SparseConv3d(32, 32, 3, 2), SubMConv3d(32, 32),
         SparseInverseConv3d(32, channels, 3, 2)]
    ).to(device)
    grad = torch.linspace(-1, 1, coords.shape[0] * channels, device=device).view(-1, channels)

    def run(backend: str):
        leaf = feats.to(device).requires_grad_(True)
        start = time.perf_counter()
        fine = modules[0](
            SparseTensor(leaf, coords.to(device), shape, batch_size, backend=backend)
        )
        out = modules[3](modules[2](modules[1](fine)), fine)
        modules.zero_grad()
        (out.feats * grad).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return out.feats.detach(), leaf.grad, [m.weight.grad.clone() for m in modules], seconds

    result: Dict[str, object] = {"active_voxels": int(coords.shape[0]), "shape": list(shape)}
    run("torch")  # warm-up
    reference = run("torch")
    result["torch_seconds"] = reference[3]
    candidates = _importable_sparse_backends(check.device)
    result["compared"] = {}
    for name in candidates:
        run(name)
        candidate = run(name)
        differences = [(candidate[0] - reference[0]).abs().max().item(),
                       (candidate[1] - reference[1]).abs().max().item()]
        differences += [(a - b).abs().max().item() for a, b in zip(candidate[2], reference[2])]
        result["compared"][name] = {
            "seconds": candidate[3],
            "max_abs_difference": max(differences),
            "agrees": max(differences) < 1e-3 * max(1.0, reference[0].abs().max().item()),
        }
    if not candidates:
        result["note"] = "no optional sparse backend (torchsparse, spconv) imports here"
    bad = [n for n, r in result["compared"].items() if not r["agrees"]]
    if bad:
        raise RuntimeError(f"sparse backends disagree with pure torch: {bad}: {result}")
    return result


def step_trilinear(check: Check) -> Dict[str, object]:
    """Agreement of trilinear_sample and grid_sample in float64 (values, first and second
    derivatives), then their speed at the render head's size."""
    import torch.nn.functional as F

    from clap.layers.trilinear import trilinear_sample

    device = torch.device(check.device)
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(1, 4, 5, 12, 12, generator=generator, dtype=torch.float64).to(device)
    points = (torch.rand(1, 500, 3, generator=generator, dtype=torch.float64) * 2 - 1).to(device)

    def normals(sampler, volume, points):
        v, p = volume.clone().requires_grad_(True), points.clone().requires_grad_(True)
        value = sampler(v, p).sum(-1)
        (normal,) = torch.autograd.grad(value.sum(), p, create_graph=True)
        (grad_v,) = torch.autograd.grad(normal.square().sum(), v)
        return value.detach(), normal.detach(), grad_v

    def grid(v, p):
        out = F.grid_sample(
            v, p.view(1, -1, 1, 1, 3), mode="bilinear", padding_mode="border", align_corners=True
        )
        return out.view(1, v.shape[1], -1).transpose(1, 2)

    ours, theirs = normals(trilinear_sample, volume, points), normals(grid, volume, points)
    agreement = {
        name: (a - b).abs().max().item()
        for name, a, b in zip(("value", "normal", "double_backward"), ours, theirs)
    }
    shape, num_points = ((1, 8, 5, 24, 24), 4096) if check.dry_run else ((1, 32, 5, 180, 180),
                                                                          8192 * 96)
    speed = benchmark_trilinear(shape, num_points, 2 if check.dry_run else 5, check.device)
    # The render head's double backward (SDF normal, then a loss on it) with either sampler.
    volume32 = torch.randn(shape, generator=generator).to(device)
    points32 = (torch.rand(1, num_points, 3, generator=generator) * 2 - 1).to(device)
    double_backward = {}
    for name, sampler in (("trilinear", trilinear_sample), ("grid_sample", grid)):
        times = []
        for _ in range(3 if check.dry_run else 6):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            normals(sampler, volume32, points32)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        double_backward[name] = sorted(times[1:])[len(times[1:]) // 2]
    return {"max_abs_difference_float64": agreement, "speed": speed,
            "double_backward_seconds": double_backward}


def step_ddp(check: Check) -> Dict[str, object]:
    """Two training steps of the CLAP model in DistributedDataParallel inside a one-process
    group (NCCL on CUDA), in a subprocess: fails on a parameter the forward does not use."""
    command = [sys.executable, os.path.abspath(__file__), "--ddp-worker", "--out", check.out_dir]
    if check.dry_run:
        command.append("--cpu-dry-run")
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        raise RuntimeError(f"DDP worker failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def ddp_worker(check: Check) -> Dict[str, object]:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from clap.data.build import build_train_loader
    from clap.modeling import build_model
    from clap.solver import build_optimizer

    backend = "gloo" if check.dry_run else "nccl"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        cfg = check.config("configs/nuscenes/clap.yaml", ["SOLVER.IMS_PER_BATCH", "1"])
        device = torch.device(cfg.MODEL.DEVICE)
        if device.type == "cuda":
            torch.cuda.set_device(0)
        seed_all_rng(0)
        model = build_model(cfg)
        optimizer = build_optimizer(cfg, model)
        ddp = DistributedDataParallel(
            model,
            device_ids=[0] if device.type == "cuda" else None,
            broadcast_buffers=False,
            find_unused_parameters=False,
        )
        loader = iter(build_train_loader(cfg))
        losses = []
        for _ in range(2):
            # bf16 AMP on the GPU; on the CPU only the model's own bf16 regions
            # (MODEL.CPU_AUTOCAST_DTYPE): the two tiny dry-run steps took over 5 minutes under
            # a global CPU autocast, 21 s without
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss_dict = ddp(next(loader))
            loss = sum(v for k, v in loss_dict.items() if k.startswith("loss_"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        reduced = torch.ones(1, device=device)
        dist.all_reduce(reduced)
        return {"backend": backend, "world_size": 1, "losses": losses,
                "all_reduce": reduced.item()}
    finally:
        dist.destroy_process_group()


STEPS: Dict[str, Callable[[Check], Dict[str, object]]] = {
    "environment": step_environment,
    "cuda_tests": step_cuda_tests,
    "clap": step_clap,
    "detection": step_detection,
    "sparse_backends": step_sparse_backends,
    "trilinear": step_trilinear,
    "ddp": step_ddp,
}


# ----------------------------------------------------------------------------- report
def _fmt(value, digits=3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-2 else f"{value:.{digits}f}"
    return str(value)


def format_markdown(report: Dict[str, object]) -> str:
    env = report["steps"].get("environment", {}).get("result", {})
    lines = [
        f"# GPU check ({'CPU dry run' if report['dry_run'] else 'CUDA'})",
        "",
        f"{report['date']}, commit {report['commit']}, torch {env.get('torch')}, "
        f"device {env.get('device_name', 'cpu')}, total {report['seconds']:.0f} s",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    for name, step in report["steps"].items():
        lines.append(f"| {name} | {step['status']} | {step['seconds']:.1f} |")
    for name in ("clap", "detection"):
        step = report["steps"].get(name, {})
        if step.get("status") != "ok":
            continue
        lines += [
            "",
            f"## {step['result']['config']} (bf16 autocast)",
            "",
            "| batch | s / iteration | samples / s | forward s | backward s | peak memory MiB |",
            "|---|---|---|---|---|---|",
        ]
        for row in step["result"]["rows"]:
            if "error" in row:
                lines.append(f"| {row['batch_size']} | {row['error']} | | | | |")
                continue
            lines.append(
                f"| {row['batch_size']} | {row['seconds_per_iteration']:.3f} | "
                f"{row['samples_per_second']:.2f} | {row['forward']:.3f} | "
                f"{row['backward']:.3f} | {row['peak_memory_mib']:.0f} ({row['memory_kind']}) |"
            )
    for name in ("cuda_tests", "sparse_backends", "trilinear", "ddp"):
        step = report["steps"].get(name, {})
        if step:
            body = step.get("result") or step.get("error")
            lines += ["", f"## {name}", "", "```", json.dumps(body, indent=1)[:3000], "```"]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run_check(check: Check, steps: List[str]) -> Dict[str, object]:
    report: Dict[str, object] = {
        "dry_run": check.dry_run,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "steps": {},
    }
    start = time.perf_counter()
    for name in steps:
        print(f"[gpu_check] {name} ...", flush=True)
        step_start = time.perf_counter()
        try:
            entry = {"status": "ok", "result": STEPS[name](check)}
        except Exception as error:  # a failing step is reported; the others still run
            entry = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                     "traceback": traceback.format_exc()[-4000:]}
        entry["seconds"] = time.perf_counter() - step_start
        report["steps"][name] = entry
        print(f"[gpu_check] {name}: {entry['status']} in {entry['seconds']:.1f} s", flush=True)
        _write(check.out_dir, report, time.perf_counter() - start)
    return report


def _write(out_dir: str, report: Dict[str, object], seconds: float) -> None:
    report["seconds"] = seconds
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out_dir, "gpu_check.md"), "w") as f:
        f.write(format_markdown(report))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny scale on the CPU")
    parser.add_argument("--out", default=os.path.join("output", "gpu_check"), help="report folder")
    parser.add_argument(
        "--steps", nargs="+", default=list(STEPS), choices=list(STEPS), help="steps to run"
    )
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    check = Check(args.cpu_dry_run, args.out)
    if args.ddp_worker:
        print(json.dumps(ddp_worker(check)))
        return 0
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("No CUDA device: run on a GPU machine, or use --cpu-dry-run.", file=sys.stderr)
        return 2
    if args.cpu_dry_run:
        torch.set_num_threads(1)
    report = run_check(check, args.steps)
    print(format_markdown(report))
    failed = [name for name, step in report["steps"].items() if step["status"] != "ok"]
    report_path = os.path.join(args.out, "gpu_check.md")
    print(f"[gpu_check] report: {report_path}; failed steps: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
