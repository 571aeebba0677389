"""What an interrupted or damaged run leaves behind, and how the next run copes: temporaries of
killed checkpoint writes, a truncated checkpoint, a kill between an evaluation and the
checkpoint of its iteration, and the logs of a run stopped by an error and of a resumed run."""

import json
import logging
import os
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest

from clap.checkpoint import ClapCheckpointer
from clap.config import get_cfg
from clap.engine import HookBase
from clap.utils.env import seed_all_rng
from clap.utils.events import get_event_storage
from tests.tiny_model import TEST_NAME, TinyRegressionModel, TinyTrainer

CONFIG = os.path.join(os.path.dirname(__file__), "configs", "tiny.yaml")


def tiny_cfg(output_dir, max_iter, checkpoint_period, **overrides):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.CHECKPOINT_PERIOD = checkpoint_period
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    return cfg


def train(cfg, trainer_class=TinyTrainer, resume=False):
    seed_all_rng(cfg.SEED)  # as default_setup: runs of one config are equal
    trainer = trainer_class(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def dead_pid():
    """The id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@contextmanager
def collect_logs(name, level=logging.INFO):
    """The messages logged to logger `name` (and its children) inside the block."""
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append((record.levelno, record.getMessage()))

    logger, handler = logging.getLogger(name), Collect(level)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, old_level or level))
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class _Killed(Exception):
    """Stands for a SIGKILL at a chosen point (the run stops there)."""


# ------------------------------------------------------------------------------------------
# Temporaries of interrupted checkpoint writes
# ------------------------------------------------------------------------------------------


def test_temporaries_of_killed_checkpoint_writes_are_removed_at_start_and_on_rotation(tmp_path):
    stale_at_start = tmp_path / f".model_0000009.pth.tmp.{dead_pid()}"
    stale_at_start.write_bytes(b"\0" * 1000)
    own_leftover = tmp_path / f".last_checkpoint.tmp.{os.getpid()}"
    own_leftover.write_text("model_0000009.pth")
    running_writer = tmp_path / f".model_0000011.pth.tmp.{os.getppid()}"  # may be writing now
    running_writer.write_bytes(b"\0")
    stale_later = tmp_path / f".model_0000001.pth.tmp.{dead_pid()}"
    seen_at_first_step = []

    class LeaveStaleTemporary(HookBase):
        def after_step(self):
            if self.trainer.iter == 0:
                seen_at_first_step.extend(sorted(p.name for p in tmp_path.glob(".*.tmp.*")))
                stale_later.write_bytes(b"\0" * 1000)  # as if killed while saving

    class Trainer(TinyTrainer):
        def build_model_hooks(self):
            return super().build_model_hooks() + [LeaveStaleTemporary()]

    train(tiny_cfg(tmp_path, 6, 2, **{"SOLVER.MAX_TO_KEEP": 1}), Trainer)
    assert seen_at_first_step == [running_writer.name]  # removed when training started
    assert not stale_later.exists()  # removed at the next rotation (iteration 1)
    assert running_writer.exists()
    assert sorted(p.name for p in tmp_path.glob("model_*")) == [
        "model_0000005.pth", "model_final.pth"
    ]


# ------------------------------------------------------------------------------------------
# A truncated checkpoint
# ------------------------------------------------------------------------------------------


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_truncated_last_checkpoint_is_named_and_resume_falls_back_to_the_newest_good_one(
    tmp_path,
):
    cfg = tiny_cfg(tmp_path, 6, 2)
    train(cfg)
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    _truncate(tmp_path / "model_final.pth")

    # (UnreadableCheckpointError, a RuntimeError)
    with pytest.raises(RuntimeError, match=r"model_final\.pth \(\d+ bytes\).*trunc"):
        ClapCheckpointer(TinyRegressionModel(None)).load(str(tmp_path / "model_final.pth"))

    resumed = TinyTrainer(cfg)
    with collect_logs("clap.checkpoint", logging.WARNING) as messages:
        resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 6  # from model_0000005.pth
    warning = " ".join(message for _, message in messages)
    assert "model_final.pth" in warning and "Resuming from" in warning
    assert "model_0000005.pth" in warning

    for name in ("model_0000001.pth", "model_0000003.pth", "model_0000005.pth"):
        _truncate(tmp_path / name)
    with pytest.raises(RuntimeError, match=r"model_final\.pth.*No other checkpoint"):
        TinyTrainer(cfg).resume_or_load(resume=True)


# ------------------------------------------------------------------------------------------
# A kill between an evaluation and the checkpoint of its iteration
# ------------------------------------------------------------------------------------------


def test_a_run_killed_after_a_checkpoint_still_performs_every_evaluation(tmp_path, monkeypatch):
    evaluated = []

    class RecordingTrainer(TinyTrainer):
        @classmethod
        def test(cls, cfg, model, evaluators=None):
            evaluated.append(get_event_storage().iter)
            return super().test(cfg, model, evaluators)

    overrides = {"DATASETS.TEST": f"('{TEST_NAME}',)", "TEST.EVAL_PERIOD": 2}
    train(tiny_cfg(tmp_path / "uninterrupted", 6, 2, **overrides), RecordingTrainer)
    assert evaluated == [1, 3, 6]

    save = ClapCheckpointer.save

    def save_then_die(self, name, **kwargs):
        save(self, name, **kwargs)
        if name == "model_0000003":
            raise _Killed()

    evaluated.clear()
    cfg = tiny_cfg(tmp_path / "killed", 6, 2, **overrides)
    monkeypatch.setattr(ClapCheckpointer, "save", save_then_die)
    with pytest.raises(_Killed):
        train(cfg, RecordingTrainer)
    monkeypatch.setattr(ClapCheckpointer, "save", save)
    train(cfg, RecordingTrainer, resume=True)
    assert sorted(set(evaluated)) == [1, 3, 6]


# ------------------------------------------------------------------------------------------
# Logs of a run stopped by an error, and of a resumed run
# ------------------------------------------------------------------------------------------


def test_after_an_error_only_completed_iterations_are_written(tmp_path):
    class FailAtIteration3(HookBase):
        def after_step(self):
            if self.trainer.iter == 3:
                raise _Killed()

    class Trainer(TinyTrainer):
        def build_model_hooks(self):  # before the writer: iteration 3 has put its losses
            return super().build_model_hooks() + [FailAtIteration3()]

    trainer = Trainer(tiny_cfg(tmp_path, 10, 100, **{"SOLVER.LOG_PERIOD": 5}))
    trainer.resume_or_load(resume=False)
    with collect_logs("clap.utils.events") as messages, pytest.raises(_Killed):
        trainer.train()
    losses = [v for v, it in trainer.storage.history("loss_mse").values() if it <= 2]
    assert [r["iteration"] for r in read_metrics(tmp_path)] == [2]
    assert read_metrics(tmp_path)[0]["loss_mse"] == pytest.approx(np.median(losses))
    console = [message for _, message in messages]
    assert len(console) == 1 and "iter: 2 " in console[0]
    assert f"loss_mse: {np.median(losses):.4g}" in console[0]


def test_smoothed_values_continue_their_window_after_a_resume(tmp_path):
    overrides = {"SOLVER.LOG_PERIOD": 1}
    train(tiny_cfg(tmp_path / "uninterrupted", 8, 2, **overrides))
    expected = {r["iteration"]: r for r in read_metrics(tmp_path / "uninterrupted")}

    cfg = tiny_cfg(tmp_path / "resumed", 8, 2, **overrides)
    train(cfg)
    (tmp_path / "resumed" / "last_checkpoint").write_text("model_0000003.pth")
    train(cfg, resume=True)
    records = read_metrics(tmp_path / "resumed")
    after_resume = records[len(expected):]
    assert [r["iteration"] for r in after_resume] == [4, 5, 6, 7]
    for record in after_resume:
        for key in ("loss_mse", "loss_l1", "total_loss"):  # medians over the last 20 values
            assert record[key] == pytest.approx(expected[record["iteration"]][key], rel=1e-6)
