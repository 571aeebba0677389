"""The tables of a comparison: mean +- std per row, gains over scratch and the claims'
differences with paired t intervals, label trends, evaluations during training, and the signal
check (docs/comparison.md, "Statistics")."""

from typing import Callable, Dict, List, Sequence, Tuple

from clap.evaluation.statistics import mean_std, paired_difference

from .methods import CLAP_VARIANTS, METHOD_TITLES, PROTOCOL_TITLES


def format_fraction(fraction: float) -> str:
    """0.05 -> '5%', 0.005 -> '0.5%'."""
    return f"{fraction * 100:g}%"


METRICS = ("mAP", "NDS")


def _scores(cells: Sequence[dict], method: str, protocol: str, fraction: float,
            metric: str) -> Dict[int, float]:
    """seed -> `metric` of the cells of one method, protocol and fraction."""
    return {c["seed"]: c[metric] for c in cells if c["method"] == method
            and c["protocol"] == protocol and c["fraction"] == fraction}


# Differences between rows that the paper's claims are about (docs/comparison.md), each where
# both rows have seeds to pair: the steps of CLAP's ablation, CLAP against UniPAD, UniPAD's
# recipe against the same recipe without pre-training (what its pre-training adds), what joint
# or merged pre-training adds to the LiDAR-only one, and each variant of CLAP against CLAP.
CONTRASTS = (("clap_curvature", "clap_uniform"), ("clap", "clap_curvature"),
             ("clap", "unipad_merge"), ("clap", "unipad"), ("unipad", "unipad_scratch"),
             ("lidar_only", "camera_only"), ("unipad_merge", "lidar_only"),
             ("clap", "lidar_only")) + tuple((variant, "clap") for variant in CLAP_VARIANTS)


def _differences(scores_of: Callable[[str], Tuple[Dict[int, float], Dict[int, float]]],
                 **keys) -> List[dict]:
    """Per metric, the paired difference (95% t interval) of the two seed -> score maps
    `scores_of(metric)` returns, as {**keys, "metric", "mean", "low", "high", "p_value",
    "num_pairs", "significant"}; empty when the two maps share no seed."""
    treatment, baseline = scores_of("mAP")
    if not set(treatment) & set(baseline):
        return []
    differences = []
    for metric in METRICS:
        difference = paired_difference(*scores_of(metric))
        differences.append({**keys, "metric": metric, "mean": difference.mean,
                            "low": difference.low, "high": difference.high,
                            "p_value": difference.p_value, "num_pairs": difference.num_pairs,
                            "significant": difference.significant})
    return differences


def _paired(cells: Sequence[dict], method: str, baseline: str, protocol: str,
            fraction: float) -> List[dict]:
    """Per metric, `method` - `baseline` paired by seed (`_differences`' entries with "method",
    "baseline", "protocol" and "fraction")."""
    return _differences(
        lambda metric: (_scores(cells, method, protocol, fraction, metric),
                        _scores(cells, baseline, protocol, fraction, metric)),
        method=method, baseline=baseline, protocol=protocol, fraction=fraction)


def _gains_by_seed(cells: Sequence[dict], method: str, protocol: str, fraction: float,
                   metric: str) -> Dict[int, float]:
    """seed -> `method` - scratch at one fraction, for the seeds both have."""
    scores = _scores(cells, method, protocol, fraction, metric)
    scratch = _scores(cells, "scratch", protocol, fraction, metric)
    return {seed: scores[seed] - scratch[seed] for seed in set(scores) & set(scratch)}


