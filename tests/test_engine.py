"""Trainer, hooks, event storage, solver and data loading on the tiny regression model (CPU)."""

import copy
import itertools
import json
import logging
import math
import os

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from clap.config import get_cfg
from clap.data.build import build_train_loader
from clap.data.samplers import InferenceSampler, TrainingSampler
from clap.engine import AMPTrainer, HookBase, SimpleTrainer
from clap.solver import build_grad_clipper, build_lr_scheduler, build_optimizer
from clap.utils.events import EventStorage, get_event_storage
from tests.tiny_model import (
    TEST_NAME,
    TinyRegressionModel,
    TinyTrainer,
    WeightNormEMAHook,
    hook_states_without_wall_clock,
    make_tiny_dicts,
    tiny_collate,
    tiny_mapper,
)

CONFIG = os.path.join(os.path.dirname(__file__), "configs", "tiny.yaml")


def tiny_cfg(output_dir, **overrides):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.OUTPUT_DIR = str(output_dir)
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return cfg


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


class _ListLoader:
    """An endless loader cycling over fixed batches."""

    def __init__(self, batches):
        self._batches = batches

    def __iter__(self):
        return itertools.cycle(self._batches)


def _fixed_batches(num_batches=3, batch_size=4):
    dicts = make_tiny_dicts(num_batches * batch_size, seed=3)
    samples = [tiny_mapper(d) for d in dicts]
    return [tiny_collate(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)]


def test_default_trainer_writes_metrics_tensorboard_and_checkpoints(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"DATASETS.TEST": (TEST_NAME,), "TEST.EVAL_PERIOD": 10})
    trainer = TinyTrainer(cfg)
    trainer.resume_or_load(resume=False)
    initial = {k: v.clone() for k, v in trainer.unwrapped_model.state_dict().items()}
    trainer.train()

    assert trainer.iter == cfg.SOLVER.MAX_ITER
    final_state = trainer.unwrapped_model.state_dict()
    assert any(not torch.equal(initial[k], final_state[k]) for k in initial), "no training"

    records = read_metrics(tmp_path)
    iterations = [r["iteration"] for r in records]
    assert iterations == sorted(iterations)
    loss_records = [r for r in records if "loss_mse" in r]
    # LOG_PERIOD 5 over 30 iterations: written after iterations 4, 9, ..., 29
    assert [r["iteration"] for r in loss_records] == [4, 9, 14, 19, 24, 29]
    for record in loss_records:
        assert math.isfinite(record["loss_mse"]) and math.isfinite(record["loss_l1"])
        assert record["total_loss"] == pytest.approx(
            record["loss_mse"] + record["loss_l1"], rel=0.2
        )
        assert {"lr", "time", "data_time", "grad_norm", "weight_norm_ema"} <= set(record)
    # evaluation after iterations 10 and 20 (EVAL_PERIOD) and at the end
    eval_records = [r for r in records if f"{TEST_NAME}/mse" in r]
    assert [r["iteration"] for r in eval_records] == [9, 19, 30]
    assert all(r[f"{TEST_NAME}/num_samples"] == 10 for r in eval_records)

    event_files = [f for f in os.listdir(tmp_path) if f.startswith("events.out.tfevents.")]
    assert len(event_files) == 1
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert {"loss_mse", "total_loss", "lr"} <= set(accumulator.Tags()["scalars"])
    loss_events = accumulator.Scalars("loss_mse")
    assert [e.step for e in loss_events] == [4, 9, 14, 19, 24, 29]
    assert loss_events[-1].value == pytest.approx(loss_records[-1]["loss_mse"], rel=1e-5)

    saved = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert saved == [
        "model_0000009.pth",
        "model_0000019.pth",
        "model_0000029.pth",
        "model_final.pth",
    ]
    with open(tmp_path / "last_checkpoint") as f:
        assert f.read() == "model_final.pth"
    checkpoint = torch.load(tmp_path / "model_final.pth", weights_only=True)
    for key, value in final_state.items():
        assert torch.equal(checkpoint["model"][key], value)
    assert checkpoint["iteration"] == 29
    assert checkpoint["trainer"]["hooks"]["WeightNormEMAHook"]["steps"] == 30
    assert checkpoint["trainer"]["hooks"]["LRScheduler"]["scheduler"]["last_epoch"] == 30


