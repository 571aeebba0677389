#!/usr/bin/env python
"""Pre-train every method, fine-tune a DetectionModel from its encoders, and compare them.

For each method (scratch, LiDAR-only and camera-only rendering, their UniPAD-style merge, SimIPU,
CLAP with joint uniform sampling, CLAP with curvature sampling, full CLAP):

1. pre-train once (or reuse `<output>/pretrain/<method>/model_final.pth` when it exists),
2. for every label fraction and seed, fine-tune the detector from the pre-trained encoders
   (`MODEL.PRETRAINED_ENCODERS`) with the same number of iterations for every method, and score
   it on the test split with nuscenes-devkit's DetectionEval,
3. write `<output>/comparison.md` (mean +- std of mAP and NDS per method and fraction) and
   `<output>/comparison.json` (every cell and the aggregates).

Every stage is a subprocess of the method's training entry point with KEY VALUE overrides, in its
own OUTPUT_DIR, its console output in `<stage dir>/stage.log`. The run is resumable: a cell whose
`result.json` exists is not run again, a finished pre-training is reused, and an interrupted stage
continues from its last checkpoint (`--resume`).

    python tools/compare_methods.py --preset small --output output/comparison_small
    python tools/compare_methods.py --preset paper --output output/comparison_paper --num-gpus 8
    python tools/compare_methods.py --preset small --output out --methods scratch clap --seeds 0 1
"""

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

logger = logging.getLogger("compare_methods")

METHODS = (
    "scratch",
    "lidar_only",
    "camera_only",
    "unipad_merge",
    "simipu",
    "clap_uniform",
    "clap_curvature",
    "clap",
)
METHOD_TITLES = {
    "scratch": "From scratch",
    "lidar_only": "LiDAR-only rendering",
    "camera_only": "Camera-only rendering",
    "unipad_merge": "UniPAD (LiDAR-only + camera-only merge)",
    "simipu": "SimIPU",
    "clap_uniform": "CLAP joint, uniform sampling, no prototypes",
    "clap_curvature": "CLAP joint, curvature sampling, no prototypes",
    "clap": "CLAP (curvature + prototypes)",
}
# Pre-trainings a merge is made of.
MERGE_SOURCES = {"unipad_merge": ("lidar_only", "camera_only")}

CLAP_TRAIN_NET = "tools/train_net.py"
SINGLE_MODAL_TRAIN_NET = "projects/single_modal/train_net.py"
SIMIPU_TRAIN_NET = "projects/simipu/train_net.py"
MERGE_TOOL = "projects/single_modal/tools/merge_weights.py"


@dataclass
class Preset:
    """Everything a comparison needs besides the command line.

    Attributes:
        pretrain_configs: method -> (train_net script, config file, extra KEY VALUE overrides).
        detection_config: the fine-tuning config (DetectionModel).
        pretrain_iters: SOLVER.MAX_ITER of every pre-training (None: the config's).
        finetune_iters: SOLVER.MAX_ITER of every fine-tuning, the same for every method.
        fractions: label fractions (DATASETS.TRAIN_FRACTION) fine-tuned on.
        seeds: fine-tuning seeds (SEED); the label subset stays fixed (TRAIN_FRACTION_SEED 0).
        common_overrides: KEY VALUE pairs given to every stage (data root, workers, ...).
        finetune_overrides: KEY VALUE pairs given to every fine-tuning.
        test_dataset: the data set scored (one of the detection config's DATASETS.TEST).
        expected_hours: rough wall time of the whole table, for the log.
    """

    pretrain_configs: Dict[str, tuple]
    detection_config: str
    pretrain_iters: Optional[int]
    finetune_iters: int
    fractions: List[float]
    seeds: List[int]
    test_dataset: str
    common_overrides: List[str] = field(default_factory=list)
    finetune_overrides: List[str] = field(default_factory=list)
    expected_hours: str = ""