def _label_trends(cells: Sequence[dict], method: str, protocol: str,
                  fractions: Sequence[float]) -> List[dict]:
    """Per metric, `method`'s gain over scratch at the smallest of `fractions` minus its gain
    at the largest, paired by seed (positive: the gain grows as labels shrink); `_differences`'
    entries with "method", "protocol", "small_fraction" and "large_fraction"; empty without
    two fractions with gains that share a seed."""
    with_gains = [f for f in fractions if _gains_by_seed(cells, method, protocol, f, "mAP")]
    if len(with_gains) < 2:
        return []
    small, large = min(with_gains), max(with_gains)
    return _differences(
        lambda metric: (_gains_by_seed(cells, method, protocol, small, metric),
                        _gains_by_seed(cells, method, protocol, large, metric)),
        method=method, protocol=protocol, small_fraction=small, large_fraction=large)


def summarize(cells: Sequence[dict], methods: Sequence[str], protocols: Sequence[str],
              fractions: Sequence[float]) -> dict:
    """{"cells": [...], "summary": [...], "gains": [...], "contrasts": [...]}.

    "summary": per method, protocol and fraction with results, {"method", "protocol",
    "fraction", "num_seeds", "mAP_mean", "mAP_std", "NDS_mean", "NDS_std"} over the seeds.
    "gains": per method other than scratch, protocol, fraction and metric, the paired
    difference to scratch over the seeds both have (`_paired`'s entries). "contrasts": the same
    for the pairs of CONTRASTS whose methods are both in `methods`. "label_trends": per method
    other than scratch, protocol and metric, the gain at the smallest fraction minus the gain
    at the largest (`_label_trends`), where two fractions have gains.
    """
    summary, gains, contrasts, trends = [], [], [], []
    for protocol in protocols:
        for fraction in fractions:
            for method in methods:
                group = _scores(cells, method, protocol, fraction, "mAP")
                if not group:
                    continue
                entry = {"method": method, "protocol": protocol, "fraction": fraction,
                         "num_seeds": len(group)}
                for metric in METRICS:
                    entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean_std(
                        list(_scores(cells, method, protocol, fraction, metric).values()))
                summary.append(entry)
                if method != "scratch":
                    gains += _paired(cells, method, "scratch", protocol, fraction)
            for method, baseline in CONTRASTS:
                if method in methods and baseline in methods:
                    contrasts += _paired(cells, method, baseline, protocol, fraction)
        for method in methods:
            if method != "scratch":
                trends += _label_trends(cells, method, protocol, fractions)
    return {"cells": list(cells), "summary": summary, "gains": gains, "contrasts": contrasts,
            "label_trends": trends}


def rerun_differences(cells: Sequence[dict]) -> List[dict]:
    """Per protocol, method, fraction and metric of the cells trained again against recorded
    scores (a "recorded" entry, `Comparison.finished_results`): the new score minus the
    recorded one, paired by seed (`_differences`' entries with "method", "protocol" and
    "fraction"). Nothing changed between the runs: every difference is 0; else it measures
    what changed (e.g. the pre-training's code)."""
    groups = list(dict.fromkeys((c["protocol"], c["method"], c["fraction"])
                                for c in cells if "recorded" in c))
    differences = []
    for protocol, method, fraction in groups:
        rerun = [c for c in cells if "recorded" in c and c["protocol"] == protocol
                 and c["method"] == method and c["fraction"] == fraction]
        differences += _differences(
            lambda metric, rerun=rerun: ({c["seed"]: c[metric] for c in rerun},
                                         {c["seed"]: c["recorded"][metric] for c in rerun}),
            method=method, protocol=protocol, fraction=fraction)
    return differences


def _format_reruns(reruns: Sequence[dict]) -> List[str]:
    """The table of `rerun_differences` of one protocol (nothing without one)."""
    if not reruns:
        return []
    by_key = {(r["method"], r["fraction"], r["metric"]): r for r in reruns}
    header = ["Trained again - recorded", "label fraction", "seeds"] + list(METRICS)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method, fraction in dict.fromkeys((r["method"], r["fraction"]) for r in reruns):
        row = [METHOD_TITLES.get(method, method), format_fraction(fraction)]
        row.append(str(by_key[(method, fraction, "mAP")]["num_pairs"]))
        for metric in METRICS:
            difference = by_key[(method, fraction, metric)]
            row.append(format_interval(difference))
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "Cells trained again against the scores recorded for them "
                        "(--recorded-cells), paired by seed, in points of %; 0 where they "
                        "reproduced.", ""]


