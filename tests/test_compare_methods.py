"""tools/compare_methods.py and clap.comparison: the bookkeeping with a fake stage runner (no
training), and the statistics of the table."""

import dataclasses
import json
import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import compare_methods  # noqa: E402

from clap import comparison  # noqa: E402
from clap.evaluation.statistics import mean_std, paired_difference  # noqa: E402

SMALL_TEST = "nuscenes_v1.0-mini_mini_val"
CPU_TEST = "nuscenes_v1.0-trainval_val"
# mAP the fake training of (method, seed) reports (NDS = mAP + 0.1); the probe adds PROBE_SHIFT
FAKE_MAP = {("scratch", 0): 0.10, ("scratch", 1): 0.14, ("scratch", 2): 0.12,
            ("clap", 0): 0.20, ("clap", 1): 0.30, ("clap", 2): 0.22,
            ("unipad_merge", 0): 0.15, ("unipad_merge", 1): 0.15, ("unipad_merge", 2): 0.13,
            ("unipad", 0): 0.16, ("unipad", 1): 0.18, ("unipad", 2): 0.17,
            ("unipad_scratch", 0): 0.15, ("unipad_scratch", 1): 0.15,
            ("simipu", 0): 0.11, ("simipu", 1): 0.13, ("simipu", 2): 0.13,
            ("clap_nk128", 0): 0.19, ("clap_temperature1", 0): 0.09}
PROBE_SHIFT = 0.01


def option(command, key):
    return command[command.index(key) + 1]


class FakeRunner:
    """Records every stage and writes the files a real one would."""

    def __init__(self, test_dataset=SMALL_TEST):
        self.commands = []
        self.test_dataset = test_dataset

    def __call__(self, command, log_path):
        self.commands.append(list(command))
        if "--overwrite" in command:  # the data generator
            os.makedirs(option(command, "--out"), exist_ok=True)
            return
        if "--lidar" in command:  # the merge tool
            with open(option(command, "--output"), "w") as f:
                f.write("merged")
            return
        output = option(command, "OUTPUT_DIR")
        os.makedirs(output, exist_ok=True)
        for checkpoint in ("model_0000009.pth", "model_final.pth"):
            with open(os.path.join(output, checkpoint), "w") as f:
                f.write("weights")
        tests = [c for i, c in enumerate(command) if i and command[i - 1] == "DATASETS.TEST"]
        if not tests or tests[-1] == "[]":  # a pre-training or a stage of the UniPAD recipe
            return
        parts = output.split(os.sep)[:-2]  # without fraction_<f>/seed_<s>
        if parts[-1] == "pretrained_per_seed":
            parts = parts[:-1]
        protocol, method = parts[-2:]
        seed = int(option(command, "SEED"))
        value = FAKE_MAP[(method, seed)] + (PROBE_SHIFT if protocol == "probe" else 0.0)
        summary_dir = os.path.join(output, "inference", self.test_dataset)
        os.makedirs(summary_dir)
        with open(os.path.join(summary_dir, "metrics_summary.json"), "w") as f:
            json.dump({"mean_ap": value, "nd_score": value + 0.1, "tp_errors": {},
                       "mean_dist_aps": {}}, f)


def run(tmp_path, runner, methods=("scratch", "unipad_merge", "clap"), extra=(),
        protocols=("finetune",), seeds=("0", "1")):
    argv = ["--preset", "small", "--output", str(tmp_path), "--seeds", *seeds,
            "--methods", *methods, "--protocols", *protocols, *extra]
    return compare_methods.main(argv, runner=runner, progress=False)


def scripts_of(runner):
    return [os.path.relpath(c[1], comparison.ROOT) for c in runner.commands]


def test_schedules_pretrainings_merges_and_equal_finetunings(tmp_path):
    runner = FakeRunner()
    run(tmp_path, runner)

    assert scripts_of(runner) == [
        "tools/train_net.py", "tools/train_net.py",  # scratch, seeds 0 and 1
        "projects/single_modal/train_net.py", "projects/single_modal/train_net.py",
        "projects/single_modal/tools/merge_weights.py",
        "tools/train_net.py", "tools/train_net.py",  # merge fine-tunings
        "tools/train_net.py",  # CLAP pre-training
        "tools/train_net.py", "tools/train_net.py",
    ]
    finetunes = [c for c in runner.commands if "MODEL.PRETRAINED_ENCODERS" in c]
    assert {option(c, "SOLVER.MAX_ITER") for c in finetunes} == {"100"}
    assert [option(c, "SEED") for c in finetunes] == ["0", "1"] * 3
    assert [option(c, "MODEL.PRETRAINED_ENCODERS") for c in finetunes[:2]] == ["", ""]
    merge = runner.commands[4]
    assert "--with-lidar-head" not in merge  # the pre-trained merge: encoders only
    assert option(merge, "--lidar").endswith(os.path.join("lidar_only", "model_final.pth"))
    assert option(merge, "--camera").endswith(os.path.join("camera_only", "model_final.pth"))
    assert option(finetunes[2], "MODEL.PRETRAINED_ENCODERS") == option(merge, "--output")
    clap_pretrain = runner.commands[7]
    assert option(clap_pretrain, "--config-file").endswith("configs/synthetic/clap_cpu.yaml")
    assert option(clap_pretrain, "SOLVER.MAX_ITER") == "30"
    assert option(finetunes[-1], "MODEL.PRETRAINED_ENCODERS") == os.path.join(
        str(tmp_path), "pretrain", "clap", "model_final.pth")
    assert len({option(c, "OUTPUT_DIR") for c in runner.commands if "OUTPUT_DIR" in c}) == 9
    with open(tmp_path / "pretrain" / "clap" / "stage.json") as f:
        assert json.load(f)["max_iter"] == 30


