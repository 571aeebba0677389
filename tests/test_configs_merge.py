"""Every yaml config of the project merges into its default tree.

Files under configs/ and tests/configs/ merge into `get_cfg()`. Files under
projects/<name>/configs/ merge into `get_cfg()` extended by the project's
`add_<name>_config(cfg)`, imported from projects/<name>/<name>/config.py.
"""

import glob
import importlib
import os
import sys

import pytest

from clap.config import CfgNode, get_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def discover_config_files():
    patterns = ["configs/**/*.yaml", "projects/*/configs/**/*.yaml", "tests/configs/*.yaml"]
    found = []
    for pattern in patterns:
        found += sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True))
    return found


def _project_name(path):
    parts = os.path.relpath(path, ROOT).split(os.sep)
    return parts[1] if parts[0] == "projects" else None


def default_tree_for(path):
    """get_cfg(), extended by the project's add_<name>_config for files of a project."""
    cfg = get_cfg()
    name = _project_name(path)
    if name is None:
        return cfg
    config_module = os.path.join(ROOT, "projects", name, name, "config.py")
    assert os.path.isfile(config_module), f"{path} belongs to project '{name}': {config_module}"
    project_root = os.path.join(ROOT, "projects", name)
    if project_root not in sys.path:
        sys.path.insert(0, project_root)
    module = importlib.import_module(f"{name}.config")
    assert os.path.samefile(module.__file__, config_module), module.__file__
    getattr(module, f"add_{name}_config")(cfg)
    return cfg


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _lookup(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _normalise(value):
    return list(value) if isinstance(value, tuple) else value


CONFIG_FILES = discover_config_files()


def test_discovery_finds_the_test_configs():
    assert os.path.join(ROOT, "tests", "configs", "tiny.yaml") in CONFIG_FILES


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_file_merges_into_its_default_tree(path):
    cfg = default_tree_for(path)
    cfg.merge_from_file(path)
    # every value the file sets (its _BASE_ chain included) is what the merged config holds
    written = CfgNode(CfgNode.load_yaml_with_base(path))
    leaves = list(_leaves(written))
    assert leaves, f"{path} sets no key"
    for key, value in leaves:
        assert _normalise(_lookup(cfg, key)) == _normalise(value), key