def test_in_process_resume_restores_hook_state_iteration_and_lr(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"SOLVER.MAX_ITER": 12, "SOLVER.CHECKPOINT_PERIOD": 5})
    trainer = TinyTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    uninterrupted = torch.load(tmp_path / "model_final.pth", weights_only=True)

    # a second trainer resumes from the checkpoint of iteration 9 (as after a crash there)
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")
    resumed = TinyTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 10
    ema_hook = next(h for h in resumed.hooks if isinstance(h, WeightNormEMAHook))
    assert ema_hook.steps == 10
    assert resumed.scheduler.last_epoch == 10
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(
        resumed.scheduler.get_last_lr()[0]
    )
    resumed.train()
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    for key, value in uninterrupted["model"].items():
        assert torch.equal(final["model"][key], value), key
    assert hook_states_without_wall_clock(final["trainer"]["hooks"]) == (
        hook_states_without_wall_clock(uninterrupted["trainer"]["hooks"])
    )


def test_non_finite_loss_names_iteration_and_every_term():
    class NaNAtIteration2(TinyRegressionModel):
        calls = 0

        def forward(self, batch):
            losses = super().forward(batch)
            NaNAtIteration2.calls += 1
            if NaNAtIteration2.calls == 3:
                losses["loss_mse"] = losses["loss_mse"] * float("nan")
            return losses

    model = NaNAtIteration2(None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    trainer = SimpleTrainer(model, _ListLoader(_fixed_batches()), optimizer)
    parameters_before_nan = {}

    class Snapshot(HookBase):
        def after_step(self):
            parameters_before_nan.update({k: v.clone() for k, v in model.state_dict().items()})

    trainer.register_hooks([Snapshot()])
    with pytest.raises(FloatingPointError) as error:
        trainer.train(0, 10)
    message = str(error.value)
    assert "iteration 2" in message
    assert "loss_mse=nan" in message
    assert "loss_l1=" in message and "loss_l1=nan" not in message
    # the failing iteration changed nothing
    for key, value in model.state_dict().items():
        assert torch.equal(value, parameters_before_nan[key])


def test_after_backward_hooks_see_gradients_and_clipping_bounds_the_norm():
    cfg = get_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1e-3
    model = TinyRegressionModel(None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    trainer = SimpleTrainer(
        model, _ListLoader(_fixed_batches()), optimizer, grad_clipper=build_grad_clipper(cfg)
    )
    norms_before_clip, norms_after_clip = [], []

    class GradientProbe(HookBase):
        def after_backward(self):
            grads = [p.grad for p in self.trainer.model.parameters()]
            norms_before_clip.append(
                float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
            )

        def after_step(self):
            grads = [p.grad for p in self.trainer.model.parameters()]
            norms_after_clip.append(
                float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])))
            )
            storage = get_event_storage()
            assert storage.history("grad_norm").latest() == pytest.approx(
                norms_before_clip[-1], rel=1e-5
            )

    trainer.register_hooks([GradientProbe()])
    trainer.train(0, 3)
    assert len(norms_before_clip) == 3 and min(norms_before_clip) > 1e-3
    assert max(norms_after_clip) == pytest.approx(1e-3, rel=1e-4)


