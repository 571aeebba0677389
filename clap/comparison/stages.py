"""Runs a comparison's stages (data, pre-trainings, merges, detector cells) as subprocesses,
resumably, and collects their results (docs/comparison.md, "Running")."""

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .methods import (
    ALL_METHODS,
    CLAP_TRAIN_NET,
    GENERATOR,
    MERGE_SOURCES,
    MERGE_TOOL,
    METHODS,
    PROBE_TRAIN_NET,
    PROTOCOLS,
    ROOT,
    UNIPAD_RECIPES,
    UNIPAD_STAGES,
    pretrainings_of,
)
from .plot import plot_report
from .presets import SHARED_PRETRAIN_SEED, Preset, get_config_max_iter, methods_of
from .report import (
    METRICS,
    evaluation_curve,
    format_fraction,
    format_report,
    rerun_differences,
    signal_check,
    summarize,
)

logger = logging.getLogger(__name__)


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


def _with_recorded_scores(cell: Cell, result: dict, recorded: dict) -> dict:
    """A cell trained again: its result with the recorded scores of the earlier run under
    "recorded" ({"mAP", "NDS"}); logs whether they reproduced."""
    scores = [(metric, result[metric], recorded[metric]) for metric in METRICS]
    if all(abs(new - old) <= 1e-9 for _, new, old in scores):
        logger.info("%s reproduced its recorded scores", cell.describe())
    else:
        logger.warning("%s differs from its recorded scores (%s); the table uses the new ones",
                       cell.describe(), ", ".join(f"{metric} {new:.4f} vs {old:.4f}"
                                                  for metric, new, old in scores))
    return {**result, "recorded": {metric: recorded[metric] for metric in METRICS}}


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
        """The pre-training seed of `cell`'s encoders; None: the shared pre-training (SEED
        `SHARED_PRETRAIN_SEED`, so it is also that seed's pre-training of `pretrain_per_seed`:
        a per-seed table extends the shared one), or none (scratch)."""
        per_seed = (self.preset.pretrain_per_seed and pretrainings_of(cell.method)
                    and cell.seed != SHARED_PRETRAIN_SEED)
        return cell.seed if per_seed else None

    def data_dir(self) -> str:
        return os.path.join(self.output_dir, "data")

    def cell_dir(self, cell: Cell) -> str:
        method_dir = os.path.join(self.output_dir, cell.protocol, cell.method)
        if self.pretrain_seed(cell) is not None:
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
        on first need; `seed`: its pre-training's SEED (None: the shared pre-training's,
        `SHARED_PRETRAIN_SEED`)."""
        if method == "scratch":
            return ""
        if method in MERGE_SOURCES:
            lidar, camera = (self.pretrain(source, seed) for source in MERGE_SOURCES[method])
            return self.merge(lidar, camera,
                              os.path.join(self.pretrain_dir(method, seed), "merged.pth"))
        script, config_file, extra = self.preset.pretrain_configs[method]
        max_iter = self.preset.pretrain_iters or get_config_max_iter(config_file)
        logger.info("Pre-training %s%s (%s)", method, "" if seed is None else f", seed {seed}",
                    config_file)
        return self.train_stage(script, config_file, self.pretrain_dir(method, seed),
                                ["DATASETS.TEST", "[]"] + list(extra)
                                + list(self.preset.pretrain_overrides)
                                + ["SEED", str(SHARED_PRETRAIN_SEED if seed is None else seed)],
                                max_iter)

    def _labels(self, cell: Cell) -> List[str]:
        """The labelled data and seed of a detector training of `cell`."""
        # repr keeps a float a float ("1.0"; "1" would not merge into the float key)
        fraction = float(self.preset.labelled_fraction * cell.fraction)
        return ["DATASETS.TRAIN_FRACTION", repr(fraction),
                "DATASETS.TRAIN_FRACTION_SEED", "0", "SEED", str(cell.seed)]

    def unipad_initialisation(self, cell: Cell) -> str:
        """The UniPAD recipe's start for `cell`: a LiDAR-only and a camera-only detector, each
        fine-tuned on the cell's labels, seed and iterations from its pre-training (`unipad`)
        or from random encoders (`unipad_scratch`), merged (encoders of each, BEV backbone and
        head of the LiDAR detector)."""
        detectors = []
        for source, modality in UNIPAD_STAGES:
            output = os.path.join(self.cell_dir(cell), f"{modality}_detector")
            logger.info("UniPAD recipe: %s-only detector of %s", modality, cell.describe())
            encoders = (self.pretrain(source, self.pretrain_seed(cell))
                        if cell.method == "unipad" else "")
            detectors.append(self.train_stage(
                CLAP_TRAIN_NET, self.preset.detection_config, output,
                list(self.preset.finetune_overrides) + self._labels(cell) + [
                    "MODEL.MODALITIES", f"['{modality}']",
                    "MODEL.PRETRAINED_ENCODERS", encoders, "DATASETS.TEST", "[]"],
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

    def _check_result(self, result: dict, cell: Cell, source: str) -> None:
        """Refuse a finished `cell`'s result (read from `source`) that another comparison made:
        another iteration count or another DATASETS.TRAIN_FRACTION."""
        max_iter = self.iterations(cell.protocol)
        if result["max_iter"] != max_iter:
            raise ValueError(
                f"{source} was trained for {result['max_iter']} iterations, this comparison "
                f"uses {max_iter}: every method must get the same iterations; use another "
                "--output")
        train_fraction = self.preset.labelled_fraction * cell.fraction
        if abs(result.get("train_fraction", train_fraction) - train_fraction) > 1e-12:
            raise ValueError(
                f"{source} was trained on DATASETS.TRAIN_FRACTION {result['train_fraction']:g}, "
                f"this comparison uses {train_fraction:g} (another labelled_fraction); use "
                "another --output")

    def _train_or_reuse(self, cell: Cell) -> dict:
        output = self.cell_dir(cell)
        result_path = self.result_path(cell)
        max_iter = self.iterations(cell.protocol)
        if os.path.isfile(result_path):
            with open(result_path) as f:
                result = json.load(f)
            self._check_result(result, cell, result_path)
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
        elif cell.method in UNIPAD_RECIPES:
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
            "pretrain_seed": pretrain_seed,
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
                                     for s in pretrainings_of(m)))

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

    def recorded_results(self, paths: Sequence[str]) -> Dict[Cell, dict]:
        """The cells of this table in the "cells" lists of earlier reports (`comparison.json`
        files, e.g. the committed docs/comparison.json, whose stage folders are gone), each
        checked like a finished cell; a cell in several files is taken from the first."""
        table = set(self.cells())
        recorded: Dict[Cell, dict] = {}
        for path in paths:
            with open(path) as f:
                report = json.load(f)
            if not isinstance(report, dict) or not isinstance(report.get("cells"), list):
                raise ValueError(f"{path} has no 'cells' list: not a comparison.json")
            for result in report["cells"]:
                cell = Cell(result["method"], result["protocol"], result["fraction"],
                            result["seed"])
                if (cell in table and cell not in recorded
                        and result.get("pretrain_seed") == self.pretrain_seed(cell)):
                    self._check_result(result, cell, f"{path} ({cell.describe()})")
                    # scores an earlier re-run compared against are not this report's re-run
                    recorded[cell] = {k: v for k, v in result.items() if k != "recorded"}
        return recorded

    def finished_results(self, recorded_paths: Sequence[str] = ()) -> List[dict]:
        """The results of the cells that have their `result.json`, and of the cells recorded in
        the reports `recorded_paths` that have none (`recorded_results`); nothing is run. A
        cell both finished and recorded is taken from its `result.json`, with the recorded
        scores under "recorded", and a warning says when they differ (the cell did not
        reproduce)."""
        recorded = self.recorded_results(recorded_paths)
        results = []
        for cell in self.cells():
            if os.path.isfile(self.result_path(cell)):
                result = self.run_cell(cell)
                if cell in recorded:
                    result = _with_recorded_scores(cell, result, recorded[cell])
                results.append(result)
            elif cell in recorded:
                results.append(recorded[cell])
        return results

    def write_report(self, results: Sequence[dict], failures: Sequence[dict] = ()) -> dict:
        """Tabulate `results` (cells' result.json contents) and write comparison.json,
        comparison.md and comparison.png into the output folder; returns the report."""
        report = summarize(results, self.methods, self.preset.protocols, self.preset.fractions)
        report["reruns"] = rerun_differences(results)
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
