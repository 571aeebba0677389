"""nuScenes devkit table records (the thirteen `<version>/*.json` tables).

Tokens are 32 hex digits from an md5 of the record's identity (`make_token`), so the same
arguments give the same tokens. Scene names come from the devkit's own split lists, so that
`nuscenes.utils.splits.create_splits_scenes()` puts synthetic scenes into train and val.
"""

import hashlib
from typing import Dict, List, Sequence, Tuple

from nuscenes.utils import splits

from .constants import ATTRIBUTE_NAMES, CLASS_SPECS, RIG, SENSOR_CHANNELS, VISIBILITY_LEVELS
from .sensors import scaled_intrinsic

SUPPORTED_VERSIONS = ("v1.0-mini", "v1.0-trainval")
# The thirteen tables the devkit loads.
TABLE_NAMES = (
    "attribute",
    "calibrated_sensor",
    "category",
    "ego_pose",
    "instance",
    "log",
    "map",
    "sample",
    "sample_annotation",
    "sample_data",
    "scene",
    "sensor",
    "visibility",
)


def make_token(*parts) -> str:
    """Deterministic 32-hex-digit token of `parts`."""
    return hashlib.md5("/".join(str(p) for p in parts).encode("utf-8")).hexdigest()


def scene_names(version: str, num_scenes: int) -> List[Tuple[str, str]]:
    """(scene name, split) for each scene: every fifth scene (the 2nd, 7th, ...) goes to the
    validation split, the others to train, using the devkit's scene names of that split; when a
    split's names run out the other split is used."""
    if version == "v1.0-mini":
        pools = {"train": list(splits.mini_train), "val": list(splits.mini_val)}
        split_names = {"train": "mini_train", "val": "mini_val"}
    elif version == "v1.0-trainval":
        pools = {"train": list(splits.train), "val": list(splits.val)}
        split_names = {"train": "train", "val": "val"}
    else:
        raise ValueError(f"Unsupported version '{version}', expected one of {SUPPORTED_VERSIONS}")
    capacity = len(pools["train"]) + len(pools["val"])
    if not 1 <= num_scenes <= capacity:
        raise ValueError(f"{version} has scene names for 1..{capacity} scenes, got {num_scenes}")
    out = []
    used = {"train": 0, "val": 0}
    for index in range(num_scenes):
        split = "val" if index % 5 == 1 else "train"
        if used[split] >= len(pools[split]):
            split = "train" if split == "val" else "val"
        out.append((pools[split][used[split]], split_names[split]))
        used[split] += 1
    return out


def _named(table: str, names: Sequence[str]) -> List[dict]:
    return [{"token": make_token(table, name), "name": name, "description": name} for name in names]


def category_records() -> List[dict]:
    records = _named("category", [spec["category"] for spec in CLASS_SPECS.values()])
    for index, record in enumerate(records):
        record["index"] = index
    return records


def attribute_records() -> List[dict]:
    return _named("attribute", ATTRIBUTE_NAMES)


def visibility_records() -> List[dict]:
    return [
        {"token": token, "level": level, "description": level} for token, level in VISIBILITY_LEVELS
    ]


def sensor_records() -> List[dict]:
    return [
        {
            "token": make_token("sensor", channel),
            "channel": channel,
            "modality": "lidar" if channel.startswith("LIDAR") else "camera",
        }
        for channel in SENSOR_CHANNELS
    ]


def calibrated_sensor_records(width: int, height: int) -> List[dict]:
    """One calibration per channel, camera intrinsics for width x height images."""
    records = []
    for channel in SENSOR_CHANNELS:
        rig = RIG[channel]
        intrinsic = (
            [] if rig["intrinsic"] is None else scaled_intrinsic(channel, width, height).tolist()
        )
        records.append(
            {
                "token": calibrated_sensor_token(channel, width, height),
                "sensor_token": make_token("sensor", channel),
                "translation": [float(v) for v in rig["translation"]],
                "rotation": [float(v) for v in rig["rotation"]],
                "camera_intrinsic": intrinsic,
            }
        )
    return records


def calibrated_sensor_token(channel: str, width: int, height: int) -> str:
    return make_token("calibrated_sensor", channel, width, height)


def visibility_token(fraction: float) -> str:
    """nuScenes visibility bin ("1".."4") of the visible fraction of an object."""
    for token, upper in (("1", 0.4), ("2", 0.6), ("3", 0.8)):
        if fraction <= upper:
            return token
    return "4"


def attribute_tokens_by_name() -> Dict[str, str]:
    return {r["name"]: r["token"] for r in attribute_records()}


def category_tokens_by_class() -> Dict[str, str]:
    return {
        class_name: make_token("category", spec["category"])
        for class_name, spec in CLASS_SPECS.items()
    }