def test_amp_trainer_bfloat16_on_cpu_trains_without_scaler():
    torch.manual_seed(0)
    model = TinyRegressionModel(None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    trainer = AMPTrainer(model, _ListLoader(_fixed_batches()), optimizer, precision=torch.bfloat16)
    seen_dtypes = []

    class OutputDtype(HookBase):
        def before_step(self):
            self.handle = self.trainer.model.out.register_forward_hook(
                lambda module, inputs, output: seen_dtypes.append(output.dtype)
            )

        def after_step(self):
            self.handle.remove()

    trainer.register_hooks([OutputDtype()])
    trainer.train(0, 4)
    assert trainer.grad_scaler is None
    assert seen_dtypes == [torch.bfloat16] * 4
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert "grad_scaler" not in trainer.state_dict()


def test_trainer_state_keys_hook_states_by_class_name():
    class Counter(HookBase):
        def __init__(self):
            self.count = 0

        def after_step(self):
            self.count += 1

        def state_dict(self):
            return {"count": self.count}

        def load_state_dict(self, state):
            self.count = state["count"]

    model = TinyRegressionModel(None)
    trainer = SimpleTrainer(
        model, _ListLoader(_fixed_batches()), torch.optim.SGD(model.parameters(), lr=0.1)
    )
    trainer.register_hooks([Counter(), HookBase()])
    trainer.train(0, 3)
    state = trainer.state_dict()
    assert state["hooks"] == {
        "test_trainer_state_keys_hook_states_by_class_name.<locals>.Counter": {"count": 3}
    }
    assert state["iteration"] == 3

    other = SimpleTrainer(
        model, _ListLoader(_fixed_batches()), torch.optim.SGD(model.parameters(), lr=0.1)
    )
    counter = Counter()
    other.register_hooks([counter])
    other.load_state_dict(state)
    assert counter.count == 3 and other.iter == 3

    trainer.register_hooks([Counter()])
    with pytest.raises(ValueError, match="Counter"):
        trainer.state_dict()


def test_optimizer_param_groups_exclude_norm_and_bias_from_weight_decay():
    cfg = get_cfg()
    model = TinyRegressionModel(None)
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    decay_by_name = {
        name: group["weight_decay"]
        for group in optimizer.param_groups
        for name in group["param_names"]
    }
    assert decay_by_name == {
        "hidden.weight": 0.01,
        "out.weight": 0.01,
        "hidden.bias": 0.0,
        "out.bias": 0.0,
        "norm.weight": 0.0,
        "norm.bias": 0.0,
    }
    assert all(group["lr"] == 5e-5 for group in optimizer.param_groups)

    cfg.SOLVER.OPTIMIZER = "SGD"
    assert isinstance(build_optimizer(cfg, model), torch.optim.SGD)
    cfg.SOLVER.OPTIMIZER = "Adam"
    with pytest.raises(ValueError, match="SOLVER.OPTIMIZER"):
        build_optimizer(cfg, model)


def test_optimizers_step_with_the_fused_kernel_as_the_per_tensor_loop_would():
    cfg = get_cfg()
    for name in ("AdamW", "SGD"):
        cfg.SOLVER.OPTIMIZER, cfg.SOLVER.MOMENTUM = name, 0.9
        torch.manual_seed(0)
        fused_model = TinyRegressionModel(None)
        loop_model = copy.deepcopy(fused_model)
        optimizer = build_optimizer(cfg, fused_model)
        assert optimizer.defaults["fused"], name
        loop = type(optimizer)(
            [dict(group, params=[dict(loop_model.named_parameters())[n]
                                 for n in group["param_names"]])
             for group in optimizer.param_groups],
            foreach=False,
        )
        for step in range(3):
            for model, opt in ((fused_model, optimizer), (loop_model, loop)):
                for param in model.parameters():
                    param.grad = torch.full_like(param, 0.1 * (step + 1)) + param.detach()
                opt.step()
        for (key, fused), loop_param in zip(fused_model.named_parameters(),
                                            loop_model.parameters()):
            torch.testing.assert_close(fused, loop_param, msg=f"{name} {key}")


def _lrs_over_training(cfg):
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=cfg.SOLVER.BASE_LR)
    scheduler = build_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(cfg.SOLVER.MAX_ITER):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_lr_schedules_follow_warmup_cosine_and_multistep():
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER = 1.0, 100
    cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR = 10, 0.1
    lrs = _lrs_over_training(cfg)
    cosine = [0.5 * (1 + math.cos(math.pi * i / 100)) for i in range(100)]
    assert lrs[0] == pytest.approx(0.1 * cosine[0])
    assert lrs[5] == pytest.approx((0.1 * 0.5 + 0.5) * cosine[5])
    assert lrs[10:] == pytest.approx(cosine[10:])

    cfg.SOLVER.LR_SCHEDULER_NAME = "multistep"
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.STEPS, cfg.SOLVER.GAMMA = (30, 60), 0.5
    lrs = _lrs_over_training(cfg)
    assert lrs[29] == 1.0 and lrs[30] == 0.5 and lrs[59] == 0.5 and lrs[60] == 0.25

    cfg.SOLVER.LR_SCHEDULER_NAME = "constant"
    assert set(_lrs_over_training(cfg)) == {1.0}

    cfg.SOLVER.LR_SCHEDULER_NAME = "multistep"
    cfg.SOLVER.STEPS = (30, 200)
    with pytest.raises(ValueError, match="SOLVER.STEPS"):
        _lrs_over_training(cfg)