def test_finished_stages_keep_only_their_final_checkpoint(tmp_path):
    run(tmp_path, FakeRunner(), protocols=("finetune", "probe"), seeds=("0",))
    checkpoints = [os.path.relpath(os.path.join(d, f), tmp_path)
                   for d, _, files in os.walk(tmp_path) for f in files if f.endswith(".pth")]
    periodic = [c for c in checkpoints if os.path.basename(c).startswith("model_0")]
    assert len(checkpoints) == 10 and not periodic, checkpoints  # 9 stages' finals, 1 merge
    assert os.path.isfile(tmp_path / "pretrain" / "clap" / "model_final.pth")


def test_writes_mean_std_gains_plot_and_skips_finished_cells(tmp_path):
    run(tmp_path, FakeRunner())

    with open(tmp_path / "comparison.json") as f:
        report = json.load(f)
    clap = next(e for e in report["summary"] if e["method"] == "clap")
    assert clap["num_seeds"] == 2
    assert clap["mAP_mean"] == pytest.approx(0.25)
    assert clap["mAP_std"] == pytest.approx(0.0707107, rel=1e-5)  # sample std of 0.2, 0.3
    assert clap["NDS_mean"] == pytest.approx(0.35)
    cell = report["cells"][0]
    assert {k: cell[k] for k in ("method", "protocol", "fraction", "seed", "mAP", "NDS")} == {
        "method": "scratch", "protocol": "finetune", "fraction": 1.0, "seed": 0, "mAP": 0.10,
        "NDS": pytest.approx(0.20)}
    assert report["signal"]["finetune"]["scratch_mAP"] == pytest.approx(0.12)
    gain = next(g for g in report["gains"] if g["method"] == "clap" and g["metric"] == "mAP")
    assert gain["mean"] == pytest.approx(0.13)  # (0.2 - 0.1 + 0.3 - 0.14) / 2
    assert gain["num_pairs"] == 2
    table = (tmp_path / "comparison.md").read_text()
    assert "| CLAP (curvature + prototypes) | 25.00 +- 7.07 | 35.00 +- 7.07 |" in table
    assert "| From scratch | 12.00 +- 2.83 | 22.00 +- 2.83 |" in table
    assert "Significant at 95%:" in table
    # scratch at 12% < 25%, largest std 7.07 > (25 - 12) / 3
    assert "Signal at 100% labels: scratch mAP 12.00 (needs >= 25.00), largest row std 7.07 vs " \
        "a third of the spread between rows 4.33 (mAP, %): NOT met." in table
    assert (tmp_path / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    second = FakeRunner()
    run(tmp_path, second)
    assert second.commands == []  # every cell finished: nothing runs again

    third = FakeRunner()  # a new seed: only its fine-tunings run, pre-trainings are reused
    run(tmp_path, third, seeds=("2",))
    assert [option(c, "SEED") for c in third.commands] == ["2", "2", "2"]


def test_single_seed_table_shows_the_mean_without_a_spread(tmp_path):
    run(tmp_path, FakeRunner(), methods=("scratch", "clap"), seeds=("0",))
    table = (tmp_path / "comparison.md").read_text()
    assert "| From scratch | 10.00 | 20.00 |" in table
    assert "| CLAP (curvature + prototypes) | 20.00 | 30.00 |" in table
    assert "+-" not in table
    assert "fewer than 2 seeds paired" in table


def test_refuses_finished_cells_of_another_iteration_count(tmp_path):
    run(tmp_path, FakeRunner(), methods=("scratch",))
    with pytest.raises(ValueError, match="same iterations"):
        run(tmp_path, FakeRunner(), methods=("scratch",), extra=("--finetune-iters", "7"))


def test_refuses_finished_cells_of_another_labelled_subset(tmp_path):
    run(tmp_path, FakeRunner(), methods=("scratch",), seeds=("0",))
    preset = comparison.get_preset("small")
    preset.protocols, preset.seeds, preset.labelled_fraction = ["finetune"], [0], 0.5
    with pytest.raises(ValueError, match="TRAIN_FRACTION 1, this comparison uses 0.5"):
        comparison.Comparison(preset, str(tmp_path), ["scratch"], runner=FakeRunner()).run(
            progress=False)


def test_refuses_a_finished_pretraining_of_another_iteration_count(tmp_path):
    run(tmp_path, FakeRunner(), methods=("clap",), seeds=("0",))
    # new fine-tuning cells (another seed) reuse the CLAP pre-training: it must match
    with pytest.raises(ValueError, match="model_final.pth was trained for 30 iterations.*uses 50"):
        run(tmp_path, FakeRunner(), methods=("clap",), seeds=("1",),
            extra=("--pretrain-iters", "50"))
    os.remove(tmp_path / "pretrain" / "clap" / "stage.json")  # a run of unknown length
    with pytest.raises(ValueError, match="unrecorded number of iterations"):
        run(tmp_path, FakeRunner(), methods=("clap",), seeds=("1",))


def test_unipad_recipe_fine_tunes_both_single_modal_detectors_then_the_merged_fusion(tmp_path):
    runner = FakeRunner()
    run(tmp_path, runner, methods=("unipad",), seeds=("0",))

    assert scripts_of(runner) == [
        "projects/single_modal/train_net.py",  # LiDAR-only pre-training
        "tools/train_net.py",  # LiDAR-only detector
        "projects/single_modal/train_net.py",  # camera-only pre-training
        "tools/train_net.py",  # camera-only detector
        "projects/single_modal/tools/merge_weights.py",
        "tools/train_net.py",  # the fusion detector
    ]
    lidar, camera, merge, fusion = (runner.commands[i] for i in (1, 3, 4, 5))
    cell = os.path.join(str(tmp_path), "finetune", "unipad", "fraction_1", "seed_0")
    for command, modality, source in ((lidar, "lidar", "lidar_only"),
                                      (camera, "camera", "camera_only")):
        assert option(command, "MODEL.MODALITIES") == f"['{modality}']"
        assert option(command, "MODEL.PRETRAINED_ENCODERS") == os.path.join(
            str(tmp_path), "pretrain", source, "model_final.pth")
        assert option(command, "OUTPUT_DIR") == os.path.join(cell, f"{modality}_detector")
        # the same labels, seed and iterations as the cell
        assert option(command, "SOLVER.MAX_ITER") == option(fusion, "SOLVER.MAX_ITER") == "100"
        assert option(command, "DATASETS.TRAIN_FRACTION") == "1.0"
        assert option(command, "SEED") == "0"
    assert "--with-lidar-head" in merge
    assert option(merge, "--lidar") == os.path.join(cell, "lidar_detector", "model_final.pth")
    assert option(merge, "--camera") == os.path.join(cell, "camera_detector", "model_final.pth")
    assert option(fusion, "MODEL.WEIGHTS") == option(merge, "--output")
    assert option(fusion, "MODEL.PRETRAINED_ENCODERS") == ""
    assert option(fusion, "OUTPUT_DIR") == cell


def test_unipad_recipe_control_runs_the_same_stages_from_random_encoders(tmp_path):
    assert "unipad_scratch" not in comparison.METHODS  # a row only when named
    runner = FakeRunner()
    report = run(tmp_path, runner, methods=("scratch", "unipad", "unipad_scratch"),
                 seeds=("0", "1"))

    control = [c for c in runner.commands if os.sep + "unipad_scratch" + os.sep in " ".join(c)]
    # per seed: LiDAR-only detector, camera-only detector, merge, fusion detector; no
    # pre-training of its own
    assert scripts_of(runner).count("projects/single_modal/train_net.py") == 2  # unipad's
    assert len(control) == 8
    lidar, camera, merge, fusion = control[:4]
    assert option(lidar, "MODEL.MODALITIES") == "['lidar']"
    assert option(camera, "MODEL.MODALITIES") == "['camera']"
    assert option(lidar, "MODEL.PRETRAINED_ENCODERS") == option(
        camera, "MODEL.PRETRAINED_ENCODERS") == ""
    assert "--with-lidar-head" in merge
    assert option(fusion, "MODEL.WEIGHTS") == option(merge, "--output")
    recipe = [c for c in runner.commands if os.sep + "unipad" + os.sep in " ".join(c)
              and "MODEL.MODALITIES" in c]
    # the same labelled trainings as the recipe, differing only in the start and the folder
    for ours, theirs in zip((lidar, camera), recipe[:2]):
        differ = {ours[i - 1] for i, (a, b) in enumerate(zip(ours, theirs)) if a != b}
        assert differ == {"MODEL.PRETRAINED_ENCODERS", "OUTPUT_DIR"}
    contrasts = {(c["method"], c["baseline"], c["metric"]): c for c in report["contrasts"]}
    # what UniPAD's pre-training adds to its recipe: 0.16 - 0.15 and 0.18 - 0.15
    assert contrasts[("unipad", "unipad_scratch", "mAP")]["mean"] == pytest.approx(0.02)
    assert contrasts[("unipad", "unipad_scratch", "mAP")]["num_pairs"] == 2
    # the estimate counts its three labelled trainings per cell, and no pre-training
    preset = dataclasses.replace(comparison.get_preset("cpu"), protocols=["finetune"],
                                 finetune_methods=comparison.ALL_METHODS)
    control, recipe, scratch = (comparison.estimate_seconds(preset, [m])
                                for m in ("unipad_scratch", "unipad", "scratch"))
    assert control["pretrain"] == 0 < recipe["pretrain"]
    assert control["finetune"] == recipe["finetune"] > 2.5 * scratch["finetune"]


def test_probe_cells_share_a_feature_cache_per_method_and_skip_single_modal_methods(tmp_path):
    runner = FakeRunner()
    report = run(tmp_path, runner, methods=("scratch", "lidar_only", "unipad", "clap"),
                 protocols=("probe",), extra=("--probe-iters", "40"))

    probes = [c for c in runner.commands
              if c[1].endswith(os.path.join("projects", "probe", "train_net.py"))]
    assert [option(c, "OUTPUT_DIR").split(os.sep)[-3] for c in probes] == \
        ["scratch", "scratch", "clap", "clap"]
    assert {option(c, "SOLVER.MAX_ITER") for c in probes} == {"40"}
    assert {option(c, "PROBE.CACHE_DIR") for c in probes} == {
        os.path.join(str(tmp_path), "probe_cache", m) for m in ("scratch", "clap")}
    assert option(probes[0], "MODEL.PRETRAINED_ENCODERS") == ""  # frozen random encoders
    assert option(probes[2], "MODEL.PRETRAINED_ENCODERS").endswith(
        os.path.join("clap", "model_final.pth"))
    assert {e["method"] for e in report["summary"]} == {"scratch", "clap"}
    assert all(c["protocol"] == "probe" for c in report["cells"])
    table = (tmp_path / "comparison.md").read_text()
    assert "Probe (frozen LiDAR and image backbones" in table
    assert "| From scratch (frozen random backbones) | 13.00 +- 2.83 |" in table


def test_jobs_run_the_same_stages_with_every_pretraining_first(tmp_path):
    methods, protocols = ("scratch", "unipad_merge", "clap"), ("finetune", "probe")
    serial, parallel = FakeRunner(), FakeRunner()
    one = run(tmp_path / "one", serial, methods=methods, protocols=protocols)
    two = run(tmp_path / "two", parallel, methods=methods, protocols=protocols,
              extra=("--jobs", "2"))

    def stages(runner, root):
        return sorted(os.path.relpath(option(c, "OUTPUT_DIR"), root)
                      for c in runner.commands if "OUTPUT_DIR" in c)

    assert stages(parallel, tmp_path / "two") == stages(serial, tmp_path / "one")
    assert [(c["method"], c["protocol"], c["seed"], c["mAP"]) for c in two["cells"]] == \
        [(c["method"], c["protocol"], c["seed"], c["mAP"]) for c in one["cells"]]
    detectors = [i for i, c in enumerate(parallel.commands) if "DATASETS.TRAIN_FRACTION" in c]
    pretrainings = [i for i, c in enumerate(parallel.commands)
                    if "DATASETS.TRAIN_FRACTION" not in c and "OUTPUT_DIR" in c]
    assert max(pretrainings) < min(detectors)
    clap_probes = [option(c, "OUTPUT_DIR") for c in parallel.commands
                   if "PROBE.CACHE_DIR" in c and option(c, "PROBE.CACHE_DIR").endswith("clap")]
    assert [p.split(os.sep)[-1] for p in clap_probes] == ["seed_0", "seed_1"]
    assert comparison.estimate_seconds(comparison.get_preset("cpu"), jobs=2)[
        "total"] < comparison.estimate_seconds(comparison.get_preset("cpu"))["total"]


def test_cpu_preset_generates_its_world_once_and_trains_on_label_fractions(tmp_path):
    preset = comparison.get_preset("cpu")
    assert len(preset.fractions) >= 2 and len(preset.seeds) >= 3
    assert set(preset.protocols) == {"finetune", "probe"}
    assert preset.world["--scenes"] >= 40
    # the probe protocol, data and pre-training included, fits 3 hours on 2 cores; the
    # fine-tuning protocol's 800 iterations at batch 2 do not (docs/comparison.md)
    probe_only = dataclasses.replace(preset, protocols=["probe"])
    assert comparison.estimate_seconds(probe_only, jobs=preset.jobs)["total"] <= 3 * 3600
    assert preset.jobs == 2

    runner = FakeRunner(CPU_TEST)
    argv = ["--preset", "cpu", "--output", str(tmp_path), "--methods", "scratch", "clap",
            "--seeds", "0"]
    compare_methods.main(argv, runner=runner, progress=False)
    generator = runner.commands[0]
    assert generator[1].endswith("make_synthetic_nuscenes.py")
    assert option(generator, "--out") == os.path.join(str(tmp_path), "data")
    assert option(generator, "--scenes") == "50"
    trainings = runner.commands[1:]
    assert all(option(c, "DATASETS.ROOT") == os.path.join(str(tmp_path), "data")
               for c in trainings)
    assert all(option(c, "DATASETS.TRAIN") == "['nuscenes_v1.0-trainval_train']"
               for c in trainings)
    # two stages at once on 2 cores: one torch thread each
    assert all(option(c, "CPU.NUM_THREADS") == "1" for c in trainings)
    detectors = [c for c in trainings if "DATASETS.TRAIN_FRACTION" in c]
    assert sorted({option(c, "DATASETS.TRAIN_FRACTION") for c in detectors}) == ["0.1", "1.0"]
    assert {option(c, "DATASETS.TEST") for c in detectors} == {f"['{CPU_TEST}']"}

    again = FakeRunner(CPU_TEST)
    compare_methods.main(argv, runner=again, progress=False)
    assert again.commands == []  # the world and every cell exist


def test_cpu_preset_fine_tunes_the_other_rows_only_when_named(tmp_path):
    argv = ["--preset", "cpu", "--output", str(tmp_path), "--methods", "scratch", "simipu",
            "--protocols", "finetune", "--fractions", "1.0", "--seeds", "0"]
    default = compare_methods.main(argv, runner=FakeRunner(CPU_TEST), progress=False)
    assert [c["method"] for c in default["cells"]] == ["scratch"]

    named = compare_methods.main(argv + ["--finetune-methods", "scratch", "simipu"],
                                 runner=FakeRunner(CPU_TEST), progress=False)
    assert [c["method"] for c in named["cells"]] == ["scratch", "simipu"]
    assert named["gains"][0]["mean"] == pytest.approx(0.11 - 0.10)


def test_pretraining_per_seed_gives_each_seed_its_own_pretrained_encoders(tmp_path):
    runner = FakeRunner()
    report = run(tmp_path, runner, extra=("--pretrain-per-seed",),
                 protocols=("finetune", "probe"))
    trainings = {os.path.relpath(option(c, "OUTPUT_DIR"), str(tmp_path)): c
                 for c in runner.commands if "OUTPUT_DIR" in c}
    merges = {os.path.relpath(option(c, "--output"), str(tmp_path)): c
              for c in runner.commands if "--lidar" in c}

    # seed 0's pre-training is the shared one: a per-seed table extends a shared one
    assert sorted((path, option(c, "SEED")) for path, c in trainings.items()
                  if path.startswith("pretrain")) == [
        (path, s) for m in ("camera_only", "clap", "lidar_only")
        for path, s in ((f"pretrain/{m}", "0"), (f"pretrain/{m}/seed_1", "1"))]
    merge = merges["pretrain/unipad_merge/seed_1/merged.pth"]
    assert os.path.relpath(option(merge, "--lidar"), str(tmp_path)) == \
        "pretrain/lidar_only/seed_1/model_final.pth"
    # scratch has nothing to pre-train: its cells stay where a shared pre-training puts them
    assert option(trainings["finetune/scratch/fraction_1/seed_1"],
                  "MODEL.PRETRAINED_ENCODERS") == ""
    clap = trainings["finetune/clap/pretrained_per_seed/fraction_1/seed_1"]
    assert os.path.relpath(option(clap, "MODEL.PRETRAINED_ENCODERS"), str(tmp_path)) == \
        "pretrain/clap/seed_1/model_final.pth"
    probe = trainings["probe/clap/pretrained_per_seed/fraction_1/seed_1"]
    assert os.path.relpath(option(probe, "PROBE.CACHE_DIR"), str(tmp_path)) == \
        "probe_cache/clap/seed_1"
    assert {(c["method"], c["seed"]): c["pretrain_seed"] for c in report["cells"]
            if c["protocol"] == "finetune"} == {
        ("scratch", 0): None, ("scratch", 1): None, ("unipad_merge", 0): None,
        ("unipad_merge", 1): 1, ("clap", 0): None, ("clap", 1): 1}
    assert "finetune/clap/fraction_1/seed_0" in trainings
    assert "pre-trainings: one per seed" in (tmp_path / "comparison.md").read_text()
    cpu = comparison.get_preset("cpu")
    once = comparison.estimate_seconds(cpu)
    per_seed = comparison.estimate_seconds(dataclasses.replace(cpu, pretrain_per_seed=True))
    assert per_seed["pretrain"] == pytest.approx(3 * once["pretrain"])
    assert per_seed["probe_cache"] == pytest.approx(3 * once["probe_cache"])
    assert per_seed["finetune"] == once["finetune"]

    # the table of a shared pre-training reuses the scratch cells and seed 0's and runs the
    # others anew
    shared = FakeRunner()
    run(tmp_path, shared)
    trained = [os.path.relpath(option(c, "OUTPUT_DIR"), str(tmp_path))
               for c in shared.commands if "OUTPUT_DIR" in c]
    assert "finetune/clap/fraction_1/seed_1" in trained
    assert "finetune/clap/fraction_1/seed_0" not in trained
    assert not any(path.startswith("finetune/scratch") for path in trained)


def test_progress_line_counts_cells_with_an_eta(tmp_path, capsys):
    compare_methods.main(["--preset", "small", "--output", str(tmp_path), "--seeds", "0", "1",
                          "--methods", "scratch", "--protocols", "finetune"],
                         runner=FakeRunner(), progress=True)
    err = capsys.readouterr().err
    assert "cells: 100%" in err and "2/2" in err and "<" in err  # elapsed<remaining


def test_every_pretraining_sees_the_detectors_sweeps():
    """Equal inputs: each pre-training with a LiDAR encoder merges as many earlier sweeps as the
    detector. The camera-only run is the exception by design: its points only choose pixels
    and give depths (projects/single_modal/README.md)."""
    from clap.config import get_cfg

    preset = comparison.get_preset("small")  # the cpu preset's pre-trainings too
    detector = get_cfg()
    detector.merge_from_file(os.path.join(comparison.ROOT, preset.detection_config))
    for method, (_, config_file, extra) in preset.pretrain_configs.items():
        if method == "camera_only":
            continue
        cfg = get_cfg()
        cfg.set_new_allowed(True)
        cfg.merge_from_file(os.path.join(comparison.ROOT, config_file))
        cfg.merge_from_list(list(extra))
        assert cfg.INPUT.NUM_SWEEPS == detector.INPUT.NUM_SWEEPS, method


def test_small_preset_curvature_pretrainings_sample_by_curvature():
    # The default synthetic train split has 80 samples; a pre-training that ends inside the
    # uniform warm-up would make clap_curvature a copy of clap_uniform.
    from clap.config import get_cfg

    preset = comparison.get_preset("small")
    for method in ("clap_curvature", "clap"):
        _, config_file, extra = preset.pretrain_configs[method]
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(comparison.ROOT, config_file))
        cfg.merge_from_list(list(extra))
        assert cfg.MODEL.RAY_SAMPLER.NAME == "Curvature"
        warmup_iters = cfg.MODEL.RAY_SAMPLER.WARMUP_EPOCHS * 80 / cfg.SOLVER.IMS_PER_BATCH
        assert warmup_iters < preset.pretrain_iters


