#!/usr/bin/env python
"""Which LiDAR rays a CLAP checkpoint's ray sampler picks: the share that ends on an annotated
object, against the share uniform sampling would hit (docs/rendering.md, "Which rays curvature
sampling picks").

    python tools/ray_choice.py --config-file output/comparison_cpu/pretrain/clap/config.yaml \
        --weights output/comparison_cpu/pretrain/clap/model_final.pth \
        --dataset nuscenes_v1.0-trainval_val --max-frames 30 --json ray_choice.json \
        CPU.NUM_THREADS 1 DATALOADER.NUM_WORKERS 0

The config's own sampler (MODEL.RAY_SAMPLER) chooses the rays, with its warm-up switched off.
Prints one line with the candidate, sampled and weight shares on objects and the enrichment
(sampled / candidate), and writes them as JSON with --json.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clap.data.build import build_test_loader  # noqa: E402
from clap.evaluation.checkpoint_tool import (  # noqa: E402
    batches_for_frames,
    checkpoint_argument_parser,
    load_checkpoint_model,
    setup_checkpoint_evaluation,
    write_json,
)
from clap.evaluation.ray_choice import object_share_of_rays  # noqa: E402


def parse_args(argv=None):
    return checkpoint_argument_parser(__doc__).parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg, dataset = setup_checkpoint_evaluation(args)
    model = load_checkpoint_model(cfg, args.weights)
    result = object_share_of_rays(
        model,
        build_test_loader(cfg, dataset),
        max_batches=batches_for_frames(cfg, args.max_frames),
        seed=args.seed,
    )
    weight_share = result["weight_object_share"]
    print(
        f"{dataset}, {result['num_frames']} frames, {cfg.MODEL.RAY_SAMPLER.NAME} sampler: "
        f"{result['sampled_object_share']:.4f} of {result['num_rays']} rays on objects against "
        f"{result['candidate_object_share']:.4f} of {result['num_candidates']} candidate points "
        f"(enrichment {result['enrichment']:.3f}), weight share "
        + ("n/a" if weight_share is None else f"{weight_share:.4f}")
    )
    result.update(
        config_file=args.config_file, weights=args.weights, dataset=dataset, opts=args.opts,
        sampler=cfg.MODEL.RAY_SAMPLER.NAME, seed=args.seed,
    )
    write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