def evaluation_curve(cells: Sequence[dict], methods: Sequence[str], protocols: Sequence[str],
                     fractions: Sequence[float]) -> dict:
    """`summarize`'s "summary" and "gains" at every evaluation during training, from the
    cells' "evaluations" (`Comparison.evaluations`); each entry gets "iterations"."""
    by_iterations: Dict[int, List[dict]] = {}
    for cell in cells:
        for evaluation in cell.get("evaluations", []):
            by_iterations.setdefault(evaluation["iterations"], []).append(
                {**cell, "mAP": evaluation["mAP"], "NDS": evaluation["NDS"]})
    summary, gains = [], []
    for iterations, scored in sorted(by_iterations.items()):
        part = summarize(scored, methods, protocols, fractions)
        summary += [{**entry, "iterations": iterations} for entry in part["summary"]]
        gains += [{**gain, "iterations": iterations} for gain in part["gains"]]
    return {"summary": summary, "gains": gains}


def _format_evaluation_curve(curve: dict, protocol: str) -> List[str]:
    """mAP at every evaluation during training of one protocol, with the gain over scratch
    (nothing when its cells were evaluated at one iteration count only)."""
    entries = [e for e in curve.get("summary", []) if e["protocol"] == protocol]
    columns = sorted({(e["fraction"], e["iterations"]) for e in entries},
                     key=lambda key: (-key[0], key[1]))
    if len({iterations for _, iterations in columns}) < 2:
        return []
    by_key = {(e["method"], e["fraction"], e["iterations"]): e for e in entries}
    gains = {(g["method"], g["fraction"], g["iterations"]): g for g in curve["gains"]
             if g["protocol"] == protocol and g["metric"] == "mAP" and g["num_pairs"] >= 2}
    header = ["mAP during training"] + [f"{format_fraction(f)}, {i} its" for f, i in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method in dict.fromkeys(e["method"] for e in entries):
        row = [_title(method, protocol)]
        for fraction, iterations in columns:
            entry = by_key.get((method, fraction, iterations))
            gain = gains.get((method, fraction, iterations))
            text = "-" if entry is None else (
                f"{format_percent(entry['mAP_mean'])} +- {format_percent(entry['mAP_std'])}")
            row.append(text if gain is None else f"{text}; {format_interval(gain)}")
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "mAP in %, mean +- std over the seeds at each evaluation of the same "
                        "runs; after `;` the gain over scratch [95%], paired by seed.", ""]


def _title(method: str, protocol: str) -> str:
    """The row title of a method in a protocol's tables."""
    if method == "scratch" and protocol == "probe":
        return "From scratch (frozen random backbones)"
    return METHOD_TITLES.get(method, method)


def format_percent(value: float) -> str:
    return f"{100 * value:.2f}"