# ---------------------------------------------------------------------------------- statistics
def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5.0 / 3.0)))
    assert mean_std([0.3]) == (0.3, 0.0)
    with pytest.raises(ValueError):
        mean_std([])


def test_paired_difference_uses_the_t_interval_of_the_per_seed_differences():
    # differences 1, 2, 3 (baseline varies a lot, pairs move together)
    treatment = {0: 11.0, 1: 52.0, 2: 33.0}
    baseline = {0: 10.0, 1: 50.0, 2: 30.0, 7: 99.0}  # seed 7 has no pair
    result = paired_difference(treatment, baseline)
    assert result.num_pairs == 3
    assert result.mean == pytest.approx(2.0)
    # t_{0.975, 2} = 4.302653, standard error 1 / sqrt(3)
    half = 4.302653 / math.sqrt(3.0)
    assert (result.low, result.high) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-6)
    # t = 2 / (1 / sqrt(3)) = 3.464 on 2 degrees of freedom: p = 0.0742, the interval holds 0
    assert result.p_value == pytest.approx(0.074180, rel=1e-4)
    assert not result.significant


def test_signal_check_needs_a_strong_scratch_row_and_rows_apart():
    def entry(method, mean, std, fraction=1.0):
        return {"method": method, "fraction": fraction, "mAP_mean": mean, "mAP_std": std}

    good = comparison.signal_check([entry("scratch", 0.30, 0.01), entry("clap", 0.36, 0.015),
                                         entry("scratch", 0.01, 0.05, fraction=0.1)])
    assert good["fraction"] == 1.0 and good["scratch_ok"] and good["spread_ok"]
    assert good["spread"] == pytest.approx(0.06)
    noisy = comparison.signal_check([entry("scratch", 0.30, 0.03), entry("clap", 0.36, 0.01)])
    assert noisy["scratch_ok"] and not noisy["spread_ok"]  # 0.03 > 0.06 / 3
    weak = comparison.signal_check([entry("scratch", 0.20, 0.0), entry("clap", 0.40, 0.0)])
    assert not weak["scratch_ok"] and weak["spread_ok"]
    assert comparison.format_signal(good).endswith(": met.")
    assert comparison.format_signal(weak).endswith(": NOT met.")


