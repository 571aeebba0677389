"""Set-up shared by the command lines that measure a pre-training checkpoint on a test set
(tools/eval_rendering.py, tools/ray_choice.py): the common arguments, the config, the test
set's name, the model with its weights, and the JSON output.

    parser = checkpoint_argument_parser(__doc__)
    parser.add_argument(...)                      # the tool's own options
    args = parser.parse_args(argv)
    cfg, dataset = setup_checkpoint_evaluation(args)
    model = load_checkpoint_model(cfg, args.weights)
    result = measure(model, build_test_loader(cfg, dataset),
                     max_batches=batches_for_frames(cfg, args.max_frames), seed=args.seed)
    write_json(result, args.json)
"""

import argparse
import json
import logging
import math
import os
from typing import Tuple

from clap.checkpoint import ClapCheckpointer
from clap.config import get_cfg
from clap.modeling import build_model
from clap.utils.cpu_runtime import configure_cpu_runtime

__all__ = [
    "checkpoint_argument_parser",
    "setup_checkpoint_evaluation",
    "load_checkpoint_model",
    "batches_for_frames",
    "write_json",
]


def checkpoint_argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with --config-file, --weights, --dataset, --max-frames, --seed, --json and the
    trailing config overrides (`opts`); its description is the first paragraph of `doc`."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="yaml config")
    parser.add_argument("--weights", required=True, metavar="CKPT", help="checkpoint to load")
    parser.add_argument(
        "--dataset", default="", help="registered data set (default: DATASETS.TEST[0])"
    )
    parser.add_argument(
        "--max-frames", type=int, default=0,
        help="only the first N frames, in whole batches of TEST.BATCH_SIZE (0: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="picks the rays")
    parser.add_argument("--json", default="", metavar="OUT", help="write the result here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def setup_checkpoint_evaluation(args) -> Tuple[object, str]:
    """The frozen config (`args.config_file`, then the overrides `args.opts`) and the data set
    to measure on (`args.dataset`, else DATASETS.TEST[0]); applies the CPU settings (CPU.*).

    Raises:
        ValueError: no --dataset and the config has no DATASETS.TEST.
    """
    logging.basicConfig(level=logging.WARNING)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts or []))
    cfg.freeze()
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
    if not dataset:
        raise ValueError(f"{args.config_file} has no DATASETS.TEST: name a data set with --dataset")
    configure_cpu_runtime(cfg)
    return cfg, dataset


def load_checkpoint_model(cfg, weights: str):
    """`build_model(cfg)` with the model weights of the checkpoint `weights` (no optimizer or
    other state). Raises FileNotFoundError naming `weights` when it does not exist."""
    model = build_model(cfg)
    ClapCheckpointer(model).load(weights, checkpointables=[])
    return model


def batches_for_frames(cfg, max_frames: int) -> int:
    """Test batches (TEST.BATCH_SIZE frames each) that hold the first `max_frames` frames; 0 (all)
    for `max_frames` 0."""
    return math.ceil(max_frames / cfg.TEST.BATCH_SIZE)


def write_json(result: dict, path: str) -> None:
    """Write `result` to `path` (indented JSON), creating its folder; nothing for an empty path."""
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
