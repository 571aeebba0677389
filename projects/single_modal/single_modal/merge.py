"""One fusion initialisation from a LiDAR-only and a camera-only checkpoint (UniPAD's recipe).

A fusion model (CLAP or a detector on both modalities) loads pre-trained weights by the prefixes
`lidar_backbone.`, `image_backbone.`, `view_transform.` and `fusion.`. The LiDAR encoder comes
from the LiDAR-only run, the image backbone and the camera-to-voxel lift from the camera-only run.
Nothing else is taken: the fusion of the fusion model has both volumes as input, so no
single-modal run trained it (it keeps its own initialisation), and the render heads belong to
the pre-training only.

For UniPAD's fusion recipe, whose inputs are two fine-tuned single-modal detectors, the LiDAR
detector's BEV backbone and detection head can be taken too (`DETECTOR_HEAD_PREFIXES`): they
have the same shapes in the fusion detector (its fusion's output width is the configured one
whatever its inputs), while the fusion still keeps its initialisation.
"""

import os
import pickle
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Tuple

import torch

from clap.checkpoint import atomic_write, check_weights_only_safe

__all__ = [
    "LIDAR_PREFIXES",
    "CAMERA_PREFIXES",
    "DETECTOR_HEAD_PREFIXES",
    "NOT_MERGED_PREFIXES",
    "MergeReport",
    "load_model_state",
    "merge_encoder_states",
    "merge_single_modal_checkpoints",
    "save_merged_checkpoint",
    "check_against_model",
]

# Sub-modules taken from the LiDAR-only checkpoint.
LIDAR_PREFIXES = ("lidar_backbone",)
# Sub-modules taken from the camera-only checkpoint.
CAMERA_PREFIXES = ("image_backbone", "view_transform")
# Sub-modules after the fusion of a DetectionModel, taken from the LiDAR-only detector on request.
DETECTOR_HEAD_PREFIXES = ("bev_backbone", "det_head")
# Pre-trained sub-modules of a fusion model that no single-modal checkpoint provides.
NOT_MERGED_PREFIXES = ("fusion",)


def _keys_under(state: Mapping[str, torch.Tensor], prefix: str) -> List[str]:
    """Names of `state` inside sub-module `prefix` ("prefix" itself or "prefix.*")."""
    return [k for k in state if k == prefix or k.startswith(prefix + ".")]


def _top_level_counts(keys) -> Dict[str, int]:
    """Tensors per top-level sub-module name, sorted by name."""
    return dict(sorted(Counter(k.split(".")[0] for k in keys).items()))