def test_significance_follows_the_interval():
    strong = paired_difference({0: 1.1, 1: 1.2, 2: 1.15}, {0: 1.0, 1: 1.1, 2: 1.06})
    assert strong.low > 0 and strong.significant and strong.p_value < 0.05
    noisy = paired_difference({0: 1.3, 1: 0.9, 2: 1.1}, {0: 1.0, 1: 1.1, 2: 1.0})
    assert noisy.low < 0 < noisy.high and not noisy.significant and noisy.p_value > 0.05
    worse = paired_difference({0: 0.5, 1: 0.6, 2: 0.55}, {0: 1.0, 1: 1.1, 2: 1.0})
    assert worse.high < 0 and worse.significant
    single = paired_difference({0: 2.0}, {0: 1.0})
    assert single.mean == 1.0 and math.isnan(single.low) and not single.significant
    constant = paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
    assert (constant.low, constant.high, constant.significant) == (1.0, 1.0, True)
    with pytest.raises(ValueError, match="No common seed"):
        paired_difference({0: 1.0}, {1: 1.0})
    with pytest.raises(ValueError, match="confidence"):
        paired_difference({0: 1.0}, {0: 1.0}, confidence=1.5)


def test_clap_variants_are_rows_only_when_named_and_pretrain_their_ablation_config(tmp_path):
    assert not set(comparison.CLAP_VARIANTS) & set(comparison.METHODS)
    runner = FakeRunner()
    report = run(tmp_path, runner, methods=("scratch", "clap_nk128", "clap_temperature1"),
                 protocols=("probe",), seeds=("0",), extra=("--probe-iters", "4"))
    pretrainings = [c for c in runner.commands
                    if "DATASETS.TRAIN_FRACTION" not in c and "OUTPUT_DIR" in c]
    assert [os.path.relpath(option(c, "--config-file"), comparison.ROOT)
            for c in pretrainings] == ["configs/synthetic/ablations/clap_nk128.yaml",
                                       "configs/synthetic/ablations/clap_temperature1.yaml"]
    # full CLAP's curvature sampling from the first iteration, as the `clap` row
    assert all(option(c, "MODEL.RAY_SAMPLER.WARMUP_EPOCHS") == "0" for c in pretrainings)
    assert [e["method"] for e in report["summary"]] == ["scratch", "clap_nk128",
                                                        "clap_temperature1"]
    assert "CLAP, N_K = 128 prototypes" in (tmp_path / "comparison.md").read_text()


