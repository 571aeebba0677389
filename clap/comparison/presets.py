"""Presets of a comparison: the data, the schedules and the seeds of each scale, and the time
estimate of a run (docs/comparison.md, "Presets")."""

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .methods import (
    ALL_METHODS,
    CLAP_TRAIN_NET,
    CLAP_VARIANTS,
    METHODS,
    PROBE_METHODS,
    ROOT,
    SIMIPU_TRAIN_NET,
    SINGLE_MODAL_TRAIN_NET,
    UNIPAD_RECIPES,
    pretrainings_of,
)

# SEED of a method's shared pre-training; with `pretrain_per_seed` it is this seed's pre-training
SHARED_PRETRAIN_SEED = 0


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
            (`SHARED_PRETRAIN_SEED`) for every seed; the shared pre-training and its cells are
            those of seed `SHARED_PRETRAIN_SEED`.
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
    (too few iterations to rank the methods); `cpu`: a ranking on 2 CPU cores (the probe
    protocol within 3 hours, both protocols about 4.8; docs/comparison.md); `paper`: nuScenes
    on GPUs, the paper's label fractions and 3 seeds."""
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
            pretrained.update(pretrainings_of(method))
    pretrain_iters = preset.pretrain_iters or 0
    start = seconds.get("stage_start", 0.0)
    # pre-trainings, and the probe's features of their backbones, once or once per seed
    copies = len(preset.seeds) if preset.pretrain_per_seed else 1
    estimate = {
        "data": (train_frames + test_frames) * seconds.get("generate_frame", 0.0)
        if preset.world else 0.0,
        "pretrain": copies * sum(pretrain_iters * seconds.get(f"pretrain/{m}", 0.0) + start
                                 for m in pretrained),
    }
    if "finetune" in preset.protocols:
        tuned = methods_of(preset, methods, "finetune")
        # the UniPAD recipe trains two single-modal detectors first in every cell
        trainings = sum(3 if m in UNIPAD_RECIPES else 1 for m in tuned)
        estimate["finetune"] = runs * (
            trainings * (preset.finetune_iters * seconds.get("finetune", 0.0) + start)
            + len(tuned) * test_frames * seconds.get("eval_frame", 0.0))
    if "probe" in preset.protocols:
        probed = methods_of(preset, methods, "probe")
        estimate["probe_cache"] = copies * len(probed) * (labelled + test_frames) * seconds.get(
            "encode_frame", 0.0)
        estimate["probe"] = runs * len(probed) * (
            preset.probe_iters * seconds.get("probe", 0.0) + start
            + test_frames * seconds.get("probe_eval_frame", 0.0))
    for part in estimate:
        if part != "data":
            estimate[part] /= jobs
    estimate["total"] = sum(estimate.values())
    return estimate
