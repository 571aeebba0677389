# Each target sets itself up on a fresh machine: a virtual environment in .venv with the
# CPU build of torch (the tested release) and the project installed in editable mode with the
# synthetic generator and the test tools. The CPU index is an extra index: where it cannot be
# reached, pip warns, retries (a few seconds per package) and takes torch from the other indexes.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYNTHETIC_ROOT ?= datasets/synthetic_nuscenes

.PHONY: setup demo test lint data gpu-check

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==$(TORCH_VERSION) --extra-index-url $(TORCH_INDEX)
	$(PY) -m pip install -e ".[synthetic,test]"
	touch $(STAMP)

# The synthetic world in the nuScenes layout (made once; scenes in 2 processes, the output does
# not depend on their number).
data: $(STAMP)
	test -f $(SYNTHETIC_ROOT)/v1.0-mini/sample.json || $(PY) tools/make_synthetic_nuscenes.py \
		--out $(SYNTHETIC_ROOT) --scenes 10 --samples-per-scene 10 --image-scale 0.25 \
		--sweeps 1 --seed 0 --version v1.0-mini --workers 2

# The main job: CLAP pre-training on the embedded synthetic world (CPU scale).
demo: data
	$(PY) tools/train_net.py --config-file configs/synthetic/clap_cpu.yaml \
		DATASETS.ROOT $(SYNTHETIC_ROOT)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check clap tools tests projects

# The GPU path in one command (tools/gpu_check.py, about 5 minutes on one GPU): run it in the
# environment that has the CUDA build of torch and this package, not in the CPU .venv.
GPU_CHECK_OUT ?= output/gpu_check
gpu-check:
	$(PYTHON) tools/gpu_check.py --out $(GPU_CHECK_OUT)