def test_report_pairs_the_rows_the_claims_compare(tmp_path):
    report = run(tmp_path, FakeRunner())  # scratch, unipad_merge, clap; seeds 0 and 1

    contrasts = {(c["method"], c["baseline"], c["metric"]): c for c in report["contrasts"]}
    assert set(contrasts) == {("clap", "unipad_merge", "mAP"), ("clap", "unipad_merge", "NDS")}
    # per seed: 0.20 - 0.15 and 0.30 - 0.15
    assert contrasts[("clap", "unipad_merge", "mAP")]["mean"] == pytest.approx(0.10)
    assert contrasts[("clap", "unipad_merge", "mAP")]["num_pairs"] == 2
    assert "| `clap` - `unipad_merge` | +10.00 [" in (tmp_path / "comparison.md").read_text()


def test_report_pairs_each_clap_variant_and_the_joint_rows_with_their_reference_rows():
    mAP = {"scratch": (0.30, 0.31), "lidar_only": (0.35, 0.36), "clap": (0.34, 0.37),
           "clap_nk128": (0.38, 0.40)}
    cells = [{"method": method, "protocol": "finetune", "fraction": 0.1, "seed": seed,
              "mAP": score, "NDS": score} for method, scores in mAP.items()
             for seed, score in enumerate(scores)]
    report = comparison.summarize(cells, list(mAP), ["finetune"], [0.1])

    contrasts = {(c["method"], c["baseline"]): c for c in report["contrasts"]
                 if c["metric"] == "mAP"}
    assert set(contrasts) == {("clap", "lidar_only"), ("clap_nk128", "clap")}
    # per seed: 0.38 - 0.34 and 0.40 - 0.37
    assert contrasts[("clap_nk128", "clap")]["mean"] == pytest.approx(0.035)
    assert contrasts[("clap", "lidar_only")]["mean"] == pytest.approx(0.0)


