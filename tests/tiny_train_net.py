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

from clap.engine import default_argument_parser, launch  # noqa: E402
from tests.tiny_model import TinyTrainer  # noqa: E402


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    launch(
        train_net.main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args, TinyTrainer),
    )


if __name__ == "__main__":
    invoke_main()
