"""Config errors a user meets (typos, missing files, wrong types) and the run set-up."""

import logging
import os

import numpy as np
import pytest
import yaml

from clap.config import get_cfg
from clap.engine import default_argument_parser, default_setup
from tests.tiny_model import load_train_net_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "configs", "tiny.yaml")


@pytest.fixture(scope="module")
def train_net():
    return load_train_net_module()


def _args(*argv):
    return default_argument_parser().parse_args(list(argv))


def _write_yaml(path, content):
    path.write_text(yaml.safe_dump(content))
    return str(path)


def test_typo_in_a_config_file_names_the_key(tmp_path, train_net):
    path = _write_yaml(tmp_path / "typo.yaml", {"SOLVER": {"BASE_LRR": 0.1}})
    with pytest.raises(KeyError, match=r"SOLVER\.BASE_LRR"):
        train_net.setup(_args("--config-file", path))


def test_typo_on_the_command_line_names_the_key(train_net):
    # yacs' merge_from_list reports unknown keys with an AssertionError
    with pytest.raises((KeyError, AssertionError), match=r"SOLVER\.MAX_ITERS"):
        train_net.setup(_args("--config-file", TINY, "SOLVER.MAX_ITERS", "10"))


def test_missing_config_file_names_the_path(tmp_path, train_net):
    missing = str(tmp_path / "no_such_config.yaml")
    with pytest.raises(FileNotFoundError, match="no_such_config.yaml"):
        train_net.setup(_args("--config-file", missing))
    base_missing = _write_yaml(tmp_path / "child.yaml", {"_BASE_": "absent_base.yaml"})
    with pytest.raises(FileNotFoundError, match="absent_base.yaml"):
        train_net.setup(_args("--config-file", base_missing))


def test_type_mismatch_names_the_key(tmp_path, train_net):
    path = _write_yaml(tmp_path / "types.yaml", {"SOLVER": {"MAX_ITER": "many"}})
    with pytest.raises(ValueError, match=r"SOLVER\.MAX_ITER"):
        train_net.setup(_args("--config-file", path))
    with pytest.raises(ValueError, match=r"SOLVER\.BASE_LR"):
        train_net.setup(_args("--config-file", TINY, "SOLVER.BASE_LR", "fast"))


def test_base_file_then_child_then_command_line(tmp_path, train_net):
    _write_yaml(tmp_path / "base.yaml", {"SOLVER": {"MAX_ITER": 7, "BASE_LR": 0.5}, "SEED": 3})
    child = _write_yaml(
        tmp_path / "child.yaml", {"_BASE_": "base.yaml", "SOLVER": {"BASE_LR": 0.25}}
    )
    cfg = train_net.setup(
        _args("--config-file", child, "SEED", "11", "OUTPUT_DIR", str(tmp_path / "out"))
    )
    assert (cfg.SOLVER.MAX_ITER, cfg.SOLVER.BASE_LR, cfg.SEED) == (7, 0.25, 11)
    assert cfg.is_frozen()


def test_default_setup_writes_a_reloadable_config_and_log_and_seeds(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(TINY)
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    cfg.SOLVER.BASE_LR = 0.125
    cfg.freeze()
    default_setup(cfg, _args("--config-file", TINY))
    first_draw = np.random.rand()

    reloaded = get_cfg()
    reloaded.merge_from_file(str(tmp_path / "run" / "config.yaml"))
    assert reloaded == cfg
    logging.getLogger("clap.test").info("a line for the log file")
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Full config" in log and "a line for the log file" in log
    np.random.seed(cfg.SEED)
    assert np.random.rand() == first_draw


def test_solver_defaults_follow_the_paper_pre_training_recipe():
    solver = get_cfg().SOLVER
    assert (solver.OPTIMIZER, solver.BASE_LR, solver.WEIGHT_DECAY) == ("AdamW", 5e-5, 0.01)
    assert solver.LR_SCHEDULER_NAME == "cosine"
    assert solver.CLIP_GRADIENTS.ENABLED and solver.CLIP_GRADIENTS.CLIP_TYPE == "norm"
    assert solver.CLIP_GRADIENTS.CLIP_VALUE == 35.0