def test_report_only_tabulates_the_finished_cells_of_several_runs_and_runs_nothing(tmp_path):
    run(tmp_path, FakeRunner(), methods=("scratch", "clap"), seeds=("0", "1"))
    run(tmp_path, FakeRunner(), methods=("scratch", "clap"), seeds=("0",), protocols=("probe",))
    idle = FakeRunner()
    report = run(tmp_path, idle, methods=("scratch", "clap"), seeds=("0", "1", "2"),
                 protocols=("finetune", "probe"), extra=("--report-only",))

    assert idle.commands == []
    assert sorted((c["protocol"], c["method"], c["seed"]) for c in report["cells"]) == [
        ("finetune", "clap", 0), ("finetune", "clap", 1),
        ("finetune", "scratch", 0), ("finetune", "scratch", 1),
        ("probe", "clap", 0), ("probe", "scratch", 0)]
    gain = next(g for g in report["gains"] if g["protocol"] == "finetune" and g["metric"] == "mAP")
    assert gain["num_pairs"] == 2
    assert gain["mean"] == pytest.approx(((0.20 - 0.10) + (0.30 - 0.14)) / 2)
    with open(tmp_path / "comparison.json") as f:
        assert len(json.load(f)["cells"]) == 6
    assert "Gain over scratch" in (tmp_path / "comparison.md").read_text()