def test_event_storage_history_scopes_images_and_histograms():
    with pytest.raises(RuntimeError, match="EventStorage"):
        get_event_storage()
    with EventStorage(start_iter=5) as storage:
        assert get_event_storage() is storage
        for i, value in enumerate([1.0, 3.0, 2.0, 10.0]):
            storage.iter = 5 + i
            storage.put_scalar("loss", value)
        storage.put_scalar("lr", 0.1, smoothing_hint=False)
        with storage.name_scope("eval"):
            storage.put_scalars(mse=0.5, count=torch.tensor(3))
        history = storage.history("loss")
        assert history.median(3) == 3.0 and history.avg(4) == 4.0 and history.latest() == 10.0
        assert storage.latest()["eval/mse"] == (0.5, 8)
        assert storage.latest()["eval/count"] == (3.0, 8)
        smoothed = storage.latest_with_smoothing_hint(window_size=3)
        assert smoothed["loss"] == (3.0, 8) and smoothed["lr"] == (0.1, 8)
        with pytest.raises(KeyError, match="nope"):
            storage.history("nope")

        storage.put_image("rgb", torch.full((3, 2, 2), 255, dtype=torch.uint8))
        storage.put_image("depth", torch.full((1, 2, 2), 2.0))
        (name, image, it), (_, depth, _) = storage.images
        assert name == "rgb" and it == 8 and image.dtype == torch.float32 and image.max() == 1.0
        assert depth.max() == 1.0  # clamped into [0, 1]
        with pytest.raises(ValueError, match="bad"):
            storage.put_image("bad", torch.zeros(2, 2))
        storage.put_histogram("weights", torch.arange(10.0), bins=5)
        record = storage.histograms[0]
        assert record["bucket_counts"] == [2.0] * 5 and record["num"] == 10 and record["max"] == 9.0
        storage.clear_images()
        storage.clear_histograms()
        assert storage.images == [] and storage.histograms == []


def test_training_sampler_resumes_mid_stream_and_shards_across_ranks():
    def take(sampler, count):
        return list(itertools.islice(iter(sampler), count))

    full = take(TrainingSampler(7, seed=3), 40)
    assert sorted(full[:7]) == list(range(7)) and sorted(full[7:14]) == list(range(7))
    assert full[:7] != full[7:14]  # a new permutation every epoch
    assert take(TrainingSampler(7, seed=3, start=17), 23) == full[17:]
    rank0 = take(TrainingSampler(7, seed=3, start=4, rank=0, world_size=2), 18)
    rank1 = take(TrainingSampler(7, seed=3, start=4, rank=1, world_size=2), 18)
    assert rank0 == full[4::2][:18] and rank1 == full[5::2][:18]
    assert take(TrainingSampler(7, seed=4), 7) != full[:7]
    assert take(TrainingSampler(5, shuffle=False, start=3), 4) == [3, 4, 0, 1]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_inference_sampler_covers_every_index_once(world_size):
    for size in range(8):
        shards = [
            list(InferenceSampler(size, rank=r, world_size=world_size)) for r in range(world_size)
        ]
        assert [i for shard in shards for i in shard] == list(range(size))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_train_loader_batches_do_not_depend_on_workers_and_resume_mid_stream(tmp_path):
    cfg = tiny_cfg(tmp_path)

    def batches(num_workers, start_iter, count):
        cfg.DATALOADER.NUM_WORKERS = num_workers
        loader = build_train_loader(
            cfg, mapper=tiny_mapper, collate_fn=tiny_collate, start_iter=start_iter
        )
        return list(itertools.islice(iter(loader), count))

    rng_before = torch.get_rng_state()
    reference = batches(0, 0, 8)
    assert torch.equal(torch.get_rng_state(), rng_before), "loading changed the global RNG"
    assert all(b["x"].shape == (4, 4) for b in reference)
    # 24 samples, batch 4: iterations 0-5 form epoch 0, each sample exactly once
    epoch0 = torch.cat([b["index"] for b in reference[:6]])
    assert sorted(epoch0.tolist()) == list(range(24))
    with_workers = batches(2, 0, 8)
    resumed = batches(0, 5, 3)
    for a, b in zip(reference, with_workers):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["index"], b["index"])
    for a, b in zip(reference[5:], resumed):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["index"], b["index"])
    # augmentation is random per sample: the same sample differs between epochs
    first = {int(i): x for b in reference[:6] for i, x in zip(b["index"], b["x"])}
    second = {int(i): x for b in reference[6:] for i, x in zip(b["index"], b["x"])}
    assert all(not torch.equal(first[i], second[i]) for i in second)


