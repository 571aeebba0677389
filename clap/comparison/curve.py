"""Scores against pre-training length: the rows of several comparison reports, one report per
number of pre-training iterations (docs/comparison.md, "Longer pre-training")."""

import json
from typing import Dict, List, Optional, Sequence

from .report import METRICS, format_fraction, format_interval, format_percent


def load_reports(paths: Sequence[str]) -> List[dict]:
    """The comparison.json files at `paths`, each with its "path"; a file that is not a
    comparison report (no "pretrain_iters", "summary" or "gains") raises ValueError naming
    it."""
    reports = []
    for path in paths:
        with open(path) as f:
            report = json.load(f)
        missing = [key for key in ("pretrain_iters", "summary", "gains") if key not in report]
        if missing:
            raise ValueError(f"{path}: not a comparison report (missing {', '.join(missing)})")
        reports.append({**report, "path": path})
    return reports


def _gain(report: dict, method: str, protocol: str, fraction: float,
          metric: str) -> Optional[dict]:
    """The report's gain over scratch of one row and metric, None for scratch or without one."""
    for gain in report["gains"]:
        if (gain["method"], gain["protocol"], gain["fraction"], gain["metric"]) == (
                method, protocol, fraction, metric):
            return gain
    return None


def pretrain_curve(reports: Sequence[dict], protocol: str, fraction: float,
                   methods: Optional[Sequence[str]] = None) -> List[dict]:
    """One point per method and report with cells of `protocol` at `fraction`:
    {"method", "pretrain_iters", "num_seeds", "path", and per metric M of METRICS "M_mean",
    "M_std" (fractions, not %) and "M_gain" (the report's gain over scratch, its "gains" entry,
    None for scratch)}, sorted by method (order of `methods`, else of
    first appearance) and length. Scratch pre-trains nothing: its points are each report's own
    scratch cells, drawn at that report's length. Two reports with the same length and method
    raise ValueError naming both files."""
    points: Dict[tuple, dict] = {}
    for report in reports:
        for entry in report["summary"]:
            if entry["protocol"] != protocol or entry["fraction"] != fraction:
                continue
            if methods is not None and entry["method"] not in methods:
                continue
            key = (entry["method"], report["pretrain_iters"])
            if key in points:
                raise ValueError(
                    f"{points[key]['path']} and {report['path']} both hold {key[0]} after "
                    f"{key[1]} pre-training iterations ({protocol}, "
                    f"{format_fraction(fraction)} labels)")
            point = {"method": entry["method"], "pretrain_iters": report["pretrain_iters"],
                     "num_seeds": entry["num_seeds"], "path": report["path"]}
            for metric in METRICS:
                point[f"{metric}_mean"] = entry[f"{metric}_mean"]
                point[f"{metric}_std"] = entry[f"{metric}_std"]
                point[f"{metric}_gain"] = _gain(report, entry["method"], protocol, fraction,
                                                metric)
            points[key] = point
    order = list(methods) if methods is not None else list(dict.fromkeys(m for m, _ in points))
    return sorted(points.values(), key=lambda p: (order.index(p["method"]), p["pretrain_iters"]))


def format_curve(points: Sequence[dict], metric: str) -> str:
    """Markdown table of `metric` (in %): one row per method, one column per pre-training
    length, each cell "mean +- std" and the gain over scratch with its 95% interval (* where
    significant)."""
    lengths = sorted({p["pretrain_iters"] for p in points})
    methods = list(dict.fromkeys(p["method"] for p in points))
    lines = [f"| {metric} (%) | " + " | ".join(f"{n} its" for n in lengths) + " |",
             "| --- |" + " --- |" * len(lengths)]
    for method in methods:
        cells = []
        for length in lengths:
            point = next((p for p in points if p["method"] == method
                          and p["pretrain_iters"] == length), None)
            if point is None:
                cells.append("-")
                continue
            cell = (f"{format_percent(point[f'{metric}_mean'])} +- "
                    f"{format_percent(point[f'{metric}_std'])}")
            gain = point[f"{metric}_gain"]
            if gain is not None:
                cell += f"; {format_interval(gain)}"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curve(points: Sequence[dict], path: str, title: str) -> None:
    """`path` (PNG): per metric of METRICS a panel of mean score (%) against pre-training
    iterations (log axis, one tick per length), one line per method, error bars the std over
    seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted({p["pretrain_iters"] for p in points})
    figure, axes = plt.subplots(1, len(METRICS), figsize=(5.5 * len(METRICS), 3.8))
    for axis, metric in zip(axes, METRICS):
        for method in dict.fromkeys(p["method"] for p in points):
            line = [p for p in points if p["method"] == method]
            axis.errorbar([p["pretrain_iters"] for p in line],
                          [100 * p[f"{metric}_mean"] for p in line],
                          yerr=[100 * p[f"{metric}_std"] for p in line],
                          marker="o", capsize=3, label=method)
        axis.set_xscale("log")
        axis.set_xticks(lengths, [str(n) for n in lengths])
        axis.minorticks_off()
        axis.set_xlabel("pre-training iterations")
        axis.set_ylabel(f"{metric} (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
