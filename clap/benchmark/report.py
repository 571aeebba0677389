"""Text tables of the benchmarks' results (milliseconds)."""

from typing import Dict

__all__ = [
    "format_training_table",
    "format_ray_scaling_table",
    "format_ray_samplers_table",
    "format_trilinear_table",
]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f}"


def format_trilinear_table(result: Dict[str, object]) -> str:
    """A text table of `benchmark_trilinear`'s result."""
    lines = [
        f"volume {tuple(result['volume_shape'])} (B, C, Z, Y, X), {result['num_points']} points, "
        f"device {result['device']}, {result['threads']} torch threads; forward + backward",
        f"{'case':<28}{'wall ms':>10}{'CPU ms':>10}",
    ]
    for name in ("grid_sample", "trilinear", "trilinear_double_backward"):
        lines.append(
            f"{name:<28}{_ms(result[name]['seconds']):>10}{_ms(result[name]['cpu_seconds']):>10}"
        )
    lines.append(
        f"trilinear / grid_sample: {result['ratio']:.2f}x wall, {result['cpu_ratio']:.2f}x CPU"
    )
    return "\n".join(lines)


def format_training_table(result: Dict[str, object]) -> str:
    """A text table of `benchmark_training`'s result (milliseconds, medians; wall time and CPU
    time of the main thread). With one or two runs, forward and backward apart; with more,
    forward + backward per run."""
    runs = result["runs"]
    modes = list(runs)
    config = result["config"]
    lines = [
        f"device {config['device']}, {config['threads']} torch threads, "
        f"{config['num_workers']} data workers, batch {config['batch_size']}, "
        f"median of {config['num_iterations']} steps after {config['num_warmup']} warm-up; "
        "milliseconds, wall / CPU"
    ]
    if len(modes) <= 2:
        labels = ("fwd", "bwd", "fwd CPU", "bwd CPU")
        columns = (("forward",), ("backward",), ("forward_cpu",), ("backward_cpu",))
        totals = (
            ("total", ("forward_total", "backward_total", "forward_total_cpu",
                       "backward_total_cpu")),
            ("optimizer step", ("optimizer",)),
            ("data wait", ("data",)),
            ("iteration", ("iteration", None, "iteration_cpu")),
        )
    else:
        labels = ("f+b", "f+b CPU")
        columns = (("forward", "backward"), ("forward_cpu", "backward_cpu"))
        totals = (
            ("total", (("forward_total", "backward_total"),
                       ("forward_total_cpu", "backward_total_cpu"))),
            ("optimizer step", ("optimizer",)),
            ("data wait", ("data",)),
            ("iteration", ("iteration", "iteration_cpu")),
        )
    width = 14 if len(labels) == 4 else max(10, max(len(mode) for mode in modes) // 2 + 2)
    if len(modes) > 1:
        lines.append(f"{'':<16}" + "".join(f"{mode:>{width * len(labels)}}" for mode in modes))
    header = f"{'component':<16}" + "".join(
        f"{label:>{width}}" for _ in modes for label in labels
    )
    lines += [header, "-" * len(header)]
    for name in runs[modes[0]]["components"]["forward"]:
        cells = "".join(
            f"{_ms(sum(runs[mode]['components'][p].get(name, 0.0) for p in phases)):>{width}}"
            for mode in modes
            for phases in columns
        )
        lines.append(f"{name:<16}{cells}")
    lines.append("-" * len(header))
    for label, keys in totals:
        cells = ""
        for mode in modes:
            for index in range(len(labels)):
                key = keys[index] if index < len(keys) else None
                if key is None:
                    cells += f"{'':>{width}}"
                    continue
                keys_summed = (key,) if isinstance(key, str) else key
                cells += f"{_ms(sum(runs[mode][k] for k in keys_summed)):>{width}}"
        lines.append(f"{label:<16}{cells}")
    for mode in modes:
        run = runs[mode]
        rendering = ""
        if run["rays"] > 0:
            rendering = (
                f"; {run['rays']} rays x {config['samples_per_ray']} samples, "
                f"{run['ray_samples_per_second']:.3g} ray samples/s (render forward + backward, "
                "wall)"
            )
        lines.append(f"{mode}: data wait {run['data_fraction']:.1%} of the iteration{rendering}")
    memory = result["memory"]
    if memory.get("cuda_max_allocated_mb") is not None:
        lines.append(f"CUDA max allocated {memory['cuda_max_allocated_mb']:.0f} MB")
    if memory.get("peak_rss_mb") is not None:
        lines.append(
            f"peak RSS (main process, timed steps) {memory['peak_rss_mb']:.0f} MB, "
            f"max RSS (whole run) {memory['max_rss_mb']:.0f} MB"
        )
    for key, label in (("curvature_overhead", "main"), ("baseline_curvature_overhead",
                                                         "baseline")):
        if key in result:
            overhead = result[key]
            lines.append(
                f"{label}: curvature sampling vs uniform: {overhead['wall']:+.1%} iteration "
                f"wall time, {overhead['cpu']:+.1%} CPU time; ray sampling takes "
                f"{overhead['ray_sampling_fraction']:.1%} of the iteration's CPU time"
            )
    if "speedup" in result:
        speedup = result["speedup"]
        lines.append(
            f"baseline / main iteration: {speedup['wall']:.2f}x wall, {speedup['cpu']:.2f}x CPU"
        )
        for mode in ("main", "baseline"):
            run = runs[mode]
            lines.append(
                f"{mode}: {config['max_iter']} iterations (SOLVER.MAX_ITER) at these medians: "
                f"{config['max_iter'] * run['iteration'] / 60:.1f} min wall, "
                f"{config['max_iter'] * run['iteration_cpu'] / 60:.1f} min CPU"
            )
    if "data_loader" in result:
        loader = result["data_loader"]
        lines.append(
            f"data loader alone: {loader['samples_per_second']:.2f} samples/s with "
            f"{loader['num_workers']} workers ({loader['num_samples']} samples)"
        )
    return "\n".join(lines)


def format_ray_scaling_table(result: Dict[str, object]) -> str:
    """A text table of `benchmark_ray_scaling`'s result."""
    lines = [
        f"render head alone, field volume {tuple(result['volume_shape'])} (C, Z, Y, X), "
        f"device {result['device']}, {result['threads']} torch threads, "
        f"{result['num_candidates']} candidate LiDAR points",
        f"{'rays':>12}{'samples/ray':>12}{'fwd+bwd ms':>12}{'CPU ms':>12}{'peak MB':>10}"
        f"{'ray samples/s':>15}",
    ]
    for row in result["rows"]:
        label = row["label"] if row["label"] != "all points" else f"all {row['rays']}"
        lines.append(
            f"{label:>12}{row['samples_per_ray']:>12d}{_ms(row['seconds']):>12}"
            f"{_ms(row['cpu_seconds']):>12}{row['peak_memory_mb']:>10.0f}"
            f"{row['ray_samples_per_second']:>15.3g}"
        )
    if "all_points_vs_budget" in result:
        ratio = result["all_points_vs_budget"]
        lines.append(
            f"every point vs {result['budget']} sampled rays: {ratio['time']:.2f}x time "
            f"({ratio['cpu_time']:.2f}x CPU), {ratio['memory']:.2f}x peak memory"
        )
    return "\n".join(lines)


def format_ray_samplers_table(result: Dict[str, object]) -> str:
    """A text table of `benchmark_ray_samplers`'s result."""
    max_points = result["curvature_max_points"] or "every"
    lines = [
        f"ray samplers at one budget, field volume {tuple(result['volume_shape'])} (C, Z, Y, X), "
        f"device {result['device']}, {result['threads']} torch threads, "
        f"{result['num_candidates']} candidate LiDAR points, curvature at {max_points} of them",
        f"{'sampler':<18}{'LiDAR rays':>11}{'pixels':>8}{'sample ms':>11}{'render ms':>11}"
        f"{'step ms':>10}{'step CPU ms':>13}{'sample MB':>11}{'step MB':>9}",
    ]
    for row in result["rows"]:
        lines.append(
            f"{row['sampler']:<18}{row['lidar_rays']:>11d}{row['pixels']:>8d}"
            f"{_ms(row['sample_seconds']):>11}{_ms(row['render_seconds']):>11}"
            f"{_ms(row['step_seconds']):>10}{_ms(row['step_cpu_seconds']):>13}"
            f"{row['sample_peak_memory_mb']:>11.0f}{row['step_peak_memory_mb']:>9.0f}"
        )
    first = result["rows"][0]
    for row in result["rows"][1:]:
        ratio = first["step_seconds"] / row["step_seconds"]
        extra = first["sample_seconds"] - row["sample_seconds"]
        lines.append(f"{first['sampler']} / {row['sampler']}: {ratio:.2f}x step time, "
                     f"{extra:+.3f} s sampling")
    return "\n".join(lines)