def test_train_loader_errors_name_the_config_key(tmp_path):
    cfg = tiny_cfg(tmp_path)
    cfg.SOLVER.IMS_PER_BATCH = 0
    with pytest.raises(ValueError, match="SOLVER.IMS_PER_BATCH"):
        build_train_loader(cfg, mapper=tiny_mapper, collate_fn=tiny_collate)
    cfg = tiny_cfg(tmp_path)
    cfg.DATASETS.TRAIN = ()
    with pytest.raises(ValueError, match="DATASETS.TRAIN"):
        build_train_loader(cfg, mapper=tiny_mapper, collate_fn=tiny_collate)
    cfg.DATASETS.TRAIN = ("not_registered",)
    with pytest.raises(KeyError, match="not_registered"):
        build_train_loader(cfg, mapper=tiny_mapper, collate_fn=tiny_collate)


def test_model_build_hooks_are_registered_before_the_checkpointer(tmp_path):
    trainer = TinyTrainer(tiny_cfg(tmp_path))
    names = [type(h).__name__ for h in trainer.hooks]
    assert names == [
        "IterationTimer",
        "LRScheduler",
        "WeightNormEMAHook",
        "PeriodicCheckpointer",
        "PeriodicWriter",
    ]
    assert np.isclose(trainer.optimizer.param_groups[0]["lr"], 0.01 / 3)


def test_writers_put_images_histograms_and_a_console_line(tmp_path):
    from clap.utils.events import ConsoleWriter, JSONWriter, TensorboardWriter

    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    console = ConsoleWriter(max_iter=100)
    collect = Collect()
    console.logger.addHandler(collect)
    level = console.logger.level
    console.logger.setLevel(logging.INFO)
    tensorboard = TensorboardWriter(str(tmp_path))
    json_writer = JSONWriter(str(tmp_path / "metrics.json"))
    try:
        with EventStorage(start_iter=9) as storage:
            storage.put_scalars(loss_total=2.5, time=0.5, data_time=0.125)
            storage.put_scalar("lr", 0.01, smoothing_hint=False)
            storage.put_image("render/rgb", torch.rand(3, 8, 8))
            storage.put_histogram("prototypes/usage", torch.randn(100))
            for writer in (console, tensorboard, json_writer):
                writer.write()
    finally:
        console.logger.removeHandler(collect)
        console.logger.setLevel(level)
        tensorboard.close()
        json_writer.close()

    assert len(lines) == 1
    line = lines[0]
    for part in ("eta: 0:00:45", "iter: 9", "loss_total: 2.5", "time: 0.5000", "lr: 0.01"):
        assert part in line, (part, line)
    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert accumulator.Tags()["images"] == ["render/rgb"]
    assert accumulator.Tags()["histograms"] == ["prototypes/usage"]
    assert accumulator.Histograms("prototypes/usage")[0].histogram_value.num == 100
    assert read_metrics(tmp_path) == [
        {"iteration": 9, "loss_total": 2.5, "time": 0.5, "data_time": 0.125, "lr": 0.01}
    ]


def test_evaluation_does_not_change_how_training_continues():
    from clap.engine.hooks import EvalHook, flatten_results

    batches = _fixed_batches()

    def train(with_evaluation):
        torch.manual_seed(0)
        model = TinyRegressionModel(None)  # dropout draws from the global torch RNG
        trainer = SimpleTrainer(
            model, _ListLoader(batches), torch.optim.SGD(model.parameters(), lr=0.1)
        )

        def evaluate():
            np.random.rand(5)
            return {"test": {"score": float(torch.rand(()))}}

        if with_evaluation:
            trainer.register_hooks([EvalHook(2, evaluate)])
        trainer.train(0, 6)
        scores = trainer.storage.history("test/score").values() if with_evaluation else None
        return model.state_dict(), scores

    plain, _ = train(with_evaluation=False)
    evaluated, scores = train(with_evaluation=True)
    assert [it for _, it in scores] == [1, 3, 6]  # every 2 iterations, and at the end
    for key, value in plain.items():
        assert torch.equal(value, evaluated[key]), key

    assert flatten_results({"a": {"b": np.float32(0.5), "n": 3}}) == {"a/b": 0.5, "a/n": 3.0}
    with pytest.raises(TypeError, match="a/name"):
        flatten_results({"a": {"name": "car"}})