def load_model_state(path: str) -> "OrderedDict[str, torch.Tensor]":
    """The model weights in a checkpoint file, read with `torch.load(weights_only=True)`.

    Accepts a clap checkpoint (a dict whose "model" entry is the state dict, as written by
    `ClapCheckpointer` or `torch.save({"model": model.state_dict()}, path)`) and a bare state
    dict (name -> tensor).

    Raises:
        FileNotFoundError, RuntimeError (not weights_only-loadable), ValueError (no weights):
            each naming `path`.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise RuntimeError(
            f"{path}: cannot be loaded with weights_only=True (it holds objects other than "
            "tensors and primitives)"
        ) from error
    state = data.get("model", data) if isinstance(data, dict) else data
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"{path}: expected a checkpoint with a 'model' state dict or a state dict "
            f"(name -> tensor), found a {type(data).__name__}"
            + (f" with entries {sorted(map(str, data))[:10]}" if isinstance(data, dict) else "")
        )
    return OrderedDict(state)


@dataclass
class MergeReport:
    """What a merge took from where, and what it left out.

    Attributes:
        lidar_source, camera_source: names of the two inputs (file paths for files).
        taken: sub-module prefix -> (source, number of tensors taken).
        left_out: source -> {top-level sub-module name: number of tensors} not taken.
        not_provided: sub-modules a fusion model loads that neither input provides (they keep
            the fusion model's own initialisation).
    """

    lidar_source: str
    camera_source: str
    taken: Dict[str, Tuple[str, int]] = field(default_factory=dict)
    left_out: Dict[str, Dict[str, int]] = field(default_factory=dict)
    not_provided: Tuple[str, ...] = NOT_MERGED_PREFIXES

    def format(self) -> str:
        """Human-readable lines, one per taken sub-module and per source of left-out weights."""
        lines = ["Taken:"]
        for prefix, (source, count) in self.taken.items():
            lines.append(f"  {prefix}.* ({count} tensors) from {source}")
        lines.append("Left out:")
        for source, counts in self.left_out.items():
            names = ", ".join(f"{name} ({count})" for name, count in counts.items()) or "nothing"
            lines.append(f"  from {source}: {names}")
        lines.append(
            "Not provided (the fusion model keeps its own initialisation): "
            + ", ".join(f"{p}.*" for p in self.not_provided)
        )
        return "\n".join(lines)


def merge_encoder_states(
    lidar_state: Mapping[str, torch.Tensor],
    camera_state: Mapping[str, torch.Tensor],
    lidar_source: str = "the LiDAR-only checkpoint",
    camera_source: str = "the camera-only checkpoint",
    lidar_extra: Tuple[str, ...] = (),
) -> Tuple["OrderedDict[str, torch.Tensor]", MergeReport]:
    """Merge the encoders of two single-modal model states into one fusion initialisation.

    Args:
        lidar_state: state dict of a LiDAR-only model; its `lidar_backbone.*` is taken.
        camera_state: state dict of a camera-only model; its `image_backbone.*` and
            `view_transform.*` are taken.
        lidar_source, camera_source: names of the inputs in the report and in errors.
        lidar_extra: further sub-modules taken from the LiDAR-only state (e.g.
            `DETECTOR_HEAD_PREFIXES` for two fine-tuned detectors); it must hold them.

    Returns:
        (merged, report): the taken tensors under their unchanged names (LiDAR first), and a
        `MergeReport`.

    Raises:
        ValueError naming the source: an input lacks one of its encoders, or holds the other
        modality's encoder too (a fusion checkpoint, or the two inputs swapped), which would
        make the origin of those weights ambiguous.
    """
    roles = (
        (lidar_state, lidar_source, "LiDAR-only", LIDAR_PREFIXES + tuple(lidar_extra),
         CAMERA_PREFIXES, camera_source),
        (camera_state, camera_source, "camera-only", CAMERA_PREFIXES, LIDAR_PREFIXES,
         lidar_source),
    )
    for state, source, kind, wanted, foreign, other_source in roles:
        present = _top_level_counts(state)
        missing = [p for p in wanted if not _keys_under(state, p)]
        if missing:
            raise ValueError(
                f"{source} has no {', '.join(p + '.*' for p in missing)} weights: a {kind} "
                f"checkpoint must hold {', '.join(p + '.*' for p in wanted)}; it holds "
                f"{list(present) or 'no weights'}"
            )
        overlap = [p for p in foreign if _keys_under(state, p)]
        if overlap:
            raise ValueError(
                f"{source} also holds {', '.join(p + '.*' for p in overlap)}, which are taken "
                f"from {other_source}: expected a {kind} checkpoint (are the two inputs swapped, "
                "or is it a fusion checkpoint?)"
            )
    merged: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    report = MergeReport(lidar_source=lidar_source, camera_source=camera_source)
    for state, source, _, wanted, _, _ in roles:
        taken_keys = set()
        for prefix in wanted:
            keys = _keys_under(state, prefix)
            for key in keys:
                merged[key] = state[key]
            taken_keys.update(keys)
            report.taken[prefix] = (source, len(keys))
        report.left_out[source] = _top_level_counts(k for k in state if k not in taken_keys)
    return merged, report


def merge_single_modal_checkpoints(
    lidar_path: str, camera_path: str, lidar_extra: Tuple[str, ...] = ()
) -> Tuple["OrderedDict[str, torch.Tensor]", MergeReport]:
    """`merge_encoder_states` on two checkpoint files (see `load_model_state`)."""
    return merge_encoder_states(
        load_model_state(lidar_path), load_model_state(camera_path), lidar_path, camera_path,
        lidar_extra,
    )


def save_merged_checkpoint(merged: Mapping[str, torch.Tensor], path: str) -> None:
    """Write `{"model": merged}` to `path` atomically.

    The file loads with `torch.load(path, weights_only=True)` and into a model with clap's
    `ClapCheckpointer(model).load(path, checkpointables=[])` (or MODEL.WEIGHTS); its folder is
    created when missing.
    """
    data = {"model": OrderedDict(merged)}
    check_weights_only_safe(data, path)
    atomic_write(path, lambda f: torch.save(data, f))


def check_against_model(
    merged: Mapping[str, torch.Tensor],
    model_state: Mapping[str, torch.Tensor],
    prefixes: Tuple[str, ...] = LIDAR_PREFIXES + CAMERA_PREFIXES,
) -> Dict[str, list]:
    """Compare merged encoder weights with the encoders of a (fusion) model.

    Args:
        merged: the merged weights.
        model_state: the model's `state_dict()`.
        prefixes: the sub-modules compared.

    Returns:
        dict with "missing" (model names under `prefixes` the merge lacks), "unexpected"
        (merged names the model lacks), "shape_mismatch" ((name, merged shape, model shape)
        tuples) and "model_keeps" (top-level names of the model outside `prefixes`, which keep
        the model's initialisation), each sorted; the merge fits when the first three are empty.
    """
    model_keys = [k for p in prefixes for k in _keys_under(model_state, p)]
    missing = sorted(k for k in model_keys if k not in merged)
    unexpected = sorted(k for k in merged if k not in model_state)
    mismatch = sorted(
        (k, tuple(merged[k].shape), tuple(model_state[k].shape))
        for k in model_keys
        if k in merged and merged[k].shape != model_state[k].shape
    )
    covered = set(model_keys)
    keeps = sorted({k.split(".")[0] for k in model_state if k not in covered})
    return {
        "missing": missing,
        "unexpected": unexpected,
        "shape_mismatch": mismatch,
        "model_keeps": keeps,
    }