# SimIPU's own CPU config has a coarser grid; these make its LiDAR and image encoders the
# detection config's (same keys and shapes), so its weights load into the detector.
_SIMIPU_SYNTHETIC_ENCODERS = [
    "INPUT.POINT_CLOUD_RANGE", "[-32.0, -32.0, -3.0, 32.0, 32.0, 3.0]",
    "INPUT.VOXEL_SIZE", "[0.25, 0.25, 0.25]",
    "MODEL.VOLUME_STRIDE", "[8, 8, 4]",
    "MODEL.LIDAR_BACKBONE.STEM_CHANNELS", "16",
    "MODEL.LIDAR_BACKBONE.STAGE_CHANNELS", "[16, 32, 64, 128]",
    "MODEL.LIDAR_BACKBONE.NUM_BLOCKS", "[1, 1, 1, 1]",
    "MODEL.LIDAR_BACKBONE.OUT_CHANNELS", "64",
    "INPUT.MAX_VOXELS_TRAIN", "40000",
    "INPUT.MAX_VOXELS_TEST", "40000",
]
_SIMIPU_PAPER_ENCODERS = [
    "INPUT.POINT_CLOUD_RANGE", "[-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]",
    "INPUT.VOXEL_SIZE", "[0.075, 0.075, 0.2]",
    "MODEL.VOLUME_STRIDE", "[8, 8, 8]",
]


def _pretrain_configs(scale: str) -> Dict[str, tuple]:
    synthetic = scale == "synthetic"
    clap = "configs/synthetic/clap_cpu.yaml" if synthetic else "configs/nuscenes/clap.yaml"
    ablations = f"configs/{scale}/ablations"
    single = f"projects/single_modal/configs/{scale}"
    suffix = "_cpu" if synthetic else ""
    simipu = ("projects/simipu/configs/synthetic/simipu_cpu.yaml" if synthetic
              else "projects/simipu/configs/nuscenes/simipu.yaml")
    return {
        "lidar_only": (SINGLE_MODAL_TRAIN_NET, f"{single}/lidar_only{suffix}.yaml", []),
        "camera_only": (SINGLE_MODAL_TRAIN_NET, f"{single}/camera_only{suffix}.yaml", []),
        "simipu": (SIMIPU_TRAIN_NET, simipu,
                   _SIMIPU_SYNTHETIC_ENCODERS if synthetic else _SIMIPU_PAPER_ENCODERS),
        "clap_uniform": (CLAP_TRAIN_NET, f"{ablations}/joint_uniform.yaml", []),
        "clap_curvature": (CLAP_TRAIN_NET, f"{ablations}/joint_curvature.yaml", []),
        "clap": (CLAP_TRAIN_NET, clap, []),
    }


def _without_sampler_warmup(configs: Dict[str, tuple]) -> Dict[str, tuple]:
    """`configs` with no uniform warm-up for the curvature methods: a pre-training shorter than
    the warm-up (clap_cpu.yaml: one epoch) would never sample by curvature, and clap_curvature
    would repeat clap_uniform."""
    configs = dict(configs)
    for method in ("clap_curvature", "clap"):
        script, config_file, extra = configs[method]
        configs[method] = (script, config_file,
                           list(extra) + ["MODEL.RAY_SAMPLER.WARMUP_EPOCHS", "0"])
    return configs


def get_preset(name: str) -> Preset:
    """`small`: the synthetic world on a CPU, an end-to-end check of the whole table (about 30
    minutes on 2 idle cores; too few iterations to rank the methods);
    `paper`: nuScenes on GPUs, the paper's label fractions and 3 seeds."""
    if name == "small":
        return Preset(
            pretrain_configs=_without_sampler_warmup(_pretrain_configs("synthetic")),
            detection_config="configs/synthetic/detection_cpu.yaml",
            pretrain_iters=30,
            finetune_iters=100,
            fractions=[1.0],
            seeds=[0],
            test_dataset="nuscenes_v1.0-mini_mini_val",
            common_overrides=["DATASETS.ROOT", "datasets/synthetic_nuscenes", "VIS_PERIOD", "0",
                              "SOLVER.CHECKPOINT_PERIOD", "50", "DATALOADER.NUM_WORKERS", "1"],
            # batch 1: a fused detector step takes about 1.2 s on 2 idle CPU cores
            finetune_overrides=["SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "10"],
            expected_hours="about 30 min on 2 idle CPU cores (6 x 30 pre-training iterations "
                           "at 1-4 s, 8 x 100 fine-tuning iterations at about 1.2 s, "
                           "8 evaluations)",
        )
    if name == "paper":
        return Preset(
            pretrain_configs=_pretrain_configs("nuscenes"),
            detection_config="configs/nuscenes/detection.yaml",
            pretrain_iters=None,
            finetune_iters=get_config_max_iter("configs/nuscenes/detection.yaml"),
            fractions=[0.05, 0.025, 0.01, 0.005],
            seeds=[0, 1, 2],
            test_dataset="nuscenes_v1.0-trainval_val",
            common_overrides=["DATASETS.ROOT", "datasets/nuscenes"],
            expected_hours="days on 8 GPUs (6 pre-trainings of 12 epochs, 96 fine-tunings)",
        )
    raise KeyError(f"Unknown preset '{name}': expected 'small' or 'paper'")


def get_config_max_iter(config_file: str) -> int:
    """SOLVER.MAX_ITER of a config file (with its bases)."""
    sys.path.insert(0, ROOT)
    from clap.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, config_file))
    return int(cfg.SOLVER.MAX_ITER)


