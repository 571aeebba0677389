"""Started by torchrun in tests/test_launch.py: joins the group through `launch` and writes
what each process sees (world size, rank, local rank, gathered ranks) to <out_dir>/rank<r>.json.

    python -m torch.distributed.run --nproc_per_node 2 tests/launch_probe.py <out_dir>
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from clap.engine.launch import launch  # noqa: E402
from clap.utils import comm  # noqa: E402


def report(out_dir: str) -> None:
    place = {
        "world_size": comm.get_world_size(),
        "rank": comm.get_rank(),
        "local_rank": comm.get_local_rank(),
        "gathered_ranks": comm.all_gather(comm.get_rank()),
        "shared_seed": comm.shared_random_seed(),
    }
    with open(os.path.join(out_dir, f"rank{comm.get_rank()}.json"), "w") as f:
        json.dump(place, f)


if __name__ == "__main__":
    # --num-gpus 4 would spawn; under torchrun the two started processes are used as they are
    launch(report, num_gpus_per_machine=4, args=(sys.argv[1],))
