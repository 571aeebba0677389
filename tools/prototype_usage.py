#!/usr/bin/env python
"""How CLAP pre-trainings ended up using their prototypes: one markdown row per run from the last
prototype record of its `metrics.json` (docs/prototypes.md, "What is logged") and N_K from its
`config.yaml`.

    python tools/prototype_usage.py output/comparison_cpu/pretrain/clap \
        output/comparison_cpu/pretrain/clap/seed_1

Columns: prototypes argmax at least once in the last EM period (LiDAR / camera, of N_K), usage
perplexity (N_K = even use, 1 = collapse), cross-modal agreement (chance about 1 / N_K), and
loss_swav against its value under uniform assignments, 2 ln N_K (one cross-entropy per modality).
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.config import get_cfg  # noqa: E402

HEADER = ("| run | iteration | in use LiDAR / camera | perplexity LiDAR / camera | agreement | "
          "loss_swav (uniform) |\n| --- | --- | --- | --- | --- | --- |")


def last_prototype_record(metrics_path: str) -> dict:
    """The last record of `metrics_path` that holds the prototype diagnostics, merged with the
    last loss_swav logged up to it."""
    if not os.path.isfile(metrics_path):
        raise FileNotFoundError(f"{metrics_path}: no such file; pass a pre-training's OUTPUT_DIR")
    last, loss_swav = None, None
    with open(metrics_path) as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{metrics_path}, line {number}: not JSON ({error})") from None
            loss_swav = record.get("loss_swav", loss_swav)
            if "prototypes/perplexity_lidar" in record:
                last = {**record, "loss_swav": loss_swav}
    if last is None:
        raise ValueError(f"{metrics_path}: no prototype diagnostics logged (not a CLAP "
                         "pre-training with a prototype head, or stopped before the first "
                         "EM period)")
    return last


def usage_row(run_dir: str) -> str:
    """The markdown row of one pre-training's output directory."""
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(run_dir, "config.yaml"))
    num_prototypes = cfg.MODEL.PROTOTYPE_HEAD.NUM_PROTOTYPES
    record = last_prototype_record(os.path.join(run_dir, "metrics.json"))
    loss = "-" if record["loss_swav"] is None else f"{record['loss_swav']:.2f}"
    return (f"| {run_dir} | {record['iteration'] + 1} | {record['prototypes/in_use_lidar']:.0f} / "
            f"{record['prototypes/in_use_camera']:.0f} of {num_prototypes} | "
            f"{record['prototypes/perplexity_lidar']:.0f} / "
            f"{record['prototypes/perplexity_camera']:.0f} | "
            f"{record['prototypes/agreement']:.3f} | {loss} ({2 * math.log(num_prototypes):.2f}) |")


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="pre-training output directories")
    table = "\n".join([HEADER] + [usage_row(run) for run in parser.parse_args(argv).runs])
    print(table)
    return table


if __name__ == "__main__":
    main()
