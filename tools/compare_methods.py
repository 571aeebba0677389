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
(e.g. of several runs into the same output with other `--methods` or `--fractions`).

    python tools/compare_methods.py --preset small --output output/comparison_small
    python tools/compare_methods.py --preset cpu --output output/comparison_cpu
    python tools/compare_methods.py --preset paper --output output/comparison_paper --num-gpus 8
    python tools/compare_methods.py --preset small --output out --methods scratch clap --seeds 0 1
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from clap.evaluation.statistics import mean_std, paired_difference  # noqa: E402

logger = logging.getLogger("compare_methods")

METHODS = (
    "scratch",
    "lidar_only",
    "camera_only",
    "unipad_merge",
    "unipad",
    "simipu",
    "clap_uniform",
    "clap_curvature",
    "clap",
)
# Variants of full CLAP (configs/<scale>/ablations): rows of the table only when named in
# --methods.
CLAP_VARIANTS = ("clap_nk128", "clap_nk1024", "clap_gram_literal", "clap_temperature1")
ALL_METHODS = METHODS + CLAP_VARIANTS
METHOD_TITLES = {
    "scratch": "From scratch",
    "lidar_only": "LiDAR-only rendering",
    "camera_only": "Camera-only rendering",
    "unipad_merge": "UniPAD merge of the pre-trained encoders",
    "unipad": "UniPAD recipe (fine-tuned single-modal detectors merged)",
    "simipu": "SimIPU",
    "clap_uniform": "CLAP joint, uniform sampling, no prototypes",
    "clap_curvature": "CLAP joint, curvature sampling, no prototypes",
    "clap": "CLAP (curvature + prototypes)",
    "clap_nk128": "CLAP, N_K = 128 prototypes",
    "clap_nk1024": "CLAP, N_K = 1024 prototypes",
    "clap_gram_literal": "CLAP, the paper's literal Gram term (mean off-diagonal)",
    "clap_temperature1": "CLAP, the paper's assignment temperature 1.0",
}
PROTOCOLS = ("finetune", "probe")
PROTOCOL_TITLES = {
    "finetune": "Fine-tuning (whole detector from the pre-trained encoders)",
    "probe": "Probe (frozen LiDAR and image backbones, cached features; lift, fusion, BEV "
             "backbone and head trained)",
}
# The probe judges methods whose pre-training trains both frozen backbones. A single-modal
# pre-training would be judged on a frozen random backbone of the other modality, and the
# UniPAD recipe's encoders have been fine-tuned on labels before the probe.
PROBE_METHODS = ("scratch", "unipad_merge", "simipu", "clap_uniform", "clap_curvature",
                 "clap") + CLAP_VARIANTS
# Pre-trainings a merge is made of.
MERGE_SOURCES = {"unipad_merge": ("lidar_only", "camera_only")}
# The single-modal pre-trainings the UniPAD recipe fine-tunes, with the detector's modality.
UNIPAD_STAGES = (("lidar_only", "lidar"), ("camera_only", "camera"))

CLAP_TRAIN_NET = "tools/train_net.py"
PROBE_TRAIN_NET = "projects/probe/train_net.py"
SINGLE_MODAL_TRAIN_NET = "projects/single_modal/train_net.py"
SIMIPU_TRAIN_NET = "projects/simipu/train_net.py"
MERGE_TOOL = "projects/single_modal/tools/merge_weights.py"
GENERATOR = "tools/make_synthetic_nuscenes.py"