def test_report_only_adds_the_cells_recorded_in_an_earlier_report_and_checks_reproduced_ones(
        tmp_path, caplog):
    earlier, later = tmp_path / "earlier", tmp_path / "later"
    run(earlier, FakeRunner(), methods=("scratch", "clap"), seeds=("0", "1"))
    with open(earlier / "comparison.json") as f:
        recorded = json.load(f)
    next(c for c in recorded["cells"] if (c["method"], c["seed"]) == ("clap", 1))["mAP"] = 0.5
    with open(earlier / "comparison.json", "w") as f:
        json.dump(recorded, f)
    run(later, FakeRunner(), methods=("clap",), seeds=("1", "2"))  # clap seed 1 trained again

    with caplog.at_level("INFO"):
        report = run(later, FakeRunner(), methods=("scratch", "clap"), seeds=("0", "1", "2"),
                     extra=("--report-only", "--recorded-cells",
                            str(earlier / "comparison.json")))

    cells = {(c["method"], c["seed"]): c["mAP"] for c in report["cells"]}
    assert cells == {("scratch", 0): 0.10, ("scratch", 1): 0.14, ("clap", 0): 0.20,
                     ("clap", 1): 0.30, ("clap", 2): 0.22}  # seed 1 from its result.json
    assert "clap finetune, 100% labels, seed 1 differs from its recorded scores (mAP 0.3000 " \
           "vs 0.5000" in caplog.text
    gain = next(g for g in report["gains"] if g["metric"] == "mAP")
    assert gain["num_pairs"] == 2  # scratch has seeds 0 and 1
    rerun = next(c for c in report["cells"] if (c["method"], c["seed"]) == ("clap", 1))
    assert rerun["recorded"] == {"mAP": 0.5, "NDS": pytest.approx(0.4)}
    (difference,) = [r for r in report["reruns"] if r["metric"] == "mAP"]
    assert (difference["method"], difference["num_pairs"]) == ("clap", 1)
    assert difference["mean"] == pytest.approx(0.30 - 0.5)
    assert "| CLAP (curvature + prototypes) | 100% | 1 | -20.00 | +0.00 |" in \
        (later / "comparison.md").read_text()


