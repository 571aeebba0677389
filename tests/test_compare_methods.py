"""tools/compare_methods.py bookkeeping with a fake stage runner (no training)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import compare_methods  # noqa: E402

TEST = "nuscenes_v1.0-mini_mini_val"
# mAP / NDS the fake fine-tuning of (method, seed) reports
FAKE_MAP = {("scratch", 0): 0.10, ("scratch", 1): 0.14, ("clap", 0): 0.20, ("clap", 1): 0.30,
            ("unipad_merge", 0): 0.15, ("unipad_merge", 1): 0.15}


class FakeRunner:
    """Records every stage and writes the files a real one would."""

    def __init__(self):
        self.commands = []

    def __call__(self, command, log_path):
        self.commands.append(list(command))
        if "--output" in command:  # the merge tool
            path = command[command.index("--output") + 1]
            with open(path, "w") as f:
                f.write("merged")
            return
        output = command[command.index("OUTPUT_DIR") + 1]
        os.makedirs(output, exist_ok=True)
        if "MODEL.PRETRAINED_ENCODERS" not in command:  # a pre-training
            with open(os.path.join(output, "model_final.pth"), "w") as f:
                f.write("weights")
            return
        method = output.split(os.sep)[-3]
        seed = int(command[command.index("SEED") + 1])
        summary_dir = os.path.join(output, "inference", TEST)
        os.makedirs(summary_dir)
        value = FAKE_MAP[(method, seed)]
        with open(os.path.join(summary_dir, "metrics_summary.json"), "w") as f:
            json.dump({"mean_ap": value, "nd_score": value + 0.1, "tp_errors": {},
                       "mean_dist_aps": {}}, f)


def run(tmp_path, runner, methods=("scratch", "unipad_merge", "clap"), extra=()):
    argv = ["--preset", "small", "--output", str(tmp_path), "--seeds", "0", "1",
            "--methods", *methods, *extra]
    return compare_methods.main(argv, runner=runner)


def option(command, key):
    return command[command.index(key) + 1]


def test_schedules_pretrainings_merges_and_equal_finetunings(tmp_path):
    runner = FakeRunner()
    run(tmp_path, runner)

    scripts = [os.path.relpath(c[1], compare_methods.ROOT) for c in runner.commands]
    assert scripts == [
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
    assert option(merge, "--lidar").endswith(os.path.join("lidar_only", "model_final.pth"))
    assert option(merge, "--camera").endswith(os.path.join("camera_only", "model_final.pth"))
    assert option(finetunes[2], "MODEL.PRETRAINED_ENCODERS") == option(merge, "--output")
    clap_pretrain = runner.commands[7]
    assert option(clap_pretrain, "--config-file").endswith("configs/synthetic/clap_cpu.yaml")
    assert option(clap_pretrain, "SOLVER.MAX_ITER") == "30"
    assert option(finetunes[-1], "MODEL.PRETRAINED_ENCODERS") == os.path.join(
        str(tmp_path), "pretrain", "clap", "model_final.pth")
    assert len({option(c, "OUTPUT_DIR") for c in runner.commands if "OUTPUT_DIR" in c}) == 9


def test_writes_mean_and_std_and_skips_finished_cells(tmp_path):
    run(tmp_path, FakeRunner())

    with open(tmp_path / "comparison.json") as f:
        report = json.load(f)
    clap = next(e for e in report["summary"] if e["method"] == "clap")
    assert clap["num_seeds"] == 2
    assert clap["mAP_mean"] == pytest.approx(0.25)
    assert clap["mAP_std"] == pytest.approx(0.0707107, rel=1e-5)  # sample std of 0.2, 0.3
    assert clap["NDS_mean"] == pytest.approx(0.35)
    table = (tmp_path / "comparison.md").read_text()
    assert "| CLAP (curvature + prototypes) | 25.00 +- 7.07 | 35.00 +- 7.07 |" in table
    assert "| From scratch | 12.00 +- 2.83 | 22.00 +- 2.83 |" in table

    second = FakeRunner()
    run(tmp_path, second)
    assert second.commands == []  # every cell finished: nothing runs again

    third = FakeRunner()  # a new seed: only its fine-tunings run, pre-trainings are reused
    FAKE_MAP.update({("scratch", 2): 0.1, ("clap", 2): 0.2, ("unipad_merge", 2): 0.1})
    compare_methods.main(["--preset", "small", "--output", str(tmp_path), "--seeds", "2",
                          "--methods", "scratch", "unipad_merge", "clap"], runner=third)
    assert [option(c, "SEED") for c in third.commands] == ["2", "2", "2"]


def test_single_seed_table_shows_the_mean_without_a_spread(tmp_path):
    compare_methods.main(["--preset", "small", "--output", str(tmp_path), "--seeds", "0",
                          "--methods", "scratch", "clap"], runner=FakeRunner())
    table = (tmp_path / "comparison.md").read_text()
    assert "| From scratch | 10.00 | 20.00 |" in table
    assert "| CLAP (curvature + prototypes) | 20.00 | 30.00 |" in table
    assert "+-" not in table


def test_refuses_finished_cells_of_another_iteration_count(tmp_path):
    run(tmp_path, FakeRunner(), methods=("scratch",))
    with pytest.raises(ValueError, match="same iterations"):
        run(tmp_path, FakeRunner(), methods=("scratch",), extra=("--finetune-iters", "7"))


def test_small_preset_curvature_pretrainings_sample_by_curvature():
    # The default synthetic train split has 80 samples; a pre-training that ends inside the
    # uniform warm-up would make clap_curvature a copy of clap_uniform.
    from clap.config import get_cfg

    preset = compare_methods.get_preset("small")
    for method in ("clap_curvature", "clap"):
        _, config_file, extra = preset.pretrain_configs[method]
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(compare_methods.ROOT, config_file))
        cfg.merge_from_list(list(extra))
        assert cfg.MODEL.RAY_SAMPLER.NAME == "Curvature"
        warmup_iters = cfg.MODEL.RAY_SAMPLER.WARMUP_EPOCHS * 80 / cfg.SOLVER.IMS_PER_BATCH
        assert warmup_iters < preset.pretrain_iters