@dataclass
class Preset:
    """Everything a comparison needs besides the command line.

    Attributes:
        pretrain_configs: method -> (train_net script, config file, extra KEY VALUE overrides).
        detection_config: the config of every detector (DetectionModel).
        pretrain_iters: SOLVER.MAX_ITER of every pre-training (None: each config's).
        finetune_iters: SOLVER.MAX_ITER of every fine-tuning, the same for every method.
        fractions: label fractions, of the labelled subset, trained on.
        seeds: seeds of the detector trainings (SEED); the label subset stays fixed
            (TRAIN_FRACTION_SEED 0), so cells of one seed pair across methods.
        test_dataset: the data set scored (DATASETS.TEST of every detector).
        train_dataset: DATASETS.TRAIN of every stage ('' keeps each config's).
        labelled_fraction: share of the training split that carries labels; a detector trained
            on fraction f gets DATASETS.TRAIN_FRACTION labelled_fraction * f. Pre-training uses
            the whole split without labels.
        protocols: subset of PROTOCOLS.
        probe_iters: SOLVER.MAX_ITER of every probe.
        probe_methods: the methods the probe judges (see PROBE_METHODS).
        finetune_methods: the methods fine-tuned.
        world: arguments of tools/make_synthetic_nuscenes.py (flag -> value) for a synthetic
            world the tool generates once into `<output>/data`; None: DATASETS.ROOT of
            `common_overrides` is used as it is.
        common_overrides: KEY VALUE pairs given to every training stage (data root, workers).
        pretrain_overrides: KEY VALUE pairs given to every pre-training.
        finetune_overrides: KEY VALUE pairs given to every fine-tuning.
        probe_overrides: KEY VALUE pairs given to every probe.
        step_seconds: measured wall seconds on the target machine, for the time estimate
            (`estimate_seconds`): "stage_start" (per subprocess), "generate_frame",
            "pretrain/<method>" (per iteration),
            "finetune" (per iteration), "eval_frame", "encode_frame", "probe" (per iteration),
            "probe_eval_frame"; missing entries count 0.
        world_frames: (pre-training frames, test frames) of the data, for the estimate.
        expected_hours: rough wall time of the whole table, for the log.
        jobs: stages run at once unless `--jobs` says otherwise (`Comparison.run`).
        pretrain_per_seed: pre-train every method once per seed (`SEED s` for the cells of
            seed s, so the intervals also hold the pre-training's variation) instead of once
            (each config's SEED) for every seed.
    """

    pretrain_configs: Dict[str, tuple]
    detection_config: str
    pretrain_iters: Optional[int]
    finetune_iters: int
    fractions: List[float]
    seeds: List[int]
    test_dataset: str
    train_dataset: str = ""
    labelled_fraction: float = 1.0
    protocols: List[str] = field(default_factory=lambda: ["finetune"])
    probe_iters: int = 0
    probe_methods: Sequence[str] = PROBE_METHODS
    finetune_methods: Sequence[str] = ALL_METHODS
    world: Optional[Dict[str, object]] = None
    common_overrides: List[str] = field(default_factory=list)
    pretrain_overrides: List[str] = field(default_factory=list)
    finetune_overrides: List[str] = field(default_factory=list)
    probe_overrides: List[str] = field(default_factory=list)
    step_seconds: Dict[str, float] = field(default_factory=dict)
    world_frames: tuple = (0, 0)
    expected_hours: str = ""
    jobs: int = 1
    pretrain_per_seed: bool = False


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
        **{variant: (CLAP_TRAIN_NET, f"{ablations}/{variant}.yaml", [])
           for variant in CLAP_VARIANTS},
    }


def _without_sampler_warmup(configs: Dict[str, tuple]) -> Dict[str, tuple]:
    """`configs` with no uniform warm-up for the curvature methods: a pre-training shorter than
    the warm-up (clap_cpu.yaml: one epoch) would never sample by curvature, and clap_curvature
    would repeat clap_uniform."""
    configs = dict(configs)
    for method in ("clap_curvature", "clap") + CLAP_VARIANTS:
        script, config_file, extra = configs[method]
        configs[method] = (script, config_file,
                           list(extra) + ["MODEL.RAY_SAMPLER.WARMUP_EPOCHS", "0"])
    return configs


# Wall seconds on 2 CPU cores, as docs/comparison.md ("Budget") describes how they were measured;
# they set the presets' estimates, not their behaviour. The pre-training and probe steps are the
# medians the cpu preset's run logged (commit 7c0d4f7); the others are earlier measurements.
_CPU_STEP_SECONDS = {
    "stage_start": 15.0,  # one subprocess: imports, model, data registration, devkit tables
    "generate_frame": 0.4,  # the synthetic generator with 2 workers
    "pretrain/lidar_only": 0.21,
    "pretrain/camera_only": 0.61,
    "pretrain/simipu": 0.94,
    "pretrain/clap_uniform": 0.86,
    "pretrain/clap_curvature": 0.91,
    "pretrain/clap": 0.88,
    **{f"pretrain/{variant}": 0.88 for variant in CLAP_VARIANTS},  # not measured: as clap
    "finetune": 1.2,  # the fused detector at batch 1
    "eval_frame": 0.4,
    "encode_frame": 0.35,  # backbones of one frame, mapping and storing included
    "probe": 0.33,  # lift, fusion, BEV backbone and 1 m head at batch 2 on cached features
    "probe_eval_frame": 0.05,
}


