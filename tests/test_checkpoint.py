"""Checkpoints: atomic saves, weights_only loading, sub-module export, retention, exact resume
of a killed run."""

import logging
import os
import signal
import subprocess
import time

import pytest
import torch

from clap.checkpoint import ClapCheckpointer, export_submodules
from clap.config import get_cfg
from clap.engine import default_argument_parser
from clap.engine.hooks import PeriodicCheckpointer
from clap.engine.train_loop import HookBase, TrainerBase
from tests.tiny_model import (
    TEST_NAME,
    TinyRegressionModel,
    TinyTrainer,
    hook_states_without_wall_clock,
    load_train_net_module,
    make_tiny_dicts,
    tiny_train_command,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests", "configs", "tiny.yaml")


class _ArbitraryObject:
    """Any class: only full unpickling can rebuild it."""


class _Holder:
    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return self.state

    def load_state_dict(self, state):
        self.state = state


def test_failed_save_leaves_previous_checkpoint_and_last_checkpoint_intact(tmp_path, monkeypatch):
    model = TinyRegressionModel(None)
    checkpointer = ClapCheckpointer(model, str(tmp_path), save_to_disk=True)
    checkpointer.save("model_0000009", iteration=9)
    good_bytes = (tmp_path / "model_0000009.pth").read_bytes()

    def torch_save_that_dies(obj, f, *args, **kwargs):
        f.write(b"partial checkpoint bytes")
        raise OSError("disk full")

    with torch.no_grad():
        model.out.weight.add_(1.0)
    monkeypatch.setattr(torch, "save", torch_save_that_dies)
    # overwriting the same file and writing a new one both fail cleanly
    for name in ("model_0000009", "model_0000019"):
        with pytest.raises(OSError, match="disk full"):
            checkpointer.save(name, iteration=19)
    monkeypatch.undo()

    assert (tmp_path / "model_0000009.pth").read_bytes() == good_bytes
    assert not (tmp_path / "model_0000019.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]  # no temp
    restored = TinyRegressionModel(None)
    extra = ClapCheckpointer(restored, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 9
    assert not torch.equal(restored.out.weight, model.out.weight)


def test_failed_last_checkpoint_update_keeps_the_old_pointer(tmp_path, monkeypatch):
    checkpointer = ClapCheckpointer(TinyRegressionModel(None), str(tmp_path), save_to_disk=True)
    checkpointer.save("model_0000004")

    def failing_replace(src, dst):
        raise OSError("interrupted rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="interrupted rename"):
        checkpointer.tag_last_checkpoint("model_0000009.pth")
    monkeypatch.undo()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000004.pth"]


def test_unsafe_state_is_refused_at_save_and_unsafe_files_at_load(tmp_path):
    model = TinyRegressionModel(None)
    checkpointer = ClapCheckpointer(
        model,
        str(tmp_path),
        save_to_disk=True,
        trainer=_Holder({"hooks": {"X": {"obj": object()}}}),
    )
    with pytest.raises(TypeError, match=r"checkpoint\.trainer\.hooks\.X\.obj"):
        checkpointer.save("model_final")
    assert not (tmp_path / "model_final.pth").exists()

    unsafe_file = tmp_path / "foreign.pth"
    torch.save({"model": model.state_dict(), "extra": _ArbitraryObject()}, unsafe_file)
    with pytest.raises(RuntimeError, match="weights_only"):
        ClapCheckpointer(TinyRegressionModel(None)).load(str(unsafe_file))
    trusted = TinyRegressionModel(None)
    ClapCheckpointer(trusted, weights_only=False).load(str(unsafe_file))
    assert torch.equal(trusted.out.weight, model.out.weight)

    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ClapCheckpointer(model).load(str(tmp_path / "missing.pth"))


def test_export_submodules_selects_prefixes_and_loads_as_weights(tmp_path):
    source = TinyRegressionModel(None)
    exported = export_submodules(source.state_dict(), ["hidden", "norm"])
    assert sorted(exported) == ["hidden.bias", "hidden.weight", "norm.bias", "norm.weight"]
    with pytest.raises(KeyError, match="lidar_backbone"):
        export_submodules(source.state_dict(), ["lidar_backbone"])
    # "out" must not match a longer name that merely starts with it
    assert export_submodules(
        {"out.w": torch.zeros(1), "outer.w": torch.ones(1)}, ["out"]
    ).keys() == {"out.w"}

    path = tmp_path / "encoders.pth"
    torch.save(exported, path)
    target = TinyRegressionModel(None)
    out_before = target.out.weight.clone()
    ClapCheckpointer(target).load(str(path))
    assert torch.equal(target.hidden.weight, source.hidden.weight)
    assert torch.equal(target.norm.bias, source.norm.bias)
    assert torch.equal(target.out.weight, out_before)  # not exported, left as it was


def test_periodic_checkpointer_keeps_the_newest_files_across_restarts(tmp_path):
    class Runner(TrainerBase):
        def run_step(self):
            pass

    def run(start, stop):
        trainer = Runner()
        checkpointer = ClapCheckpointer(TinyRegressionModel(None), str(tmp_path), save_to_disk=True)
        trainer.register_hooks([PeriodicCheckpointer(checkpointer, period=2, max_to_keep=2)])
        trainer.train(start, stop)

    run(0, 7)
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000003.pth",
        "model_0000005.pth",
        "model_final.pth",
    ]
    run(7, 10)
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000007.pth",
        "model_0000009.pth",
        "model_final.pth",
    ]
    checkpoint = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert checkpoint["iteration"] == 9 and len(checkpoint["rng_states"]) == 1


def test_hook_state_of_an_unregistered_hook_is_reported_not_lost():
    class Stateful(HookBase):
        def state_dict(self):
            return {"value": 1}

    class Runner(TrainerBase):
        def run_step(self):
            pass

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    saved = Runner()
    saved.register_hooks([Stateful()])
    state = saved.state_dict()
    collect = Collect()
    logger = logging.getLogger("clap.engine.train_loop")
    logger.addHandler(collect)
    try:
        Runner().load_state_dict(state)
    finally:
        logger.removeHandler(collect)
    assert any("Stateful" in message for message in collect.messages)


def _wait_for(path, process, console_file, timeout_s=240.0):
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            output = console_file.read_text(errors="replace")
            pytest.fail(f"training ended before writing a checkpoint:\n{output[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {path} after {timeout_s} s")
        time.sleep(0.01)


def _train_in_this_process(output_dir):
    """tools/train_net.py's main with TinyTrainer, one thread like tests/tiny_train_net.py."""
    args = default_argument_parser().parse_args(
        ["--config-file", CONFIG, "OUTPUT_DIR", str(output_dir)]
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        load_train_net_module().main(args, TinyTrainer)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_killed_run_resumed_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path):
    # Interrupted run: 2 data workers, slowed down, killed with SIGKILL once a checkpoint exists.
    interrupted = tmp_path / "interrupted"
    console_file = tmp_path / "interrupted_console.txt"
    with open(console_file, "w") as console:
        process = subprocess.Popen(
            tiny_train_command(interrupted, "DATALOADER.NUM_WORKERS", 2),
            cwd=ROOT,
            env=dict(os.environ, CLAP_TINY_STEP_SECONDS="0.1"),
            stdout=console,
            stderr=subprocess.STDOUT,
        )
    try:
        # The uninterrupted reference (no workers, not slowed down) runs meanwhile, here.
        reference = tmp_path / "reference"
        _train_in_this_process(reference)
        _wait_for(interrupted / "last_checkpoint", process, console_file)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (interrupted / "model_final.pth").exists(), "the run finished before the kill"

    # Resume it: the same command plus --resume.
    resumed = subprocess.run(
        tiny_train_command(interrupted, resume=True), cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    log = (interrupted / "log.txt").read_text()
    start_lines = [line for line in log.splitlines() if "Starting training from iteration" in line]
    assert len(start_lines) == 2 and not start_lines[1].endswith("iteration 0")

    expected = torch.load(reference / "model_final.pth", weights_only=True)
    actual = torch.load(interrupted / "model_final.pth", weights_only=True)
    assert expected["model"].keys() == actual["model"].keys()
    for key in expected["model"]:
        assert torch.equal(expected["model"][key], actual["model"][key]), key
    assert hook_states_without_wall_clock(actual["trainer"]["hooks"]) == (
        hook_states_without_wall_clock(expected["trainer"]["hooks"])
    )
    expected_adam = expected["trainer"]["optimizer"]["state"]
    actual_adam = actual["trainer"]["optimizer"]["state"]
    for index in expected_adam:
        for name, value in expected_adam[index].items():
            assert torch.equal(value, actual_adam[index][name]), (index, name)


def test_default_trainer_loads_model_weights_without_resuming(tmp_path):
    source = TinyRegressionModel(None)
    path = tmp_path / "pretrained.pth"
    torch.save({"model": source.state_dict()}, path)
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.MODEL.WEIGHTS = str(path)
    trainer = TinyTrainer(cfg)
    trainer.resume_or_load(resume=True)  # nothing to resume in OUTPUT_DIR: load MODEL.WEIGHTS
    assert trainer.start_iter == 0
    for key, value in source.state_dict().items():
        assert torch.equal(trainer.unwrapped_model.state_dict()[key], value)


def test_eval_only_loads_the_weights_and_evaluates(tmp_path):
    model = TinyRegressionModel(None)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.out.bias.fill_(2.0)  # predicts 2.0 for every sample
    weights = tmp_path / "constant.pth"
    torch.save({"model": model.state_dict()}, weights)
    args = default_argument_parser().parse_args(
        ["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", str(weights)]
        + ["OUTPUT_DIR", str(tmp_path / "eval"), "DATASETS.TEST", f"('{TEST_NAME}',)"]
    )
    results = load_train_net_module().main(args, TinyTrainer)
    targets = torch.tensor([d["y"] for d in make_tiny_dicts(10, seed=2)])
    expected_mse = float(((targets - 2.0) ** 2).mean())
    assert results[TEST_NAME]["num_samples"] == 10
    assert results[TEST_NAME]["mse"] == pytest.approx(expected_mse, rel=1e-5)
