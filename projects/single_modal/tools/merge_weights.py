#!/usr/bin/env python
"""Merge a LiDAR-only and a camera-only checkpoint into one fusion initialisation.

    python projects/single_modal/tools/merge_weights.py \
        --lidar output/nuscenes/single_modal_lidar_only/model_final.pth \
        --camera output/nuscenes/single_modal_camera_only/model_final.pth \
        --output output/nuscenes/single_modal_merged.pth \
        [--config-file configs/nuscenes/clap.yaml]

Takes `lidar_backbone.*` from --lidar and `image_backbone.*` + `view_transform.*` from --camera,
prints what was taken from where and what was left out, and writes `{"model": weights}` (loadable
with weights_only=True; give it to a fusion model as MODEL.WEIGHTS). With --config-file the
weights are first checked against the encoders of the model that config builds (on the CPU):
every encoder tensor must be there with its shape, else nothing is written. With
--with-lidar-head the inputs are two fine-tuned single-modal detectors and the LiDAR detector's
`bev_backbone.*` and `det_head.*` are taken too (UniPAD's fusion recipe).
"""

import argparse
import os
import sys

# The repository root (for clap) and the project folder (for single_modal), however started.
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(_PROJECT_ROOT)))
sys.path.insert(0, _PROJECT_ROOT)

from single_modal import (  # noqa: E402
    DETECTOR_HEAD_PREFIXES,
    add_single_modal_config,
    check_against_model,
    merge_single_modal_checkpoints,
    save_merged_checkpoint,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Merge the LiDAR encoder of a LiDAR-only checkpoint and the camera encoder "
        "of a camera-only checkpoint into one fusion initialisation."
    )
    parser.add_argument("--lidar", required=True, metavar="CKPT",
                        help="LiDAR-only checkpoint (lidar_backbone.* is taken)")
    parser.add_argument("--camera", required=True, metavar="CKPT",
                        help="camera-only checkpoint (image_backbone.*, view_transform.* taken)")
    parser.add_argument("--output", required=True, metavar="OUT", help="merged checkpoint (.pth)")
    parser.add_argument("--with-lidar-head", action="store_true",
                        help="also take bev_backbone.* and det_head.* from --lidar (two "
                        "fine-tuned single-modal detectors, UniPAD's fusion recipe)")
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="config of the fusion model to check the merged encoders against")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE overrides of --config-file")
    return parser


def check_with_config(merged, config_file: str, opts) -> str:
    """Build the model of `config_file` on the CPU and check `merged` against its encoders.

    Returns a summary line; raises SystemExit listing the problems when the merge does not fit.
    """
    import clap.modeling  # noqa: F401  (registers clap's components)
    from clap.config import get_cfg
    from clap.modeling import build_model

    cfg = get_cfg()
    add_single_modal_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts) + ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    result = check_against_model(merged, build_model(cfg).state_dict())
    problems = [f"  missing in the merge: {k}" for k in result["missing"]]
    problems += [f"  not in the model: {k}" for k in result["unexpected"]]
    problems += [
        f"  shape of {k}: merged {list(a)}, model {list(b)}" for k, a, b in result["shape_mismatch"]
    ]
    if problems:
        raise SystemExit(
            f"The merged encoders do not fit the model of {config_file} (nothing written):\n"
            + "\n".join(problems[:20])
            + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        )
    return (
        f"All encoder tensors of the model of {config_file} are matched; it keeps its own "
        f"initialisation for: {', '.join(result['model_keeps'])}"
    )


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.opts and not args.config_file:
        raise SystemExit("KEY VALUE overrides need --config-file")
    try:
        merged, report = merge_single_modal_checkpoints(
            args.lidar, args.camera, DETECTOR_HEAD_PREFIXES if args.with_lidar_head else ())
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        raise SystemExit(f"merge_weights: {error}") from error
    print(report.format())
    if args.config_file:
        print(check_with_config(merged, args.config_file, args.opts))
    save_merged_checkpoint(merged, args.output)
    print(f"Wrote {len(merged)} tensors to {args.output}")


if __name__ == "__main__":
    main()