def get_preset(name: str) -> Preset:
    """`small`: the default synthetic world on a CPU, an end-to-end check of the whole table
    (too few iterations to rank the methods); `cpu`: a ranking on 2 CPU cores within 3 hours
    (docs/comparison.md); `paper`: nuScenes on GPUs, the paper's label fractions and 3 seeds."""
    if name == "small":
        return Preset(
            pretrain_configs=_without_sampler_warmup(_pretrain_configs("synthetic")),
            detection_config="configs/synthetic/detection_cpu.yaml",
            pretrain_iters=30,
            finetune_iters=100,
            fractions=[1.0],
            seeds=[0],
            test_dataset="nuscenes_v1.0-mini_mini_val",
            protocols=["finetune", "probe"],
            probe_iters=100,
            common_overrides=["DATASETS.ROOT", "datasets/synthetic_nuscenes", "VIS_PERIOD", "0",
                              "SOLVER.CHECKPOINT_PERIOD", "50", "DATALOADER.NUM_WORKERS", "1"],
            # batch 1: a fused detector step takes about 1.2 s on 2 idle CPU cores
            finetune_overrides=["SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "10"],
            probe_overrides=["SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "10"],
            step_seconds=_CPU_STEP_SECONDS,
            world_frames=(80, 20),
            expected_hours="about 45 min on 2 idle CPU cores (--estimate)",
        )
    if name == "cpu":
        return Preset(
            pretrain_configs=_without_sampler_warmup(_pretrain_configs("synthetic")),
            # 1 m head cells and the evaluation inside the grid (docs/comparison.md, "Signal")
            detection_config="configs/synthetic/detection_cpu_1m.yaml",
            pretrain_iters=200,
            # the detector's own batch of 2: from scratch it needs ~800 iterations to a mAP the
            # methods can differ by (docs/comparison.md, "Fine-tuning protocol")
            finetune_iters=800,
            fractions=[0.1, 1.0],
            seeds=[0, 1, 2],
            test_dataset="nuscenes_v1.0-trainval_val",
            train_dataset="nuscenes_v1.0-trainval_train",
            labelled_fraction=1.0,
            protocols=["finetune", "probe"],
            probe_iters=800,
            # The probe ranks every method that pre-trains both backbones; fine-tuning, 4x
            # dearer per iteration, runs the rows of the paper's main claim (CLAP against
            # UniPAD's pre-trainings and scratch); the others run with --finetune-methods.
            finetune_methods=("scratch", "unipad_merge", "clap"),
            # 50 scenes: 40 for (pre-)training (240 frames; the fractions label 24 and 240 of
            # them), 10 for validation (60 frames)
            world={"--scenes": 50, "--samples-per-scene": 6, "--image-scale": 0.25,
                   "--sweeps": 1, "--seed": 0, "--version": "v1.0-trainval", "--workers": 2},
            world_frames=(240, 60),
            # one torch thread per stage: two stages of two threads each on 2 cores ran 4x slower
            common_overrides=["DATASETS.VERSION", "v1.0-trainval", "VIS_PERIOD", "0",
                              "SOLVER.CHECKPOINT_PERIOD", "100", "DATALOADER.NUM_WORKERS", "1",
                              "CPU.NUM_THREADS", "1"],
            pretrain_overrides=["SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "20"],
            finetune_overrides=["SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "20"],
            probe_overrides=["SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "20",
                             "DATALOADER.NUM_WORKERS", "0"],
            # the detector at batch 2, one thread (docs/performance.md: 1.43 s for
            # detection_cpu.yaml on the idle machine; the 1 m head adds a little)
            step_seconds={**_CPU_STEP_SECONDS, "finetune": 1.5},
            # one single-threaded stage per core
            jobs=2,
            expected_hours="about 4.8 h on 2 idle CPU cores, the probe protocol alone 1.7 h "
                           "(--estimate)",
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
            expected_hours="days on 8 GPUs (6 pre-trainings of 12 epochs, 108 fine-tunings and the "
                           "unipad recipe's 24 x 2 single-modal ones)",
        )
    raise KeyError(f"Unknown preset '{name}': expected 'small', 'cpu' or 'paper'")


def get_config_max_iter(config_file: str) -> int:
    """SOLVER.MAX_ITER of a config file (with its bases)."""
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


@dataclass(frozen=True)
class Cell:
    """One detector training and its score."""

    method: str
    protocol: str
    fraction: float
    seed: int

    def describe(self) -> str:
        return f"{self.method} {self.protocol}, {format_fraction(self.fraction)} labels, " \
               f"seed {self.seed}"


def methods_of(preset: Preset, methods: Sequence[str], protocol: str) -> List[str]:
    """The methods of `methods` a protocol judges, in table order."""
    judged = preset.probe_methods if protocol == "probe" else preset.finetune_methods
    return [m for m in methods if m in judged]


def estimate_seconds(preset: Preset, methods: Sequence[str] = METHODS,
                     jobs: int = 1) -> Dict[str, float]:
    """Wall seconds of each part of a whole run from `preset.step_seconds` (see Preset), the
    stages after the data divided among `jobs` at once (as if they shared nothing)."""
    seconds = preset.step_seconds
    train_frames, test_frames = preset.world_frames
    labelled = preset.labelled_fraction * train_frames
    runs = len(preset.fractions) * len(preset.seeds)
    pretrained = set()
    for protocol in preset.protocols:
        for method in methods_of(preset, methods, protocol):
            pretrained.update(_pretrainings_of(method))
    pretrain_iters = preset.pretrain_iters or 0
    start = seconds.get("stage_start", 0.0)
    estimate = {
        "data": (train_frames + test_frames) * seconds.get("generate_frame", 0.0)
        if preset.world else 0.0,
        "pretrain": sum(pretrain_iters * seconds.get(f"pretrain/{m}", 0.0) + start
                        for m in pretrained)
        * (len(preset.seeds) if preset.pretrain_per_seed else 1),
    }
    if "finetune" in preset.protocols:
        tuned = methods_of(preset, methods, "finetune")
        # the UniPAD recipe trains two single-modal detectors first in every cell
        trainings = sum(3 if m == "unipad" else 1 for m in tuned)
        estimate["finetune"] = runs * (
            trainings * (preset.finetune_iters * seconds.get("finetune", 0.0) + start)
            + len(tuned) * test_frames * seconds.get("eval_frame", 0.0))
    if "probe" in preset.protocols:
        probed = methods_of(preset, methods, "probe")
        estimate["probe_cache"] = len(probed) * (labelled + test_frames) * seconds.get(
            "encode_frame", 0.0)
        estimate["probe"] = runs * len(probed) * (
            preset.probe_iters * seconds.get("probe", 0.0) + start
            + test_frames * seconds.get("probe_eval_frame", 0.0))
    for part in estimate:
        if part != "data":
            estimate[part] /= jobs
    estimate["total"] = sum(estimate.values())
    return estimate


def _pretrainings_of(method: str) -> List[str]:
    """The pre-training runs a method's cells need."""
    if method == "scratch":
        return []
    if method in MERGE_SOURCES:
        return list(MERGE_SOURCES[method])
    if method == "unipad":
        return [source for source, _ in UNIPAD_STAGES]
    return [method]


def drop_periodic_checkpoints(stage_dir: str) -> List[str]:
    """Delete a finished stage's periodic checkpoints (`model_0000099.pth`, ...), keeping
    `model_final.pth`: nothing reads them once the stage has its final checkpoint, and they are
    most of a run's disk (a cpu probe cell writes eight, ~0.5 GB). Returns the deleted paths."""
    deleted = []
    for name in sorted(os.listdir(stage_dir)):
        if name.startswith("model_") and name.endswith(".pth") and name != "model_final.pth":
            os.remove(os.path.join(stage_dir, name))
            deleted.append(os.path.join(stage_dir, name))
    return deleted


class Comparison:
    """Schedules the stages of a comparison and collects its results.

    Args:
        preset: what to run (see `Preset`).
        output_dir: root of every stage's OUTPUT_DIR.
        methods: subset of ALL_METHODS, in table order.
        num_gpus: `--num-gpus` of every training stage.
        runner: `runner(command, log_path)` runs one stage (default `run_subprocess`); tests
            pass a fake.
    """

    def __init__(self, preset: Preset, output_dir: str, methods: Sequence[str] = METHODS,
                 num_gpus: int = 1, runner: Callable[[Sequence[str], str], None] = run_subprocess):
        unknown = [m for m in methods if m not in ALL_METHODS]
        if unknown:
            raise KeyError(f"Unknown method(s) {unknown}: expected some of {list(ALL_METHODS)}")
        unknown = [p for p in preset.protocols if p not in PROTOCOLS]
        if unknown:
            raise KeyError(f"Unknown protocol(s) {unknown}: expected some of {list(PROTOCOLS)}")
        self.preset = preset
        self.output_dir = os.path.abspath(output_dir)
        self.methods = list(methods)
        self.num_gpus = num_gpus
        self.runner = runner

    # ------------------------------------------------------------------ paths
    def pretrain_dir(self, method: str, seed: Optional[int] = None) -> str:
        """The pre-training of `method` (of pre-training seed `seed`; None: the one shared by
        every seed)."""
        shared = os.path.join(self.output_dir, "pretrain", method)
        return shared if seed is None else os.path.join(shared, f"seed_{seed}")

    def pretrain_seed(self, cell: Cell) -> Optional[int]:
        """The pre-training seed of `cell`'s encoders (None: the shared pre-training)."""
        return cell.seed if self.preset.pretrain_per_seed else None

    def data_dir(self) -> str:
        return os.path.join(self.output_dir, "data")

    def cell_dir(self, cell: Cell) -> str:
        method_dir = os.path.join(self.output_dir, cell.protocol, cell.method)
        if self.pretrain_seed(cell) is not None and _pretrainings_of(cell.method):
            method_dir = os.path.join(method_dir, "pretrained_per_seed")
        return os.path.join(method_dir, f"fraction_{cell.fraction:g}", f"seed_{cell.seed}")

    def result_path(self, cell: Cell) -> str:
        """The cell's result.json: it exists once the cell is finished."""
        return os.path.join(self.cell_dir(cell), "result.json")

    def probe_cache_dir(self, method: str, seed: Optional[int] = None) -> str:
        """The cached features of the backbones of `method` pre-trained with `seed`."""
        shared = os.path.join(self.output_dir, "probe_cache", method)
        return shared if seed is None else os.path.join(shared, f"seed_{seed}")

    def cells(self) -> List[Cell]:
        """Every cell of the table, protocol by protocol, in table order."""
        return [Cell(method, protocol, fraction, seed)
                for protocol in self.preset.protocols
                for method in methods_of(self.preset, self.methods, protocol)
                for fraction in self.preset.fractions for seed in self.preset.seeds]

    def iterations(self, protocol: str) -> int:
        return self.preset.finetune_iters if protocol == "finetune" else self.preset.probe_iters

    # ------------------------------------------------------------------ stages
    def _python(self, script: str, config_file: str, output_dir: str,
                overrides: Sequence[str]) -> List[str]:
        data = ["DATASETS.CACHE_DIR", os.path.join(self.output_dir, "data_cache")]
        if self.preset.world is not None:
            data += ["DATASETS.ROOT", self.data_dir()]
        if self.preset.train_dataset:
            data += ["DATASETS.TRAIN", f"['{self.preset.train_dataset}']"]
        return ([sys.executable, os.path.join(ROOT, script), "--config-file",
                 os.path.join(ROOT, config_file), "--num-gpus", str(self.num_gpus), "--resume"]
                + list(self.preset.common_overrides) + data + list(overrides)
                + ["OUTPUT_DIR", output_dir])

    def prepare_data(self) -> None:
        """Generate the preset's synthetic world once (`<output>/data/.complete` marks it)."""
        if self.preset.world is None:
            return
        root = self.data_dir()
        marker = os.path.join(root, ".complete")
        if os.path.isfile(marker):
            return
        command = [sys.executable, os.path.join(ROOT, GENERATOR), "--out", root, "--overwrite"]
        for flag, value in self.preset.world.items():
            command += [flag, str(value)]
        logger.info("Generating the synthetic world into %s", root)
        self.runner(command, os.path.join(self.output_dir, "data_generation.log"))
        os.makedirs(root, exist_ok=True)
        with open(marker, "w") as f:
            json.dump(self.preset.world, f)

    def train_stage(self, script: str, config_file: str, output: str, overrides: Sequence[str],
                    max_iter: int) -> str:
        """Run a training stage unless its `model_final.pth` exists; returns that checkpoint.

        A finished stage is reused only when its `stage.json` records the same number of
        iterations.

        Raises:
            ValueError: a finished stage of another iteration count (or of unknown count).
            RuntimeError: the stage failed or wrote no final checkpoint.
        """
        checkpoint = os.path.join(output, "model_final.pth")
        record_path = os.path.join(output, "stage.json")
        if os.path.isfile(checkpoint):
            recorded = None
            if os.path.isfile(record_path):
                with open(record_path) as f:
                    recorded = json.load(f).get("max_iter")
            if recorded != max_iter:
                trained = "an unrecorded number of" if recorded is None else str(recorded)
                raise ValueError(
                    f"{checkpoint} was trained for {trained} iterations, this comparison uses "
                    f"{max_iter}: every method must get the same iterations; use another "
                    "--output")
            logger.info("Reusing %s", checkpoint)
            return checkpoint
        self.runner(self._python(script, config_file, output,
                                 list(overrides) + ["SOLVER.MAX_ITER", str(max_iter)]),
                    os.path.join(output, "stage.log"))
        if not os.path.isfile(checkpoint):
            raise RuntimeError(f"Training stage {output} finished without {checkpoint}")
        with open(record_path, "w") as f:
            json.dump({"max_iter": max_iter, "config_file": config_file}, f)
        drop_periodic_checkpoints(output)
        return checkpoint

    def merge(self, lidar: str, camera: str, output: str, detector: bool = False) -> str:
        """Merge a LiDAR-only and a camera-only checkpoint into `output` unless it exists
        (`detector`: also the LiDAR detector's BEV backbone and head)."""
        if os.path.isfile(output):
            return output
        command = [sys.executable, os.path.join(ROOT, MERGE_TOOL), "--lidar", lidar,
                   "--camera", camera, "--output", output]
        if detector:
            command.append("--with-lidar-head")
        logger.info("Merging %s and %s into %s", lidar, camera, output)
        os.makedirs(os.path.dirname(output), exist_ok=True)
        self.runner(command, os.path.join(os.path.dirname(output), "stage.log"))
        return output

    def pretrain(self, method: str, seed: Optional[int] = None) -> str:
        """The encoder checkpoint `method` starts from ('' for scratch), pre-trained (or merged)
        on first need; `seed`: its pre-training's SEED (None: the config's)."""
        if method == "scratch":
            return ""
        if method in MERGE_SOURCES:
            lidar, camera = (self.pretrain(source, seed) for source in MERGE_SOURCES[method])
            return self.merge(lidar, camera,
                              os.path.join(self.pretrain_dir(method, seed), "merged.pth"))
        script, config_file, extra = self.preset.pretrain_configs[method]
        max_iter = self.preset.pretrain_iters or get_config_max_iter(config_file)
        seeded = [] if seed is None else ["SEED", str(seed)]
        logger.info("Pre-training %s%s (%s)", method, "" if seed is None else f", seed {seed}",
                    config_file)
        return self.train_stage(script, config_file, self.pretrain_dir(method, seed),
                                ["DATASETS.TEST", "[]"] + list(extra)
                                + list(self.preset.pretrain_overrides) + seeded, max_iter)

    def _labels(self, cell: Cell) -> List[str]:
        """The labelled data and seed of a detector training of `cell`."""
        # repr keeps a float a float ("1.0"; "1" would not merge into the float key)
        fraction = float(self.preset.labelled_fraction * cell.fraction)
        return ["DATASETS.TRAIN_FRACTION", repr(fraction),
                "DATASETS.TRAIN_FRACTION_SEED", "0", "SEED", str(cell.seed)]

    def unipad_initialisation(self, cell: Cell) -> str:
        """The UniPAD recipe's start for `cell`: a LiDAR-only and a camera-only detector, each
        fine-tuned from its pre-training on the cell's labels, seed and iterations, merged
        (encoders of each, BEV backbone and head of the LiDAR detector)."""
        detectors = []
        for source, modality in UNIPAD_STAGES:
            output = os.path.join(self.cell_dir(cell), f"{modality}_detector")
            logger.info("UniPAD recipe: %s-only detector of %s", modality, cell.describe())
            detectors.append(self.train_stage(
                CLAP_TRAIN_NET, self.preset.detection_config, output,
                list(self.preset.finetune_overrides) + self._labels(cell) + [
                    "MODEL.MODALITIES", f"['{modality}']",
                    "MODEL.PRETRAINED_ENCODERS", self.pretrain(source, self.pretrain_seed(cell)),
                    "DATASETS.TEST", "[]"],
                self.preset.finetune_iters))
        return self.merge(*detectors, os.path.join(self.cell_dir(cell), "merged.pth"),
                          detector=True)

    def run_cell(self, cell: Cell) -> dict:
        """Train and evaluate one cell unless its result.json exists; returns the result, with
        the cell's evaluations during training (`evaluations`) under "evaluations"."""
        return {**self._train_or_reuse(cell), "evaluations": self.evaluations(cell)}

    def evaluations(self, cell: Cell) -> List[dict]:
        """Every evaluation of a cell's detector on the test split, from its `metrics.json`
        (the periodic ones of TEST.EVAL_PERIOD and the final one): [{"iterations" (trained so
        far), "mAP", "NDS"}] in training order, the last record of an iteration when a resumed
        run wrote it twice; [] without the file."""
        path = os.path.join(self.cell_dir(cell), "metrics.json")
        if not os.path.isfile(path):
            return []
        prefix = f"{self.preset.test_dataset}/"
        max_iter = self.iterations(cell.protocol)
        by_iterations = {}
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if prefix + "mAP" in record:
                    # periodic records carry the 0-based index of the last step, the final one
                    # the iteration count
                    iterations = min(record["iteration"] + 1, max_iter)
                    by_iterations[iterations] = {"iterations": iterations,
                                                 "mAP": record[prefix + "mAP"],
                                                 "NDS": record[prefix + "NDS"]}
        return [by_iterations[i] for i in sorted(by_iterations)]

    def _train_or_reuse(self, cell: Cell) -> dict:
        output = self.cell_dir(cell)
        result_path = self.result_path(cell)
        max_iter = self.iterations(cell.protocol)
        if os.path.isfile(result_path):
            with open(result_path) as f:
                result = json.load(f)
            if result["max_iter"] != max_iter:
                raise ValueError(
                    f"{result_path} was trained for {result['max_iter']} iterations, this "
                    f"comparison uses {max_iter}: every method must get the same iterations; "
                    "use another --output")
            train_fraction = self.preset.labelled_fraction * cell.fraction
            if abs(result.get("train_fraction", train_fraction) - train_fraction) > 1e-12:
                raise ValueError(
                    f"{result_path} was trained on DATASETS.TRAIN_FRACTION "
                    f"{result['train_fraction']:g}, this comparison uses {train_fraction:g} "
                    "(another labelled_fraction); use another --output")
            logger.info("Reusing %s", result_path)
            return result
        overrides = self._labels(cell) + [
            "SOLVER.MAX_ITER", str(max_iter), "DATASETS.TEST", f"['{self.preset.test_dataset}']"]
        pretrain_seed = self.pretrain_seed(cell)
        if cell.protocol == "probe":
            script, start = PROBE_TRAIN_NET, self.pretrain(cell.method, pretrain_seed)
            overrides = list(self.preset.probe_overrides) + overrides + [
                "MODEL.PRETRAINED_ENCODERS", start,
                "PROBE.CACHE_DIR", self.probe_cache_dir(cell.method, pretrain_seed)]
        elif cell.method == "unipad":
            script, start = CLAP_TRAIN_NET, self.unipad_initialisation(cell)
            overrides = list(self.preset.finetune_overrides) + overrides + [
                "MODEL.WEIGHTS", start, "MODEL.PRETRAINED_ENCODERS", ""]
        else:
            script, start = CLAP_TRAIN_NET, self.pretrain(cell.method, pretrain_seed)
            overrides = list(self.preset.finetune_overrides) + overrides + [
                "MODEL.PRETRAINED_ENCODERS", start]
        logger.info("Training %s into %s", cell.describe(), output)
        self.runner(self._python(script, self.preset.detection_config, output, overrides),
                    os.path.join(output, "stage.log"))
        summary_path = os.path.join(output, "inference", self.preset.test_dataset,
                                    "metrics_summary.json")
        if not os.path.isfile(summary_path):
            raise RuntimeError(f"Training {output} finished without {summary_path}")
        with open(summary_path) as f:
            summary = json.load(f)
        result = {
            "method": cell.method, "protocol": cell.protocol, "fraction": cell.fraction,
            "train_fraction": self.preset.labelled_fraction * cell.fraction, "seed": cell.seed,
            "max_iter": max_iter, "start": start,
            "pretrain_seed": pretrain_seed if _pretrainings_of(cell.method) else None,
            "mAP": summary["mean_ap"], "NDS": summary["nd_score"],
            "tp_errors": summary.get("tp_errors", {}),
            "AP": summary.get("mean_dist_aps", {}),
        }
        with open(result_path, "w") as f:
            json.dump(result, f, indent=2)
        drop_periodic_checkpoints(output)
        return result

    def _pretrain_all(self, cells: Sequence[Cell], jobs: int) -> None:
        """Every pre-training `cells` need, `jobs` at a time (merges after their sources); a
        failure is logged and left to the cells that need it."""
        from concurrent.futures import ThreadPoolExecutor

        methods = list(dict.fromkeys((c.method, self.pretrain_seed(c)) for c in cells))
        sources = list(dict.fromkeys((s, seed) for m, seed in methods
                                     for s in _pretrainings_of(m)))

        def pretrain(method_and_seed: Tuple[str, Optional[int]]) -> None:
            try:
                self.pretrain(*method_and_seed)
            except RuntimeError as error:
                logger.error("Pre-training %s failed: %s", method_and_seed[0], error)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(pretrain, sources))
        for method_and_seed in methods:
            if method_and_seed[0] in MERGE_SOURCES:
                pretrain(method_and_seed)

    def run(self, progress: bool = True, jobs: int = 1) -> dict:
        """The data, every cell (pre-training on first need), then the table, the JSON and the
        plot; returns the JSON dict.

        With `jobs` > 1 the pre-trainings run first, `jobs` at a time, then the cells, `jobs`
        at a time: the probe cells of one method one after another (the first fills the
        method's feature cache), every other cell on its own. Each stage is one process, so
        `jobs` should not exceed the cores (or GPUs) divided by a stage's threads.

        A cell whose stage fails (RuntimeError) is logged and listed under "failures"; the
        others still run, and running again retries it.
        """
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.prepare_data()
        cells = self.cells()
        finished = sum(os.path.isfile(self.result_path(c)) for c in cells)
        if jobs > 1:
            self._pretrain_all(cells, jobs)
        groups: Dict[tuple, List[Cell]] = {}
        for index, cell in enumerate(cells):
            key = ("probe", cell.method) if cell.protocol == "probe" else ("cell", index)
            groups.setdefault(key, []).append(cell)
        outcomes: Dict[Cell, dict] = {}
        with logging_redirect_tqdm(), tqdm(total=len(cells), initial=finished, unit="cell",
                                           desc="cells", disable=not progress) as bar:

            def run_group(group: List[Cell]) -> None:
                for cell in group:
                    pending = not os.path.isfile(self.result_path(cell))
                    try:
                        outcomes[cell] = {"result": self.run_cell(cell)}
                    except RuntimeError as error:  # a failed stage; the other cells still run
                        logger.error("%s failed: %s", cell.describe(), error)
                        outcomes[cell] = {"failure": {**cell.__dict__, "error": str(error)}}
                    if pending:
                        bar.update(1)

            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for future in [pool.submit(run_group, group) for group in groups.values()]:
                    future.result()
        results = [outcomes[c]["result"] for c in cells if "result" in outcomes[c]]
        failures = [outcomes[c]["failure"] for c in cells if "failure" in outcomes[c]]
        return self.write_report(results, failures)

    def finished_results(self) -> List[dict]:
        """The results of the cells that have their `result.json`; nothing is run."""
        return [self.run_cell(cell) for cell in self.cells()
                if os.path.isfile(self.result_path(cell))]

    def write_report(self, results: Sequence[dict], failures: Sequence[dict] = ()) -> dict:
        """Tabulate `results` (cells' result.json contents) and write comparison.json,
        comparison.md and comparison.png into the output folder; returns the report."""
        report = summarize(results, self.methods, self.preset.protocols, self.preset.fractions)
        report["evaluation_curve"] = evaluation_curve(results, self.methods,
                                                      self.preset.protocols, self.preset.fractions)
        report["failures"] = list(failures)
        report["signal"] = {
            protocol: signal_check([e for e in report["summary"] if e["protocol"] == protocol])
            for protocol in dict.fromkeys(e["protocol"] for e in report["summary"])}
        report["finetune_iters"] = self.preset.finetune_iters
        report["probe_iters"] = self.preset.probe_iters
        report["pretrain_iters"] = self.preset.pretrain_iters
        report["pretrain_per_seed"] = self.preset.pretrain_per_seed
        report["labelled_fraction"] = self.preset.labelled_fraction
        os.makedirs(self.output_dir, exist_ok=True)
        with open(os.path.join(self.output_dir, "comparison.json"), "w") as f:
            json.dump(report, f, indent=2)
        with open(os.path.join(self.output_dir, "comparison.md"), "w") as f:
            f.write(format_report(report))
        if report["summary"]:
            plot_report(report, os.path.join(self.output_dir, "comparison.png"))
        return report


METRICS = ("mAP", "NDS")


def _scores(cells: Sequence[dict], method: str, protocol: str, fraction: float,
            metric: str) -> Dict[int, float]:
    """seed -> `metric` of the cells of one method, protocol and fraction."""
    return {c["seed"]: c[metric] for c in cells if c["method"] == method
            and c["protocol"] == protocol and c["fraction"] == fraction}


# Differences between rows that the paper's claims are about (docs/comparison.md): the steps of
# CLAP's ablation and CLAP against UniPAD, each where both rows have seeds to pair.
CONTRASTS = (("clap_curvature", "clap_uniform"), ("clap", "clap_curvature"),
             ("clap", "unipad_merge"), ("clap", "unipad"))


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
                f"{_percent(entry['mAP_mean'])} +- {_percent(entry['mAP_std'])}")
            row.append(text if gain is None else f"{text}; {_interval(gain)}")
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "mAP in %, mean +- std over the seeds at each evaluation of the same "
                        "runs; after `;` the gain over scratch [95%], paired by seed.", ""]


def _title(method: str, protocol: str) -> str:
    """The row title of a method in a protocol's tables."""
    if method == "scratch" and protocol == "probe":
        return "From scratch (frozen random backbones)"
    return METHOD_TITLES.get(method, method)


def _percent(value: float) -> str:
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
                        row.append(_percent(entry[f"{metric}_mean"]))
                    else:
                        row.append(f"{_percent(entry[f'{metric}_mean'])} +- "
                                   f"{_percent(entry[f'{metric}_std'])}")
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
        f"scratch mAP {_percent(check['scratch_mAP'])}"
    verdict = "met" if check["scratch_ok"] and check["spread_ok"] else "NOT met"
    allowed = check["spread"] * MAX_STD_SHARE_OF_SPREAD
    return (f"Signal at {format_fraction(check['fraction'])} labels: {scratch} (needs >= "
            f"{_percent(MIN_SCRATCH_MAP)}), largest row std {_percent(check['max_std'])} vs a "
            f"third of the spread between rows {_percent(allowed)} (mAP, %): {verdict}.")


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
                row.append("-" if gain is None else _interval(gain))
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


def _interval(difference: dict) -> str:
    """'+1.23 [-0.50, +2.96]*' in points of % (* where the interval excludes 0)."""
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
                row.append("-" if contrast is None else _interval(contrast))
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "Differences between rows the paper's claims compare (the ablation's "
                        "steps, CLAP against UniPAD), paired by seed as the gains.", ""]


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
        row += ["-" if (method, m) not in by_key else _interval(by_key[(method, m)])
                for m in METRICS]
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", "Positive: the gain over scratch grows as labels shrink; per seed, the "
                        "gain at the smaller fraction minus the gain at the larger, paired by "
                        "seed as the gains.", ""]


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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("small", "cpu", "paper"), default="small")
    parser.add_argument("--output", required=True, help="root folder of every stage and result")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=ALL_METHODS,
                        help="rows of the table, in table order (default: every method; the "
                        f"variants {', '.join(CLAP_VARIANTS)} only when named)")
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
    return parser.parse_args(argv)


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
        report = comparison.write_report(comparison.finished_results())
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
