"""nuScenes-format data sets: per-sample dicts built through nuscenes-devkit, cached on disk.

One cache file holds every key frame of one version folder (e.g. `v1.0-trainval`); splits are
picked from it by scene name when a data set is read. The format of a dict is in docs/data.md.
Geometry is stored in the key frame's LiDAR frame (meters, radians); paths are stored relative to
the root and joined with it on load.
"""

import hashlib
import json
import logging
import os
import pickle
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from clap.data.catalog import DatasetCatalog
from clap.data.classes import DETECTION_CLASSES

__all__ = [
    "DETECTION_CLASSES",
    "CATEGORY_TO_DETECTION_CLASS",
    "LIDAR_CHANNEL",
    "available_splits",
    "split_scene_names",
    "build_dataset_dicts",
    "load_version_dicts",
    "load_nuscenes_dicts",
    "select_fraction",
    "dataset_name",
    "register_nuscenes",
    "register_all_nuscenes",
    "register_from_config",
]

logger = logging.getLogger(__name__)

# nuScenes category name -> detection class (the devkit's default mapping); categories not listed
# (animals, personal mobility, debris, ...) carry no detection label and their boxes are skipped.
CATEGORY_TO_DETECTION_CLASS = {
    "vehicle.car": "car",
    "vehicle.truck": "truck",
    "vehicle.construction": "construction_vehicle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.trailer": "trailer",
    "movable_object.barrier": "barrier",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.bicycle": "bicycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
}

LIDAR_CHANNEL = "LIDAR_TOP"
# Written into every cache file; bump it when the dict layout changes so old caches are rebuilt.
CACHE_FORMAT = "clap-nuscenes-dicts-v1"
# Sweeps stored per key frame in the cache (the mapper uses the first INPUT.NUM_SWEEPS of them).
DEFAULT_MAX_SWEEPS = 10

# cache file -> (source stamp, dicts with relative paths): avoids re-reading within a process.
_LOADED_CACHES: Dict[str, tuple] = {}
# data set name -> the arguments it was registered with.
_REGISTERED: Dict[str, tuple] = {}


# ---------------------------------------------------------------------------------------------
# Root, version and splits
# ---------------------------------------------------------------------------------------------
def _check_root(root: str) -> None:
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"nuScenes root '{root}' does not exist; expected a folder holding a version folder "
            "with the devkit's tables (e.g. 'v1.0-mini/'), 'samples/' and 'sweeps/'"
        )


def _found_versions(root: str) -> List[str]:
    """Folders of `root` that hold a scene.json."""
    _check_root(root)
    return sorted(
        d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "scene.json"))
    )


def _version_dir(root: str, version: str) -> str:
    """The table folder `root/version`, with an error naming what is missing."""
    _check_root(root)
    version_dir = os.path.join(root, version)
    if not os.path.isfile(os.path.join(version_dir, "scene.json")):
        raise FileNotFoundError(
            f"nuScenes version folder '{version_dir}' with scene.json not found; "
            f"version folders under '{root}': {_found_versions(root) or 'none'}"
        )
    return version_dir


def _scene_names(root: str, version: str) -> List[str]:
    """Names of the scenes in `root/version/scene.json`, in table order."""
    with open(os.path.join(_version_dir(root, version), "scene.json")) as f:
        return [scene["name"] for scene in json.load(f)]


