"""tools/train_net.py for the tiny test model: same command line, same `main`, run with
TinyTrainer (tiny data pipeline and evaluator). Used by the engine tests as a subprocess:

    python tests/tiny_train_net.py --config-file tests/configs/tiny.yaml [--resume] [KEY VALUE...]
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tools")]

import torch  # noqa: E402

torch.set_num_threads(1)  # small and reproducible: the same kernels in every run

import train_net  # noqa: E402

from clap.engine import launch_main  # noqa: E402
from tests.tiny_model import TinyTrainer  # noqa: E402

if __name__ == "__main__":
    launch_main(train_net.main, TinyTrainer)
