#!/usr/bin/env python
"""Probe or fine-tuning scores against the number of pre-training iterations, from one
comparison report per length (tools/compare_methods.py's comparison.json, run with
`--pretrain-iters`): a markdown table per metric and a plot.

    python tools/pretrain_curve.py docs/comparison.json docs/comparison_pre600.json \
        docs/comparison_pre1800.json --protocol probe --fraction 1.0 \
        --methods scratch unipad_merge clap --plot docs/images/probe_pretrain_curve.png

Each table cell: mean +- std over seeds and, for a pre-trained row, its gain over that report's
scratch cells with the 95% interval paired by seed (* significant).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.comparison.curve import format_curve, load_reports, plot_curve, pretrain_curve  # noqa: E402
from clap.comparison.methods import PROTOCOLS  # noqa: E402
from clap.comparison.report import METRICS, format_fraction  # noqa: E402


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", help="comparison.json files, one per length")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="probe")
    parser.add_argument("--fraction", type=float, default=1.0, help="label fraction")
    parser.add_argument("--methods", nargs="+", help="rows, in order (default: every row)")
    parser.add_argument("--plot", help="PNG to write the curve to")
    args = parser.parse_args(argv)
    points = pretrain_curve(load_reports(args.reports), args.protocol, args.fraction,
                            args.methods)
    if not points:
        parser.error(f"no {args.protocol} cells at {format_fraction(args.fraction)} labels in "
                     f"{', '.join(args.reports)}")
    tables = "\n\n".join(format_curve(points, metric) for metric in METRICS)
    print(tables)
    if args.plot:
        plot_curve(points, args.plot, f"{args.protocol}, {format_fraction(args.fraction)} "
                   "labels: mean over seeds, error bars the sample std")
    return tables


if __name__ == "__main__":
    main()