def _custom_splits(root: str, version: str) -> Dict[str, List[str]]:
    """Splits from `root/version/splits.json` (the devkit's custom-split file), if present."""
    path = os.path.join(root, version, "splits.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        splits = json.load(f)
    if not isinstance(splits, dict) or not all(isinstance(v, list) for v in splits.values()):
        raise ValueError(f"{path}: expected a JSON object mapping split name -> list of scenes")
    return splits


def _official_splits() -> Dict[str, List[str]]:
    from nuscenes.utils.splits import create_splits_scenes

    return create_splits_scenes()


def split_scene_names(root: str, version: str, split: str) -> List[str]:
    """Scene names of `split` present under `root/version`.

    `split` is "all" (every scene of the version), a split of
    `nuscenes.utils.splits.create_splits_scenes()` (train, val, test, mini_train, mini_val, ...),
    or a split of the version's custom `splits.json`.
    """
    present = _scene_names(root, version)
    if split == "all":
        return present
    custom = _custom_splits(root, version)
    if split in custom:
        wanted = set(custom[split])
    else:
        official = _official_splits()
        if split not in official:
            raise KeyError(
                f"Unknown split '{split}' for {os.path.join(root, version)}; "
                f"available: {available_splits(root, version)}"
            )
        wanted = set(official[split])
    return [name for name in present if name in wanted]


def available_splits(root: str, version: str) -> List[str]:
    """Splits with at least one scene under `root/version`; "all" is always available.

    A root whose scenes are in no official or custom split list (e.g. a synthetic world with
    its own scene names) has "all" only.
    """
    present = set(_scene_names(root, version))
    splits = []
    for split, names in list(_official_splits().items()) + list(
        _custom_splits(root, version).items()
    ):
        if split not in splits and present.intersection(names):
            splits.append(split)
    return splits + ["all"]


# ---------------------------------------------------------------------------------------------
# Building the per-sample dicts
# ---------------------------------------------------------------------------------------------
def _pose_matrix(record: dict) -> np.ndarray:
    """4 x 4 float64 transform from a devkit record with `translation` and `rotation` (w, x, y, z)."""
    from nuscenes.utils.geometry_utils import transform_matrix
    from pyquaternion import Quaternion

    return transform_matrix(record["translation"], Quaternion(record["rotation"]))


def _sensor_to_global(nusc, sample_data: dict) -> np.ndarray:
    """sensor -> global (4 x 4) at the time of one sample_data record."""
    calibration = nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
    ego_pose = nusc.get("ego_pose", sample_data["ego_pose_token"])
    return _pose_matrix(ego_pose) @ _pose_matrix(calibration)


def _lidar_sweeps(nusc, lidar_record: dict, lidar2global: np.ndarray, max_sweeps: int) -> list:
    """Earlier LiDAR sweeps of a key frame, newest first, following the `prev` chain."""
    global2lidar = np.linalg.inv(lidar2global)
    sweeps = []
    record = lidar_record
    while len(sweeps) < max_sweeps and record["prev"]:
        record = nusc.get("sample_data", record["prev"])
        sweeps.append(
            {
                "path": record["filename"],
                "time_lag": 1e-6 * (lidar_record["timestamp"] - record["timestamp"]),
                "sweep2lidar": global2lidar @ _sensor_to_global(nusc, record),
            }
        )
    return sweeps


def _camera_entries(nusc, sample: dict, lidar2global: np.ndarray) -> dict:
    """Camera name -> path, intrinsics (3, 3), lidar2cam, lidar2img (4, 4), image_size (H, W)."""
    cameras = {}
    for channel, token in sample["data"].items():
        record = nusc.get("sample_data", token)
        if record["sensor_modality"] != "camera":
            continue
        calibration = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
        intrinsics = np.asarray(calibration["camera_intrinsic"], dtype=np.float64)
        if intrinsics.shape != (3, 3):
            raise ValueError(
                f"calibrated_sensor {calibration['token']} ({channel}): expected a 3 x 3 "
                f"camera_intrinsic, got shape {intrinsics.shape}"
            )
        lidar2cam = np.linalg.inv(_sensor_to_global(nusc, record)) @ lidar2global
        projection = np.eye(4)
        projection[:3, :3] = intrinsics
        cameras[channel] = {
            "path": record["filename"],
            "intrinsics": intrinsics,
            "lidar2cam": lidar2cam,
            "lidar2img": projection @ lidar2cam,
            "image_size": (int(record["height"]), int(record["width"])),
        }
    return cameras


def _ground_truth(nusc, sample: dict, global2lidar: np.ndarray) -> dict:
    """Boxes (M, 9) in the LiDAR frame, labels (M,) and num_lidar_pts (M,) of one sample."""
    rotation = global2lidar[:3, :3]
    boxes, labels, num_points = [], [], []
    for token in sample["anns"]:
        annotation = nusc.get("sample_annotation", token)
        detection_class = CATEGORY_TO_DETECTION_CLASS.get(annotation["category_name"])
        if detection_class is None:
            continue
        box = nusc.get_box(token)
        centre = rotation @ box.center + global2lidar[:3, 3]
        box_rotation = rotation @ box.rotation_matrix
        yaw = np.arctan2(box_rotation[1, 0], box_rotation[0, 0])
        velocity = np.nan_to_num(nusc.box_velocity(token), nan=0.0)
        velocity = rotation @ velocity
        width, length, height = box.wlh
        boxes.append([*centre, length, width, height, yaw, velocity[0], velocity[1]])
        labels.append(DETECTION_CLASSES.index(detection_class))
        num_points.append(annotation["num_lidar_pts"])
    return {
        "gt_boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 9),
        "gt_labels": np.asarray(labels, dtype=np.int64),
        "num_lidar_pts": np.asarray(num_points, dtype=np.int64),
    }


def _sample_dict(nusc, sample: dict, max_sweeps: int) -> dict:
    if LIDAR_CHANNEL not in sample["data"]:
        raise ValueError(
            f"sample {sample['token']} has no {LIDAR_CHANNEL} sample_data; expected one key-frame "
            f"{LIDAR_CHANNEL} record per sample, found channels {sorted(sample['data'])}"
        )
    lidar_record = nusc.get("sample_data", sample["data"][LIDAR_CHANNEL])
    calibration = nusc.get("calibrated_sensor", lidar_record["calibrated_sensor_token"])
    ego_pose = nusc.get("ego_pose", lidar_record["ego_pose_token"])
    lidar2ego, ego2global = _pose_matrix(calibration), _pose_matrix(ego_pose)
    lidar2global = ego2global @ lidar2ego
    scene = nusc.get("scene", sample["scene_token"])
    return {
        "sample_token": sample["token"],
        "scene_token": sample["scene_token"],
        "scene_name": scene["name"],
        "timestamp": int(sample["timestamp"]),
        "lidar_path": lidar_record["filename"],
        "sweeps": _lidar_sweeps(nusc, lidar_record, lidar2global, max_sweeps),
        "cameras": _camera_entries(nusc, sample, lidar2global),
        "lidar2ego": lidar2ego,
        "ego2global": ego2global,
        **_ground_truth(nusc, sample, np.linalg.inv(lidar2global)),
    }


def build_dataset_dicts(nusc, max_sweeps: int = DEFAULT_MAX_SWEEPS) -> List[dict]:
    """Per-sample dicts (paths relative to the root) for every sample of a devkit `NuScenes`.

    Samples are ordered by scene (table order), then by time.
    """
    scene_order = {scene["token"]: i for i, scene in enumerate(nusc.scene)}
    samples = sorted(nusc.sample, key=lambda s: (scene_order[s["scene_token"]], s["timestamp"]))
    return [
        _sample_dict(nusc, sample, max_sweeps)
        for sample in tqdm(samples, desc=f"nuScenes {nusc.version} samples", leave=False)
    ]


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def _source_stamp(version_dir: str) -> dict:
    """Table file name -> (mtime in ns, size in bytes): a cache is stale when this changes."""
    stamp = {}
    for name in sorted(os.listdir(version_dir)):
        if name.endswith(".json"):
            info = os.stat(os.path.join(version_dir, name))
            stamp[name] = (info.st_mtime_ns, info.st_size)
    return stamp


def _cache_path(root: str, version: str, cache_dir: str, max_sweeps: int) -> str:
    key = hashlib.sha1(f"{os.path.realpath(root)}|{max_sweeps}".encode()).hexdigest()[:12]
    return os.path.join(cache_dir, f"nuscenes_{version}_{key}.pkl")


def _read_cache(path: str, expected: dict) -> Optional[List[dict]]:
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            content = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as error:
        logger.warning("Ignoring unreadable cache %s (%s); rebuilding it", path, error)
        return None
    if not isinstance(content, dict) or any(content.get(k) != v for k, v in expected.items()):
        logger.info("Cache %s is stale; rebuilding it", path)
        return None
    return content["dicts"]


def _write_cache(path: str, header: dict, dicts: List[dict]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "wb") as f:
        pickle.dump({**header, "dicts": dicts}, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


def load_version_dicts(
    root: str, version: str, cache_dir: str, max_sweeps: int = DEFAULT_MAX_SWEEPS
) -> List[dict]:
    """Every sample of `root/version` as dicts with relative paths, through the on-disk cache.

    The cache file under `cache_dir` carries a format stamp, the root, `max_sweeps` and the
    mtime/size of every table file; it is rebuilt (through nuscenes-devkit) when any differs.
    """
    version_dir = _version_dir(root, version)
    header = {
        "format": CACHE_FORMAT,
        "root": os.path.realpath(root),
        "version": version,
        "max_sweeps": int(max_sweeps),
        "source": _source_stamp(version_dir),
    }
    path = _cache_path(root, version, cache_dir, max_sweeps)
    loaded = _LOADED_CACHES.get(path)
    if loaded is not None and loaded[0] == header:
        return loaded[1]
    dicts = _read_cache(path, header)
    if dicts is None:
        from nuscenes.nuscenes import NuScenes

        logger.info("Building the sample cache of %s into %s", version_dir, path)
        nusc = NuScenes(version=version, dataroot=root, verbose=False)
        dicts = build_dataset_dicts(nusc, max_sweeps)
        _write_cache(path, header, dicts)
    _LOADED_CACHES[path] = (header, dicts)
    return dicts


def _with_root(dataset_dict: dict, root: str) -> dict:
    """A copy of a cached dict whose paths are joined with `root`."""
    result = dict(dataset_dict)
    result["lidar_path"] = os.path.join(root, dataset_dict["lidar_path"])
    result["sweeps"] = [
        {**sweep, "path": os.path.join(root, sweep["path"])} for sweep in dataset_dict["sweeps"]
    ]
    result["cameras"] = {
        name: {**camera, "path": os.path.join(root, camera["path"])}
        for name, camera in dataset_dict["cameras"].items()
    }
    return result


def load_nuscenes_dicts(
    root: str,
    version: str,
    split: str,
    cache_dir: str,
    max_sweeps: int = DEFAULT_MAX_SWEEPS,
) -> List[dict]:
    """The per-sample dicts (docs/data.md) of one split, with paths under `root`."""
    scenes = set(split_scene_names(root, version, split))
    dicts = load_version_dicts(root, version, cache_dir, max_sweeps)
    return [_with_root(d, root) for d in dicts if d["scene_name"] in scenes]


def select_fraction(dataset_dicts: Sequence[dict], fraction: float, seed: int) -> List[dict]:
    """A seeded random subset of `round(fraction * len)` dicts (at least one), in input order.

    For one seed, the subset of a smaller fraction is contained in that of a larger one.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"DATASETS.TRAIN_FRACTION must be in (0, 1], got {fraction}")
    if fraction == 1.0 or not dataset_dicts:
        return list(dataset_dicts)
    count = max(1, int(round(fraction * len(dataset_dicts))))
    order = np.random.default_rng(seed).permutation(len(dataset_dicts))
    return [dataset_dicts[i] for i in sorted(order[:count])]


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------
def dataset_name(version: str, split: str) -> str:
    """Catalog name of a split, e.g. `nuscenes_v1.0-mini_train`."""
    return f"nuscenes_{version}_{split}"


def register_nuscenes(
    name: str,
    root: str,
    version: str,
    split: str,
    cache_dir: str = "datasets/cache",
    max_sweeps: int = DEFAULT_MAX_SWEEPS,
    fraction: float = 1.0,
    fraction_seed: int = 0,
) -> None:
    """Register `name` in `DatasetCatalog` as the split `split` of `root/version`.

    Nothing is read until the data set is requested. `fraction` < 1 keeps a seeded subset
    (`select_fraction`). Registering a name again with the same arguments does nothing; with
    other arguments it replaces the earlier registration.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"DATASETS.TRAIN_FRACTION must be in (0, 1], got {fraction} for {name}")
    arguments = (root, version, split, cache_dir, int(max_sweeps), float(fraction), fraction_seed)
    if _REGISTERED.get(name) == arguments and name in DatasetCatalog:
        return
    if name in DatasetCatalog:
        logger.info("Re-registering data set %s with %s", name, arguments)
        DatasetCatalog.remove(name)

    def load() -> List[dict]:
        dicts = load_nuscenes_dicts(root, version, split, cache_dir, max_sweeps)
        return select_fraction(dicts, fraction, fraction_seed)

    DatasetCatalog.register(name, load)
    _REGISTERED[name] = arguments


def register_all_nuscenes(
    root: str,
    versions: Optional[Sequence[str]] = None,
    cache_dir: str = "datasets/cache",
    max_sweeps: int = DEFAULT_MAX_SWEEPS,
) -> List[str]:
    """Register every available split (`available_splits`) of each version under `root`.

    `versions` defaults to every folder of `root` holding a scene.json. Returns the names.
    """
    if versions is None:
        versions = _found_versions(root)
        if not versions:
            raise FileNotFoundError(
                f"No version folder (a folder with the devkit's scene.json, e.g. 'v1.0-mini/') "
                f"under nuScenes root '{root}'"
            )
    names = []
    for version in versions:
        for split in available_splits(root, version):
            name = dataset_name(version, split)
            register_nuscenes(name, root, version, split, cache_dir, max_sweeps)
            names.append(name)
    return names


def register_from_config(cfg) -> List[str]:
    """Register the splits of `DATASETS.ROOT` / `DATASETS.VERSION` (all versions when empty).

    Data sets named in `DATASETS.TRAIN` are registered with `DATASETS.TRAIN_FRACTION` and
    `DATASETS.TRAIN_FRACTION_SEED`. Returns the registered names.
    """
    root, cache_dir = cfg.DATASETS.ROOT, cfg.DATASETS.CACHE_DIR
    max_sweeps = max(DEFAULT_MAX_SWEEPS, int(cfg.INPUT.NUM_SWEEPS))
    versions = [cfg.DATASETS.VERSION] if cfg.DATASETS.VERSION else None
    names = register_all_nuscenes(root, versions, cache_dir, max_sweeps)
    for name in cfg.DATASETS.TRAIN:
        if name in names and cfg.DATASETS.TRAIN_FRACTION != 1.0:
            version, split = _REGISTERED[name][1:3]
            register_nuscenes(
                name,
                root,
                version,
                split,
                cache_dir,
                max_sweeps,
                cfg.DATASETS.TRAIN_FRACTION,
                cfg.DATASETS.TRAIN_FRACTION_SEED,
            )
    return names