def run_subprocess(command: Sequence[str], log_path: str) -> None:
    """Run one stage from the repository root, its output appended to `log_path`.

    Raises:
        RuntimeError: naming the command and the log when it exits with an error.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        code = subprocess.run(list(command), cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"Stage failed (exit code {code}): {' '.join(command)}; see {log_path}")


def format_fraction(fraction: float) -> str:
    """0.05 -> '5%', 0.005 -> '0.5%'."""
    return f"{fraction * 100:g}%"


class Comparison:
    """Schedules the stages of a comparison and collects its results.

    Args:
        preset: what to run (see `Preset`).
        output_dir: root of every stage's OUTPUT_DIR.
        methods: subset of METHODS, in table order.
        num_gpus: `--num-gpus` of every training stage.
        runner: `runner(command, log_path)` runs one stage (default `run_subprocess`); tests
            pass a fake.
    """

    def __init__(self, preset: Preset, output_dir: str, methods: Sequence[str] = METHODS,
                 num_gpus: int = 1, runner: Callable[[Sequence[str], str], None] = run_subprocess):
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise KeyError(f"Unknown method(s) {unknown}: expected some of {list(METHODS)}")
        self.preset = preset
        self.output_dir = os.path.abspath(output_dir)
        self.methods = list(methods)
        self.num_gpus = num_gpus
        self.runner = runner

    # ------------------------------------------------------------------ paths
    def pretrain_dir(self, method: str) -> str:
        return os.path.join(self.output_dir, "pretrain", method)

    def pretrained_checkpoint(self, method: str) -> str:
        """The encoder checkpoint a fine-tuning of `method` starts from ('' for scratch)."""
        if method == "scratch":
            return ""
        if method in MERGE_SOURCES:
            return os.path.join(self.pretrain_dir(method), "merged.pth")
        return os.path.join(self.pretrain_dir(method), "model_final.pth")

    def cell_dir(self, method: str, fraction: float, seed: int) -> str:
        return os.path.join(self.output_dir, "finetune", method, f"fraction_{fraction:g}",
                            f"seed_{seed}")

    # ------------------------------------------------------------------ stages
    def _python(self, script: str, config_file: str, output_dir: str,
                overrides: Sequence[str]) -> List[str]:
        return ([sys.executable, os.path.join(ROOT, script), "--config-file",
                 os.path.join(ROOT, config_file), "--num-gpus", str(self.num_gpus), "--resume"]
                + list(self.preset.common_overrides) + list(overrides)
                + ["OUTPUT_DIR", output_dir])

    def pretrain(self, method: str) -> str:
        """Pre-train `method` unless its checkpoint exists; returns the checkpoint path."""
        checkpoint = self.pretrained_checkpoint(method)
        if not checkpoint or os.path.isfile(checkpoint):
            return checkpoint
        if method in MERGE_SOURCES:
            lidar, camera = (self.pretrain(source) for source in MERGE_SOURCES[method])
            command = [sys.executable, os.path.join(ROOT, MERGE_TOOL), "--lidar", lidar,
                       "--camera", camera, "--output", checkpoint]
            logger.info("Merging %s and %s into %s", lidar, camera, checkpoint)
            os.makedirs(self.pretrain_dir(method), exist_ok=True)
            self.runner(command, os.path.join(self.pretrain_dir(method), "stage.log"))
            return checkpoint
        script, config_file, extra = self.preset.pretrain_configs[method]
        overrides = list(extra)
        if self.preset.pretrain_iters is not None:
            overrides += ["SOLVER.MAX_ITER", str(self.preset.pretrain_iters)]
        output = self.pretrain_dir(method)
        logger.info("Pre-training %s (%s) into %s", method, config_file, output)
        self.runner(self._python(script, config_file, output, overrides),
                    os.path.join(output, "stage.log"))
        if not os.path.isfile(checkpoint):
            raise RuntimeError(f"Pre-training of {method} finished without {checkpoint}")
        return checkpoint

    def finetune(self, method: str, fraction: float, seed: int) -> dict:
        """Fine-tune and evaluate one cell unless its result.json exists; returns the result."""
        output = self.cell_dir(method, fraction, seed)
        result_path = os.path.join(output, "result.json")
        if os.path.isfile(result_path):
            with open(result_path) as f:
                result = json.load(f)
            if result["max_iter"] != self.preset.finetune_iters:
                raise ValueError(
                    f"{result_path} was fine-tuned for {result['max_iter']} iterations, this "
                    f"comparison uses {self.preset.finetune_iters}: every method must get the "
                    "same iterations; use another --output")
            logger.info("Reusing %s", result_path)
            return result
        checkpoint = self.pretrain(method)
        overrides = list(self.preset.finetune_overrides) + [
            "MODEL.PRETRAINED_ENCODERS", checkpoint,
            "SOLVER.MAX_ITER", str(self.preset.finetune_iters),
            "DATASETS.TRAIN_FRACTION", str(fraction),
            "DATASETS.TRAIN_FRACTION_SEED", "0",
            "SEED", str(seed),
            "DATASETS.TEST", f"['{self.preset.test_dataset}']",
        ]
        logger.info("Fine-tuning %s, %s labels, seed %d into %s", method,
                    format_fraction(fraction), seed, output)
        self.runner(self._python(CLAP_TRAIN_NET, self.preset.detection_config, output, overrides),
                    os.path.join(output, "stage.log"))
        summary_path = os.path.join(output, "inference", self.preset.test_dataset,
                                    "metrics_summary.json")
        if not os.path.isfile(summary_path):
            raise RuntimeError(f"Fine-tuning {output} finished without {summary_path}")
        with open(summary_path) as f:
            summary = json.load(f)
        result = {
            "method": method, "fraction": fraction, "seed": seed,
            "max_iter": self.preset.finetune_iters, "pretrained": checkpoint,
            "mAP": summary["mean_ap"], "NDS": summary["nd_score"],
            "tp_errors": summary.get("tp_errors", {}),
            "AP": summary.get("mean_dist_aps", {}),
        }
        with open(result_path, "w") as f:
            json.dump(result, f, indent=2)
        return result

    def run(self) -> dict:
        """Every cell (pre-training on first need), then the table; returns the JSON dict.

        A cell whose stage fails (RuntimeError) is logged and listed under "failures"; the
        others still run, and running again retries it.
        """
        cells, failures = [], []
        for method in self.methods:
            for fraction in self.preset.fractions:
                for seed in self.preset.seeds:
                    try:
                        cells.append(self.finetune(method, fraction, seed))
                    except RuntimeError as error:  # a failed stage; the other cells still run
                        logger.error("%s, %s labels, seed %d failed: %s", method,
                                     format_fraction(fraction), seed, error)
                        failures.append({"method": method, "fraction": fraction, "seed": seed,
                                         "error": str(error)})
        report = summarize(cells, self.methods, self.preset.fractions)
        report["failures"] = failures
        report["finetune_iters"] = self.preset.finetune_iters
        report["pretrain_iters"] = self.preset.pretrain_iters
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, "comparison.json"), "w") as f:
            json.dump(report, f, indent=2)
        table = format_table(report)
        with open(os.path.join(self.output_dir, "comparison.md"), "w") as f:
            f.write(table)
        return report


def mean_std(values: Sequence[float]) -> tuple:
    """(mean, sample standard deviation) of the values; std 0 for a single value."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance)


