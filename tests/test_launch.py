"""Launching: DDP with two CPU processes (gloo), and joining a torchrun-started group."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from clap.checkpoint import ClapCheckpointer
from clap.config import get_cfg
from clap.engine import launch
from clap.utils import comm
from tests.tiny_model import TEST_NAME, TinyTrainer, tiny_train_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests", "configs", "tiny.yaml")


@pytest.mark.slow
def test_two_cpu_processes_train_and_the_checkpoint_loads_in_one_process(tmp_path):
    result = subprocess.run(
        tiny_train_command(
            tmp_path,
            "SOLVER.MAX_ITER", 4,
            "SOLVER.CHECKPOINT_PERIOD", 2,
            "SOLVER.LOG_PERIOD", 2,
            "DATASETS.TEST", f"('{TEST_NAME}',)",
            num_gpus=2,
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "log.txt.rank1").exists()
    assert "World size: 2" in (tmp_path / "log.txt").read_text()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"

    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss_mse" in r] == [1, 3]
    # the test set is split over the two ranks and every sample is evaluated once
    assert [r[f"{TEST_NAME}/num_samples"] for r in records if f"{TEST_NAME}/mse" in r] == [10]

    checkpoint = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert len(checkpoint["rng_states"]) == 2
    assert not any(key.startswith("module.") for key in checkpoint["model"])

    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    model = TinyTrainer.build_model(cfg)
    assert set(checkpoint["model"]) == set(model.state_dict())
    ClapCheckpointer(model).load(str(tmp_path / "model_final.pth"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint["model"][key]), key


@pytest.mark.slow
def test_every_shipped_config_trains_two_iterations_in_two_processes(tmp_path):
    """`--num-gpus 2` on the CPU with every shipped config at tiny inputs: DDP (without
    find_unused_parameters unless a config asks) fails the second iteration when some parameter
    gets no gradient, so this fails for any model that builds a parameter its forward skips."""
    from clap.data.synthetic import generate_dataset
    from tests.ddp_configs_probe import NOT_TRAINABLE, shipped_configs

    world = tmp_path / "world"
    generate_dataset(str(world), num_scenes=1, samples_per_scene=2, image_scale=0.1,
                     num_sweeps=1, seed=0, progress=False)
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, os.path.join(ROOT, "tests", "ddp_configs_probe.py"), str(world),
               str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    configs = shipped_configs()
    assert "configs/synthetic/clap_cpu.yaml" in configs and len(configs) >= 21
    assert sorted(results) == configs
    failed = {name: r["result"] for name, r in results.items() if r["result"] != "ok"}
    assert failed == {}
    for children in NOT_TRAINABLE.values():
        assert set(children) <= set(configs)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _record_process_place(calls):
    calls.append((comm.get_world_size(), comm.get_rank(), comm.get_local_rank()))


def test_under_torchrun_launch_joins_instead_of_spawning(monkeypatch):
    torchrun_env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29999",
    }
    for name, value in torchrun_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(comm, "_LOCAL_RANK", None)
    monkeypatch.setattr(comm, "_LOCAL_SIZE", None)
    calls = []
    # --num-gpus 2 would spawn two processes; under torchrun this process runs main itself
    launch(_record_process_place, num_gpus_per_machine=2, args=(calls,))
    assert calls == [(1, 0, 0)]


def test_single_process_runs_main_directly_and_auto_url_needs_one_machine():
    calls = []
    launch(_record_process_place, num_gpus_per_machine=1, args=(calls,))
    assert calls == [(1, 0, 0)]
    with pytest.raises(ValueError, match="dist-url"):
        launch(_record_process_place, 2, num_machines=2, dist_url="auto", args=(calls,))


@pytest.mark.slow
def test_torchrun_started_processes_form_one_group(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(_free_port()), os.path.join(ROOT, "tests", "launch_probe.py")]
    result = subprocess.run(command + [str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    places = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, place in enumerate(places):
        assert place["world_size"] == 2 and place["rank"] == rank and place["local_rank"] == rank
        assert place["gathered_ranks"] == [0, 1]
    assert places[0]["shared_seed"] == places[1]["shared_seed"]