def format_report(report: dict) -> str:
    """Markdown: per protocol, a table of mAP and NDS (mean +- std, in %; the mean alone for a
    single seed) per method and label fraction, a table of the gains over scratch with their
    95% intervals (* where the interval excludes 0), and a line naming the significant ones."""
    lines = []
    protocols = list(dict.fromkeys(e["protocol"] for e in report["summary"]))
    for protocol in protocols:
        entries = [e for e in report["summary"] if e["protocol"] == protocol]
        fractions = sorted({e["fraction"] for e in entries}, reverse=True)
        methods = list(dict.fromkeys(e["method"] for e in entries))
        by_key = {(e["method"], e["fraction"]): e for e in entries}
        iterations = report.get(f"{protocol}_iters")
        lines += [f"### {PROTOCOL_TITLES.get(protocol, protocol)}", ""]
        header = ["Method"] + [f"{name} ({format_fraction(f)})" for f in fractions
                               for name in METRICS]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for method in methods:
            row = [_title(method, protocol)]
            for fraction in fractions:
                entry = by_key.get((method, fraction))
                for metric in METRICS:
                    if entry is None:
                        row.append("-")
                    elif entry["num_seeds"] == 1:  # no spread to show
                        row.append(format_percent(entry[f"{metric}_mean"]))
                    else:
                        row.append(f"{format_percent(entry[f'{metric}_mean'])} +- "
                                   f"{format_percent(entry[f'{metric}_std'])}")
            lines.append("| " + " | ".join(row) + " |")
        seeds = sorted({e["num_seeds"] for e in entries})
        spread = "" if seeds == [1] else " +- sample std"
        pretrainings = "one per seed" if report.get("pretrain_per_seed") else "one per method"
        lines += ["", f"mAP and NDS in %, mean{spread} over {'/'.join(map(str, seeds))} "
                      f"seed(s); label fractions of the labelled subset; every run trained "
                      f"{iterations} iterations; pre-trainings: {pretrainings}.", ""]
        lines += _format_gains([g for g in report.get("gains", []) if g["protocol"] == protocol],
                               fractions)
        lines += _format_contrasts([c for c in report.get("contrasts", [])
                                    if c["protocol"] == protocol and c["num_pairs"] >= 2],
                                   fractions)
        lines += _format_label_trends([t for t in report.get("label_trends", [])
                                       if t["protocol"] == protocol and t["num_pairs"] >= 2])
        lines += _format_evaluation_curve(report.get("evaluation_curve", {}), protocol)
        lines += _format_reruns([r for r in report.get("reruns", []) if r["protocol"] == protocol])
        lines += [format_signal(signal_check(entries)), ""]
    return "\n".join(lines)


# Signal before ranking (docs/comparison.md): at the largest label fraction, the from-scratch
# detector's mAP, and the largest row std against the spread between the row means.
MIN_SCRATCH_MAP = 0.25
MAX_STD_SHARE_OF_SPREAD = 1.0 / 3.0


def signal_check(entries: Sequence[dict]) -> dict:
    """Whether one protocol's summary entries carry a ranking signal, at its largest fraction:
    {"fraction", "scratch_mAP" (None without a scratch row), "max_std", "spread" (best - worst
    row mean, mAP), "scratch_ok", "spread_ok"}."""
    fraction = max(e["fraction"] for e in entries)
    rows = [e for e in entries if e["fraction"] == fraction]
    means = [e["mAP_mean"] for e in rows]
    scratch = next((e["mAP_mean"] for e in rows if e["method"] == "scratch"), None)
    max_std = max(e["mAP_std"] for e in rows)
    spread = max(means) - min(means)
    return {"fraction": fraction, "scratch_mAP": scratch, "max_std": max_std, "spread": spread,
            "scratch_ok": scratch is not None and scratch >= MIN_SCRATCH_MAP,
            "spread_ok": len(rows) > 1 and max_std <= MAX_STD_SHARE_OF_SPREAD * spread}


def format_signal(check: dict) -> str:
    """One line: is there a signal to rank by (`signal_check`)?"""
    scratch = "no scratch row" if check["scratch_mAP"] is None else \
        f"scratch mAP {format_percent(check['scratch_mAP'])}"
    verdict = "met" if check["scratch_ok"] and check["spread_ok"] else "NOT met"
    allowed = check["spread"] * MAX_STD_SHARE_OF_SPREAD
    return (f"Signal at {format_fraction(check['fraction'])} labels: {scratch} (needs >= "
            f"{format_percent(MIN_SCRATCH_MAP)}), largest row std "
            f"{format_percent(check['max_std'])} vs a third of the spread between rows "
            f"{format_percent(allowed)} (mAP, %): {verdict}.")


