"""The plot of a comparison's table (comparison.png)."""

from .report import METRICS, format_fraction


def plot_report(report: dict, path: str) -> None:
    """`path` (PNG): mAP and NDS (rows) per protocol (columns), one group of bars per method and
    one bar per label fraction, error bars the std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(e["protocol"] for e in report["summary"]))
    # one colour per label fraction in every panel, also where a protocol lacks a fraction
    colours = {f: f"C{i}" for i, f in enumerate(sorted({e["fraction"] for e in report["summary"]}))}
    figure, axes = plt.subplots(len(METRICS), len(protocols), squeeze=False,
                                figsize=(6.5 * len(protocols), 3.6 * len(METRICS)))
    for column, protocol in enumerate(protocols):
        entries = [e for e in report["summary"] if e["protocol"] == protocol]
        methods = list(dict.fromkeys(e["method"] for e in entries))
        fractions = sorted({e["fraction"] for e in entries})
        width = 0.8 / len(fractions)
        for row, metric in enumerate(METRICS):
            axis = axes[row][column]
            for index, fraction in enumerate(fractions):
                by_method = {e["method"]: e for e in entries if e["fraction"] == fraction}
                xs = [i + (index - (len(fractions) - 1) / 2) * width
                      for i, m in enumerate(methods) if m in by_method]
                present = [m for m in methods if m in by_method]
                axis.bar(xs, [100 * by_method[m][f"{metric}_mean"] for m in present], width,
                         yerr=[100 * by_method[m][f"{metric}_std"] for m in present],
                         capsize=3, color=colours[fraction],
                         label=f"{format_fraction(fraction)} labels")
            axis.set_xticks(range(len(methods)))
            axis.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
            axis.set_ylabel(f"{metric} (%)")
            axis.set_title(f"{metric}, {protocol}")
            axis.grid(axis="y", alpha=0.3)
            axis.legend(fontsize=8)
    figure.suptitle("Mean over seeds, error bars: sample std")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
