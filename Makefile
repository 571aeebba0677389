# Each target sets itself up on a fresh machine: a virtual environment in .venv with the
# CPU build of torch (pinned) and the project installed in editable mode.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYNTHETIC_ROOT ?= datasets/synthetic_nuscenes

.PHONY: setup demo test lint data

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

# The main job: CLAP pre-training on the embedded synthetic world (CPU scale).
demo: $(STAMP)
	$(PY) tools/train_net.py --config-file configs/synthetic/clap_cpu.yaml

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check clap tools tests projects