def summarize(cells: Sequence[dict], methods: Sequence[str], fractions: Sequence[float]) -> dict:
    """{"cells": [...], "summary": [{"method", "fraction", "num_seeds", "mAP_mean", "mAP_std",
    "NDS_mean", "NDS_std"}]} over the seeds of each method and fraction."""
    summary = []
    for method in methods:
        for fraction in fractions:
            group = [c for c in cells if c["method"] == method and c["fraction"] == fraction]
            if not group:
                continue
            entry = {"method": method, "fraction": fraction, "num_seeds": len(group)}
            for metric in ("mAP", "NDS"):
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = mean_std(
                    [c[metric] for c in group])
            summary.append(entry)
    return {"cells": list(cells), "summary": summary}


def format_table(report: dict) -> str:
    """Markdown table: one row per method, mAP and NDS (mean +- std, in %; the mean alone for
    a single seed) per label fraction."""
    fractions = sorted({e["fraction"] for e in report["summary"]}, reverse=True)
    methods = list(dict.fromkeys(e["method"] for e in report["summary"]))
    header = ["Method"] + [f"{name} ({format_fraction(f)})" for f in fractions
                           for name in ("mAP", "NDS")]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    entries = {(e["method"], e["fraction"]): e for e in report["summary"]}
    for method in methods:
        row = [METHOD_TITLES.get(method, method)]
        for fraction in fractions:
            entry = entries.get((method, fraction))
            for metric in ("mAP", "NDS"):
                if entry is None:
                    row.append("-")
                elif entry["num_seeds"] == 1:  # no spread to show
                    row.append(f"{100 * entry[f'{metric}_mean']:.2f}")
                else:
                    row.append(f"{100 * entry[f'{metric}_mean']:.2f} +- "
                               f"{100 * entry[f'{metric}_std']:.2f}")
        lines.append("| " + " | ".join(row) + " |")
    seeds = sorted({e["num_seeds"] for e in report["summary"]})
    lines.append("")
    spread = "" if seeds == [1] else " +- sample std"
    lines.append(f"mAP and NDS in %, mean{spread} over {'/'.join(map(str, seeds))} seed(s); "
                 f"every fine-tuning ran {report.get('finetune_iters')} iterations.")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("small", "paper"), default="small")
    parser.add_argument("--output", required=True, help="root folder of every stage and result")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, help="fine-tuning seeds (preset's)")
    parser.add_argument("--fractions", nargs="+", type=float,
                        help="label fractions, e.g. 0.05 0.01 (preset's)")
    parser.add_argument("--pretrain-iters", type=int, help="pre-training iterations (preset's)")
    parser.add_argument("--finetune-iters", type=int, help="fine-tuning iterations (preset's)")
    parser.add_argument("--num-gpus", type=int, default=1, help="--num-gpus of every stage")
    parser.add_argument("--dataroot", help="DATASETS.ROOT of every stage (preset's)")
    return parser.parse_args(argv)


def main(argv=None, runner: Callable[[Sequence[str], str], None] = run_subprocess) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s]: %(message)s",
                        datefmt="%m/%d %H:%M:%S")
    preset = get_preset(args.preset)
    if args.seeds:
        preset.seeds = args.seeds
    if args.fractions:
        preset.fractions = args.fractions
    if args.pretrain_iters:
        preset.pretrain_iters = args.pretrain_iters
    if args.finetune_iters:
        preset.finetune_iters = args.finetune_iters
    if args.dataroot:
        preset.common_overrides += ["DATASETS.ROOT", os.path.abspath(args.dataroot)]
    logger.info("Preset %s: %d method(s) x %d fraction(s) x %d seed(s), %s iterations of "
                "pre-training, %d of fine-tuning; expected %s", args.preset, len(args.methods),
                len(preset.fractions), len(preset.seeds), preset.pretrain_iters or "the config's",
                preset.finetune_iters, preset.expected_hours)
    start = time.perf_counter()
    report = Comparison(preset, args.output, args.methods, args.num_gpus, runner).run()
    logger.info("Done in %.1f min:\n%s", (time.perf_counter() - start) / 60, format_table(report))
    return report


if __name__ == "__main__":
    main()