def test_recorded_cells_of_another_iteration_count_are_refused(tmp_path):
    run(tmp_path / "earlier", FakeRunner(), methods=("scratch",), seeds=("0",),
        extra=("--finetune-iters", "50"))
    with pytest.raises(ValueError, match="earlier/comparison.json .scratch finetune.*50 "
                                         "iterations"):
        run(tmp_path / "later", FakeRunner(), methods=("scratch",), seeds=("0",),
            extra=("--report-only", "--recorded-cells",
                   str(tmp_path / "earlier" / "comparison.json")))
    with pytest.raises(SystemExit):  # only with --report-only
        compare_methods.parse_args(["--output", "x", "--recorded-cells", "a.json"])


def test_label_trend_is_the_paired_change_of_the_gain_from_the_largest_to_the_smallest_fraction():
    def cell(method, fraction, seed, value):
        return {"method": method, "protocol": "finetune", "fraction": fraction, "seed": seed,
                "mAP": value, "NDS": value + 0.1}

    cells = [cell("scratch", 1.0, s, v) for s, v in enumerate((0.30, 0.34, 0.32))]
    cells += [cell("clap", 1.0, s, v) for s, v in enumerate((0.31, 0.34, 0.33))]
    cells += [cell("scratch", 0.1, s, v) for s, v in enumerate((0.10, 0.12, 0.11))]
    cells += [cell("clap", 0.1, s, v) for s, v in enumerate((0.14, 0.15, 0.17))]
    report = comparison.summarize(cells, ["scratch", "clap"], ["finetune"], [1.0, 0.1])

    trend = next(t for t in report["label_trends"] if t["metric"] == "mAP")
    # gains per seed: 0.01, 0.00, 0.01 at 100%; 0.04, 0.03, 0.06 at 10%
    expected = paired_difference({0: 0.04, 1: 0.03, 2: 0.06}, {0: 0.01, 1: 0.0, 2: 0.01})
    assert (trend["small_fraction"], trend["large_fraction"]) == (0.1, 1.0)
    assert trend["mean"] == pytest.approx(expected.mean) == pytest.approx(0.11 / 3)
    assert (trend["low"], trend["high"]) == (pytest.approx(expected.low),
                                             pytest.approx(expected.high))
    assert trend["significant"] == expected.significant
    report["finetune_iters"] = 800
    table = comparison.format_report(report)
    assert "| Gain at 10% - gain at 100% | mAP | NDS |" in table
    assert f"| CLAP (curvature + prototypes) | {100 * expected.mean:+.2f} [" in table

    one_fraction = comparison.summarize(cells[:6], ["scratch", "clap"], ["finetune"], [1.0])
    assert one_fraction["label_trends"] == []
    assert "Gain at" not in comparison.format_report({**one_fraction, "finetune_iters": 800})


class EvaluatingRunner(FakeRunner):
    """Also writes the metrics.json of a training that evaluated halfway (mAP 0.05 lower than
    at the end) and was resumed once after that evaluation (its record written twice)."""

    def __call__(self, command, log_path):
        super().__call__(command, log_path)
        if "OUTPUT_DIR" not in command:  # the data generator or the merge tool
            return
        output = option(command, "OUTPUT_DIR")
        summary = os.path.join(output, "inference", self.test_dataset, "metrics_summary.json")
        if not os.path.isfile(summary):  # a pre-training
            return
        with open(summary) as f:
            final = json.load(f)["mean_ap"]
        max_iter = int(option(command, "SOLVER.MAX_ITER"))
        key = f"{self.test_dataset}/"
        records = [{"iteration": 0, "total_loss": 1.0}]
        records += [{"iteration": max_iter // 2 - 1, key + "mAP": final - s, key + "NDS": 0.0}
                    for s in (0.9, 0.05)]  # the resumed run's record wins
        records += [{"iteration": max_iter, key + "mAP": final, key + "NDS": final + 0.1}]
        with open(os.path.join(output, "metrics.json"), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)


def test_report_shows_every_evaluation_during_training_with_its_gain(tmp_path):
    report = run(tmp_path, EvaluatingRunner(), methods=("scratch", "clap"))
    half = comparison.get_preset("small").finetune_iters // 2

    cell = next(c for c in report["cells"] if c["method"] == "clap" and c["seed"] == 1)
    assert cell["evaluations"] == [
        {"iterations": half, "mAP": pytest.approx(0.25), "NDS": 0.0},
        {"iterations": 2 * half, "mAP": pytest.approx(0.30), "NDS": pytest.approx(0.40)}]
    curve = report["evaluation_curve"]
    clap_half = next(e for e in curve["summary"]
                     if e["method"] == "clap" and e["iterations"] == half)
    assert clap_half["mAP_mean"] == pytest.approx(0.20)  # (0.15 + 0.25) / 2
    gain = next(g for g in curve["gains"] if g["iterations"] == half and g["metric"] == "mAP")
    assert gain["mean"] == pytest.approx(((0.15 - 0.05) + (0.25 - 0.09)) / 2)
    table = (tmp_path / "comparison.md").read_text()
    assert f"| mAP during training | 100%, {half} its | 100%, {2 * half} its |" in table
    assert "| CLAP (curvature + prototypes) | 20.00 +- 7.07; +13.00 [" in table

    plain = run(tmp_path / "plain", FakeRunner(), methods=("scratch", "clap"))
    assert plain["cells"][0]["evaluations"] == []
    assert "mAP during training" not in (tmp_path / "plain" / "comparison.md").read_text()
