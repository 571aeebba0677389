#!/usr/bin/env python
"""Write the encoder weights of a pre-training checkpoint, for fine-tuning a detector.

    python tools/export_encoders.py output/synthetic/clap_cpu/model_final.pth encoders.pth

The output holds `{"model": state}` with the entries of the encoders present in the checkpoint
(lidar_backbone, image_backbone, view_transform, fusion; names kept), loadable with
weights_only=True by MODEL.WEIGHTS or MODEL.PRETRAINED_ENCODERS.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.checkpoint.clap_checkpoint import export_submodules  # noqa: E402
from clap.modeling.meta_arch.pretrained import ENCODER_PREFIXES  # noqa: E402
from clap.utils.file_io import PathManager  # noqa: E402


def export_encoders(checkpoint_path: str, output_path: str) -> dict:
    """Export the encoders of `checkpoint_path` to `output_path`; returns {prefix: #tensors}."""
    if not PathManager.exists(checkpoint_path):
        raise FileNotFoundError(f"Checkpoint not found: {checkpoint_path}")
    with PathManager.open(checkpoint_path, "rb") as f:
        checkpoint = torch.load(f, map_location="cpu", weights_only=True)
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint_path} holds no model state dict")
    present = [p.rstrip(".") for p in ENCODER_PREFIXES if any(k.startswith(p) for k in state)]
    if not present:
        top_level = sorted({k.split(".")[0] for k in state})
        raise KeyError(
            f"{checkpoint_path} holds no encoder weights (expected any of "
            f"{[p.rstrip('.') for p in ENCODER_PREFIXES]}; found {top_level})"
        )
    exported = export_submodules(state, present)
    with PathManager.open(output_path, "wb") as f:
        torch.save({"model": exported}, f)
    return {p: sum(k.startswith(p + ".") for k in exported) for p in present}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="pre-training checkpoint (e.g. model_final.pth)")
    parser.add_argument("output", help="where to write the encoder weights")
    args = parser.parse_args(argv)
    counts = export_encoders(args.checkpoint, args.output)
    for prefix, count in counts.items():
        print(f"{prefix}: {count} tensors")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
