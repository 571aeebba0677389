"""Initialise a model's encoders from a pre-training checkpoint.

Key contract: every meta-architecture of this project holds its encoders under the attribute
names `lidar_backbone`, `image_backbone`, `view_transform` and `fusion`, so an encoder tensor has
the same state-dict key (e.g. `lidar_backbone.stem.weight`) in a pre-training model and in the
DetectionModel. Checkpoints may wrap the state dict (`{"model": state_dict, ...}` as the
checkpointer writes it, or `{"state_dict": ...}`) and prefix keys with `module.` (DDP) or
`model.`; both are removed before matching.
"""

import logging
import os
import pickle
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Sequence, Union

import torch
from torch import nn

from clap.utils.file_io import PathManager

logger = logging.getLogger(__name__)

ENCODER_PREFIXES = ("lidar_backbone.", "image_backbone.", "view_transform.", "fusion.")
_WRAPPER_PREFIXES = ("module.", "model.")


@dataclass
class PretrainedLoadReport:
    """What `load_pretrained_encoders` did, as lists of state-dict keys (model naming).

    Attributes:
        loaded: copied from the checkpoint.
        missing: encoder keys of the model that the checkpoint lacks (left as initialised).
        unexpected: encoder keys of the checkpoint that the model lacks (ignored).
        mismatched: keys in both whose shapes differ (left as initialised), key -> (checkpoint
            shape, model shape).
        skipped: checkpoint keys outside the requested prefixes (e.g. render head), ignored.
    """

    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: Dict[str, tuple] = field(default_factory=dict)
    skipped: List[str] = field(default_factory=list)


def _read_checkpoint(path: str) -> Mapping:
    local_path = PathManager.get_local_path(path)
    try:
        return torch.load(local_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # Checkpoints of this project hold tensors and plain containers only; anything else was
        # written by other code, which is trusted here as the user chose the file.
        logger.warning("Checkpoint %s holds objects beyond tensors and containers (%s); loading "
                       "it with weights_only=False", path, str(error).splitlines()[0])
        return torch.load(local_path, map_location="cpu", weights_only=False)


def _model_state(checkpoint: Mapping, source: str) -> Dict[str, torch.Tensor]:
    state = checkpoint
    for wrapper in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping):
        raise TypeError(f"Checkpoint {source}: expected a state dict (or a dict holding one under "
                        f"'model' / 'state_dict'), got {type(state).__name__}")
    tensors = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        name = key
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if name.startswith(prefix):
                    name, stripped = name[len(prefix):], True
        tensors[name] = value
    return tensors


def load_pretrained_encoders(
    model: nn.Module,
    path_or_state: Union[str, os.PathLike, Mapping],
    prefixes: Sequence[str] = ENCODER_PREFIXES,
) -> PretrainedLoadReport:
    """Copy the encoder weights of a checkpoint into `model` (non-strict, shape-checked).

    Args:
        model: the model to initialise (its state-dict keys follow the key contract above); a
            DistributedDataParallel wrapper is looked through.
        path_or_state: a checkpoint path (read with weights_only=True where possible) or an
            already loaded checkpoint / state dict.
        prefixes: key prefixes that are copied; everything else is skipped.
    Returns:
        a PretrainedLoadReport; a summary is logged.
    Raises:
        ValueError: when no tensor of the checkpoint fits the model under `prefixes`.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    is_path = isinstance(path_or_state, (str, os.PathLike))
    source = os.fspath(path_or_state) if is_path else "<state dict>"
    checkpoint = _read_checkpoint(source) if is_path else path_or_state
    checkpoint_state = _model_state(checkpoint, source)
    prefixes = tuple(prefixes)
    model_state = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}

    report = PretrainedLoadReport()
    to_load = {}
    for key, value in checkpoint_state.items():
        if not key.startswith(prefixes):
            report.skipped.append(key)
        elif key not in model_state:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(model_state[key].shape):
            report.mismatched[key] = (tuple(value.shape), tuple(model_state[key].shape))
        else:
            to_load[key] = value
            report.loaded.append(key)
    report.missing = [k for k in model_state if k not in checkpoint_state]

    if not to_load:
        raise ValueError(
            f"Checkpoint {source}: no tensor matches the model under prefixes {prefixes} "
            f"({len(checkpoint_state)} tensors in the checkpoint, e.g. "
            f"{sorted(checkpoint_state)[:3]}; model encoder keys e.g. {sorted(model_state)[:3]})"
        )
    model.load_state_dict(to_load, strict=False)

    logger.info("Loaded %d encoder tensors from %s (%d missing, %d unexpected, %d shape "
                "mismatches, %d outside %s skipped)", len(report.loaded), source,
                len(report.missing), len(report.unexpected), len(report.mismatched),
                len(report.skipped), "/".join(p.rstrip(".") for p in prefixes))
    for title, keys in (("Missing in the checkpoint", report.missing),
                        ("Not in the model", report.unexpected)):
        if keys:
            logger.warning("%s: %s", title, ", ".join(keys))
    for key, (saved, wanted) in report.mismatched.items():
        logger.warning("Shape mismatch for %s: checkpoint %s, model %s", key, saved, wanted)
    return report