def _format_gains(gains: Sequence[dict], fractions: Sequence[float]) -> List[str]:
    """The gain table and the significance line of one protocol."""
    if not gains or all(g["num_pairs"] < 2 for g in gains):
        return ["No gain over scratch with an interval: fewer than 2 seeds paired.", ""]
    by_key = {(g["method"], g["fraction"], g["metric"]): g for g in gains}
    methods = list(dict.fromkeys(g["method"] for g in gains))
    header = ["Gain over scratch"] + [f"{name} ({format_fraction(f)})" for f in fractions
                                      for name in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method in methods:
        row = [METHOD_TITLES.get(method, method)]
        for fraction in fractions:
            for metric in METRICS:
                gain = by_key.get((method, fraction, metric))
                row.append("-" if gain is None else format_interval(gain))
        lines.append("| " + " | ".join(row) + " |")
    significant = [f"{METHOD_TITLES.get(g['method'], g['method'])} ({g['metric']}, "
                   f"{format_fraction(g['fraction'])}: {100 * g['mean']:+.2f})"
                   for g in gains if g["significant"]]
    pairs = sorted({g["num_pairs"] for g in gains})
    lines += ["", f"Gain = method - scratch in points of %, mean over {'/'.join(map(str, pairs))} "
                  "seed(s) paired by seed, [95% t interval]; * marks an interval that excludes 0.",
              "Significant at 95%: " + ("; ".join(significant) if significant else "none") + ".",
              ""]
    return lines


def format_interval(difference: dict) -> str:
    """'+1.23 [-0.50, +2.96]*' in points of % (* where the interval excludes 0); the mean
    alone for a single pair (no interval)."""
    if difference["num_pairs"] < 2:
        return f"{100 * difference['mean']:+.2f}"
    return (f"{100 * difference['mean']:+.2f} [{100 * difference['low']:+.2f}, "
            f"{100 * difference['high']:+.2f}]" + ("*" if difference["significant"] else ""))


def _format_contrasts(contrasts: Sequence[dict], fractions: Sequence[float]) -> List[str]:
    """The table of CONTRASTS of one protocol (nothing without one)."""
    if not contrasts:
        return []
    by_key = {(c["method"], c["baseline"], c["fraction"], c["metric"]): c for c in contrasts}
    pairs = list(dict.fromkeys((c["method"], c["baseline"]) for c in contrasts))
    header = ["Difference"] + [f"{name} ({format_fraction(f)})" for f in fractions
                               for name in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method, baseline in pairs:
        row = [f"`{method}` - `{baseline}`"]
        for fraction in fractions:
            for metric in METRICS:
                contrast = by_key.get((method, baseline, fraction, metric))
                row.append("-" if contrast is None else format_interval(contrast))
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "Differences between rows the paper's claims compare (the ablation's "
                        "steps, CLAP against UniPAD and against LiDAR-only rendering, each "
                        "variant against CLAP) and between UniPAD's recipe and its control "
                        "without pre-training, paired by seed as the gains.", ""]


def _format_label_trends(trends: Sequence[dict]) -> List[str]:
    """The table of `_label_trends` of one protocol (nothing without one)."""
    if not trends:
        return []
    small, large = trends[0]["small_fraction"], trends[0]["large_fraction"]
    by_key = {(t["method"], t["metric"]): t for t in trends}
    header = [f"Gain at {format_fraction(small)} - gain at {format_fraction(large)}"] + list(
        METRICS)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for method in dict.fromkeys(t["method"] for t in trends):
        row = [METHOD_TITLES.get(method, method)]
        row += ["-" if (method, m) not in by_key else format_interval(by_key[(method, m)])
                for m in METRICS]
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "Positive: the gain over scratch grows as labels shrink; per seed, the "
                        "gain at the smaller fraction minus the gain at the larger, paired by "
                        "seed as the gains.", ""]
