#!/usr/bin/env python
"""Pre-train every method, train detectors from its encoders under two protocols, compare them.

For each method (scratch, LiDAR-only and camera-only rendering, their merge, the UniPAD recipe,
SimIPU, CLAP with joint uniform sampling, CLAP with curvature sampling, full CLAP):

1. pre-train once (or reuse `<output>/pretrain/<method>/model_final.pth` when it was trained for
   the same number of iterations),
2. for every protocol, label fraction and seed, train a DetectionModel and score it on the test
   split with nuscenes-devkit's DetectionEval, with the same number of iterations for every
   method:
   - `finetune`: the whole detector, initialised from the pre-trained encoders;
   - `probe`: the pre-trained LiDAR and image backbones frozen, their features computed once
     per frame and cached, only the layers after them trained (projects/probe),
3. write `<output>/comparison.md` (mean +- std per method, protocol and fraction; the gain over
   scratch with a 95% confidence interval paired by seed; which gains are significant; how
   each gain changes from the largest label fraction to the smallest),
   `<output>/comparison.json` (every cell and the aggregates) and `<output>/comparison.png`.

Every stage is a subprocess (the data generator, a training entry point with KEY VALUE overrides
in its own OUTPUT_DIR, or the weight merge), its console output in `<stage dir>/stage.log`. The
run is resumable: a cell whose `result.json` exists is not run again, a finished training stage
is reused (after checking its iteration count), and an interrupted stage continues from its last
checkpoint (`--resume`); a finished stage keeps only its final checkpoint. The console shows
cells done / total with an ETA. `--report-only` writes the report of the cells finished so far
(e.g. of several runs into the same output with other `--methods` or `--fractions`), with
`--recorded-cells` also those of earlier reports' comparison.json.

    python tools/compare_methods.py --preset small --output output/comparison_small
    python tools/compare_methods.py --preset cpu --output output/comparison_cpu
    python tools/compare_methods.py --preset paper --output output/comparison_paper --num-gpus 8
    python tools/compare_methods.py --preset small --output out --methods scratch clap --seeds 0 1
"""

import argparse
import logging
import os
import sys
import time
from typing import Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.comparison import (  # noqa: E402
    ALL_METHODS,
    CLAP_VARIANTS,
    CONTROLS,
    METHODS,
    PROTOCOLS,
    Comparison,
    estimate_seconds,
    format_report,
    get_preset,
    run_subprocess,
)

logger = logging.getLogger("compare_methods")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("small", "cpu", "paper"), default="small")
    parser.add_argument("--output", required=True, help="root folder of every stage and result")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=ALL_METHODS,
                        help="rows of the table, in table order (default: every method; the "
                        f"variants {', '.join(CLAP_VARIANTS)} and the controls "
                        f"{', '.join(CONTROLS)} only when named)")
    parser.add_argument("--finetune-methods", nargs="+", choices=ALL_METHODS,
                        help="the rows of --methods the fine-tuning protocol runs (preset's: "
                        "every method, except 'cpu': scratch unipad_merge clap)")
    parser.add_argument("--protocols", nargs="+", choices=PROTOCOLS,
                        help="protocols to run (preset's)")
    parser.add_argument("--seeds", nargs="+", type=int, help="detector training seeds (preset's)")
    parser.add_argument("--fractions", nargs="+", type=float,
                        help="label fractions of the labelled subset, e.g. 1.0 0.1 (preset's)")
    parser.add_argument("--pretrain-iters", type=int, help="pre-training iterations (preset's)")
    parser.add_argument("--pretrain-per-seed", action="store_true",
                        help="pre-train every method once per seed (SEED s for the cells of "
                        "seed s; their cells in <protocol>/<method>/pretrained_per_seed/) "
                        "instead of once for all seeds")
    parser.add_argument("--finetune-iters", type=int, help="fine-tuning iterations (preset's)")
    parser.add_argument("--probe-iters", type=int, help="probe iterations (preset's)")
    parser.add_argument("--num-gpus", type=int, default=1, help="--num-gpus of every stage")
    parser.add_argument("--jobs", type=int,
                        help="stages run at once (pre-trainings, then cells; the probe cells of "
                        "a method one after another); at most cores / threads per stage "
                        "(preset's)")
    parser.add_argument("--dataroot",
                        help="DATASETS.ROOT of every stage (preset's; no world is generated)")
    parser.add_argument("--estimate", action="store_true",
                        help="print the preset's time estimate and exit")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the cells finished so far and run nothing")
    parser.add_argument("--recorded-cells", nargs="+", default=[], metavar="COMPARISON_JSON",
                        help="with --report-only: also tabulate the cells recorded in these "
                        "reports (e.g. docs/comparison.json) that --output has not finished")
    args = parser.parse_args(argv)
    if args.recorded_cells and not args.report_only:
        parser.error("--recorded-cells only goes with --report-only")
    return args


def main(argv=None, runner: Callable[[Sequence[str], str], None] = run_subprocess,
         progress: bool = True) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s]: %(message)s",
                        datefmt="%m/%d %H:%M:%S")
    preset = get_preset(args.preset)
    for name in ("seeds", "fractions", "protocols", "finetune_methods", "pretrain_iters",
                 "pretrain_per_seed", "finetune_iters", "probe_iters", "jobs"):
        if getattr(args, name):
            setattr(preset, name, getattr(args, name))
    if args.dataroot:
        preset.world = None
        preset.common_overrides += ["DATASETS.ROOT", os.path.abspath(args.dataroot)]
    estimate = estimate_seconds(preset, args.methods, preset.jobs)
    logger.info("Preset %s: %d method(s), protocols %s, %d fraction(s) x %d seed(s); "
                "%s pre-training, %d fine-tuning and %d probe iterations; estimate %.1f h (%s)",
                args.preset, len(args.methods), "/".join(preset.protocols),
                len(preset.fractions), len(preset.seeds), preset.pretrain_iters or "the config's",
                preset.finetune_iters, preset.probe_iters, estimate["total"] / 3600,
                ", ".join(f"{k} {v / 60:.0f} min" for k, v in estimate.items() if k != "total"))
    if args.estimate:
        return {"estimate": estimate}
    comparison = Comparison(preset, args.output, args.methods, args.num_gpus, runner)
    if args.report_only:
        report = comparison.write_report(comparison.finished_results(args.recorded_cells))
        logger.info("Report of %d finished cell(s):\n%s", len(report["cells"]),
                    format_report(report))
        return report
    start = time.perf_counter()
    report = comparison.run(progress, preset.jobs)
    logger.info("Done in %.1f min:\n%s", (time.perf_counter() - start) / 60,
                format_report(report))
    return report


if __name__ == "__main__":
    main()
