"""Per-frame features of frozen encoders, computed once and stored on disk.

Layout: `<root>/meta.json` (what the features depend on, see `FeatureCache`) and
`<root>/<group>/<sample_token>.pt`, one file per frame and group (e.g. "train" and "test", whose
mappers differ), holding {"features": nested dict of tensors, "sample": the frame's other model
inputs (`SAMPLE_KEYS`)}. A frame is encoded alone (batch of one), so the first dimension of every
feature tensor is that frame's share of a batch (1 for a volume, N_cam for per-camera maps), and
`collate_cached` concatenates frames along it.
"""

import functools
import json
import logging
import os
from typing import Callable, Dict, List, Mapping, Sequence

import torch
from tqdm import tqdm

from clap.checkpoint import atomic_write

__all__ = ["SAMPLE_KEYS", "FeatureCache", "collate_cached"]

# Under "clap" so the handlers of clap's logger (console, log.txt) show it.
logger = logging.getLogger("clap.probe")

# Mapped-sample entries a cached frame keeps besides its features: what the layers after the
# cut, the loss and the evaluator read.
SAMPLE_KEYS = ("sample_token", "image_size", "lidar2img", "aug_matrix", "lidar2ego", "ego2global",
               "gt_boxes", "gt_labels")
# Per-sample matrices, stacked into (B, ...) by `collate_cached`.
_STACKED_KEYS = ("lidar2img", "aug_matrix", "lidar2ego", "ego2global")


def _detached(value):
    """`value` (a tensor, None or a nested dict of them) on the CPU, without autograd history."""
    if value is None:
        return None
    if torch.is_tensor(value):
        return value.detach().cpu().contiguous()
    if isinstance(value, Mapping):
        return {key: _detached(item) for key, item in value.items()}
    raise TypeError(f"Cached features must be tensors, None or dicts of them, got "
                    f"{type(value).__name__}")


def _concatenated(values: Sequence):
    """Frames' features (same nested structure) concatenated along dim 0."""
    first = values[0]
    if first is None:
        return None
    if torch.is_tensor(first):
        return torch.cat(values)
    return {key: _concatenated([v[key] for v in values]) for key in first}


class FeatureCache:
    """Features of one set of frozen encoders, keyed by frame.

    Args:
        root: folder of the cache (created on first use).
        identity: JSON-serialisable description of what the features depend on (checkpoint,
            encoder seed, input and encoder config). A cache written under another identity
            is refused, so features of one method never stand in for another's.
    Raises:
        ValueError: naming `root/meta.json` when it holds another identity.
    """

    def __init__(self, root: str, identity: Mapping):
        self.root = root
        self.identity = json.loads(json.dumps(dict(identity), sort_keys=True))
        meta_path = os.path.join(root, "meta.json")
        if os.path.isfile(meta_path):
            with open(meta_path) as f:
                stored = json.load(f)
            if stored != self.identity:
                raise ValueError(
                    f"{meta_path} describes other features ({stored}) than this run's "
                    f"({self.identity}); give this run its own cache folder")
        else:
            os.makedirs(root, exist_ok=True)
            text = json.dumps(self.identity, indent=2, sort_keys=True)
            atomic_write(meta_path, lambda f: f.write(text), mode="w")

    def path(self, group: str, token: str) -> str:
        return os.path.join(self.root, group, f"{token}.pt")

    def missing(self, group: str, tokens: Sequence[str]) -> List[str]:
        """The tokens of `tokens` without a cached frame in `group`."""
        return [t for t in tokens if not os.path.isfile(self.path(group, t))]

    @torch.no_grad()
    def fill(self, group: str, dataset_dicts: Sequence[dict], mapper: Callable[[dict], dict],
             collate: Callable[[List[dict]], dict], encode: Callable[[dict], dict],
             progress: bool = True) -> int:
        """Encode and store every frame of `dataset_dicts` not cached yet in `group`.

        Args:
            dataset_dicts: sample dicts (with "sample_token").
            mapper: sample dict -> model inputs of the frame (no random augmentation: the
                features are computed once).
            collate: list of mapped frames -> batch (called with one frame).
            encode: batch of one frame -> nested dict of feature tensors (or None entries).
        Returns:
            the number of frames encoded.
        """
        todo = [d for d in dataset_dicts if not os.path.isfile(self.path(group, d["sample_token"]))]
        bar = tqdm(todo, desc=f"feature cache ({group})", disable=not (progress and todo),
                   leave=False)
        for dataset_dict in bar:
            sample = mapper(dataset_dict)
            features = _detached(encode(collate([sample])))
            entry = {"features": features,
                     "sample": {k: _detached(sample[k]) if torch.is_tensor(sample[k]) else sample[k]
                                for k in SAMPLE_KEYS if k in sample}}
            path = self.path(group, dataset_dict["sample_token"])
            atomic_write(path, lambda f, entry=entry: torch.save(entry, f))
        if todo:
            logger.info("Cached the features of %d frame(s) in %s", len(todo),
                        os.path.join(self.root, group))
        return len(todo)

    def load(self, group: str, token: str) -> dict:
        """The cached entry {"features", "sample"} of one frame.

        Raises:
            FileNotFoundError: naming the file when the frame is not cached.
        """
        path = self.path(group, token)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Frame {token} is not in the feature cache: {path}")
        return torch.load(path, map_location="cpu", weights_only=True)

    def mapper(self, group: str) -> Callable[[dict], dict]:
        """sample dict -> its cached entry in `group` (the mapper of a data loader)."""
        return functools.partial(_load_by_token, self, group)


def _load_by_token(cache: FeatureCache, group: str, dataset_dict: dict) -> dict:
    return cache.load(group, dataset_dict["sample_token"])


def collate_cached(entries: Sequence[dict], features_key: str = "backbone_features") -> dict:
    """Cached frames -> one batch: the frames' features under `features_key` (concatenated along
    dim 0), `batch_size`, and their `SAMPLE_KEYS` (matrices stacked to (B, ...), boxes, labels
    and tokens as lists, the common `image_size`).

    Raises:
        ValueError: for no frames, or frames of different image sizes.
    """
    if not entries:
        raise ValueError("collate_cached needs at least one frame")
    samples = [e["sample"] for e in entries]
    batch: Dict[str, object] = {
        features_key: _concatenated([e["features"] for e in entries]),
        "batch_size": len(entries),
    }
    for key in SAMPLE_KEYS:
        if key not in samples[0]:
            continue
        values = [s[key] for s in samples]
        if key in _STACKED_KEYS:
            batch[key] = torch.stack(values)
        elif key == "image_size":
            sizes = {tuple(v) for v in values}
            if len(sizes) != 1:
                raise ValueError(f"Cached frames have different image sizes {sorted(sizes)}")
            batch[key] = sizes.pop()
        else:
            batch[key] = values
    return batch

