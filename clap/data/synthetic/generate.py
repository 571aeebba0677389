"""Generate a synthetic data set in the nuScenes layout (see docs/synthetic.md).

`generate_dataset` lays out each scene (`world.build_world`), renders the key-frame LiDAR
sweeps, the non-key sweeps and the six cameras with Embree, and writes the files and the
thirteen devkit tables. Output depends only on the arguments: every random draw comes from a
generator seeded by (seed, scene index, attempt, ...), JSON keys are sorted, tokens are hashes,
timestamps start at a fixed date.
"""

import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from . import tables
from .annotations import box_values, count_points_in_boxes, surface_samples, visible_fraction
from .constants import (
    ANNOTATION_RANGE,
    BASE_TIMESTAMP_US,
    CAMERA_CHANNELS,
    CLASS_EVAL_RANGE,
    DETECTION_CLASSES,
    LIDAR_CHANNEL,
    LIDAR_RANGE_NOISE,
    MAX_SWEEPS_PER_INTERVAL,
    SAMPLE_INTERVAL,
    SCENE_TIME_GAP_US,
    SWEEP_INTERVAL,
)
from .geometry import yaw_pose_matrix, yaw_to_quaternion
from .raycast import MeshCaster
from .sensors import Camera, Lidar, image_size, make_cameras
from .world import SceneWorld, build_world
from .writer import DatasetWriter

# Layout attempts per scene until every detection class has a box with LiDAR points within
# its evaluation range (the last attempt is kept otherwise).
MAX_LAYOUT_ATTEMPTS = 5


@dataclass
class _KeyFrame:
    index: int
    time: float  # seconds from the first key frame
    timestamp: int  # microseconds
    ego2world: np.ndarray
    ego_pose: Tuple[float, float, float]
    points: np.ndarray  # (N, 5) float32
    dynamic: MeshCaster
    boxes: Dict[int, Tuple[list, list, list]]  # object index -> (translation, size, rotation)
    num_points: Dict[int, int]


def _ego_pose_record(token: str, timestamp: int, pose: Tuple[float, float, float]) -> dict:
    x, y, yaw = pose
    return {
        "token": token,
        "timestamp": int(timestamp),
        "translation": [x, y, 0.0],
        "rotation": list(yaw_to_quaternion(yaw)),
    }


class _SceneGenerator:
    """Renders and writes one scene; collects its table records."""

    def __init__(
        self,
        scene_index: int,
        name: str,
        seed: int,
        version: str,
        num_samples: int,
        num_sweeps: int,
        cameras: Dict[str, Camera],
        lidar: Lidar,
        range_noise: float,
        calibrations: Dict[str, dict],
        writer: DatasetWriter,
        debug_depth: bool,
    ):
        self.scene_index = scene_index
        self.name = name
        self.seed = seed
        self.version = version
        self.num_samples = num_samples
        self.num_sweeps = num_sweeps
        self.cameras = cameras
        self.lidar = lidar
        self.range_noise = range_noise
        self.calibrations = calibrations
        self.writer = writer
        self.debug_depth = debug_depth
        self.scene_token = tables.make_token(seed, version, "scene", scene_index)
        self.log_token = tables.make_token(seed, version, "log", scene_index)
        self.map_token = tables.make_token(seed, version, "map", scene_index)
        self.start_us = BASE_TIMESTAMP_US + scene_index * SCENE_TIME_GAP_US
        self.logfile = f"syn-{seed}-scene{scene_index:04d}"
        self.records: Dict[str, List[dict]] = {
            k: []
            for k in (
                "ego_pose",
                "sample",
                "sample_data",
                "sample_annotation",
                "instance",
                "scene",
                "log",
                "map",
            )
        }

    def token(self, *parts) -> str:
        return tables.make_token(self.seed, self.version, self.scene_index, *parts)

    def rng(self, *parts) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.scene_index, *parts])

    # -- layout ---------------------------------------------------------------------------------
    def layout(self) -> Tuple[SceneWorld, MeshCaster, List[_KeyFrame], int]:
        """World and key-frame LiDAR of the first layout attempt that covers every class."""
        best = None
        for attempt in range(MAX_LAYOUT_ATTEMPTS):
            world = build_world(self.rng(attempt, 0), self.num_samples)
            static = MeshCaster(world.static_mesh)
            keyframes = [self._keyframe(world, static, attempt, i) for i in range(self.num_samples)]
            covered = self._covered_classes(world, keyframes)
            if best is None or len(covered) > best[0]:
                best = (len(covered), world, static, keyframes, attempt)
            if len(covered) == len(DETECTION_CLASSES):
                break
        return best[1], best[2], best[3], best[4]

    def _keyframe(
        self, world: SceneWorld, static: MeshCaster, attempt: int, index: int
    ) -> _KeyFrame:
        time = index * SAMPLE_INTERVAL
        timestamp = self.start_us + int(round(time * 1e6))
        pose = world.ego_pose(time)
        ego2world = yaw_pose_matrix(pose[0], pose[1], 0.0, pose[2])
        dynamic = MeshCaster(world.dynamic_mesh(time))
        points = self.lidar.scan(
            world, static, dynamic, ego2world, self.rng(attempt, 1, index, 0), self.range_noise
        )
        boxes = {}
        for obj_index, obj in enumerate(world.objects):
            x, y, yaw = world.object_pose(obj_index, time)
            if np.hypot(x - pose[0], y - pose[1]) <= ANNOTATION_RANGE:
                boxes[obj_index] = box_values(obj.size_lwh, x, y, obj.z, yaw)
        lidar_pose = _ego_pose_record("", timestamp, pose)
        counts = count_points_in_boxes(
            points, list(boxes.values()), lidar_pose, self.calibrations[LIDAR_CHANNEL]
        )
        return _KeyFrame(
            index,
            time,
            timestamp,
            ego2world,
            pose,
            points,
            dynamic,
            boxes,
            dict(zip(boxes, counts)),
        )

    @staticmethod
    def _covered_classes(world: SceneWorld, keyframes: List[_KeyFrame]) -> set:
        covered = set()
        for kf in keyframes:
            for obj_index, (translation, _, _) in kf.boxes.items():
                class_name = world.objects[obj_index].class_name
                dist = np.hypot(translation[0] - kf.ego_pose[0], translation[1] - kf.ego_pose[1])
                if kf.num_points[obj_index] > 0 and dist < CLASS_EVAL_RANGE[class_name]:
                    covered.add(class_name)
        return covered

    # -- rendering and records -------------------------------------------------------------------
    def run(self, progress: Optional[tqdm] = None) -> Dict[str, List[dict]]:
        world, static, keyframes, attempt = self.layout()
        self.writer.write_map(self.map_token, world.map_mask)
        samples_rng = self.rng(attempt, 2)
        object_samples = {
            i: surface_samples(o.mesh, samples_rng) for i, o in enumerate(world.objects)
        }
        sample_tokens = [self.token("sample", i) for i in range(self.num_samples)]
        lidar_chain: List[dict] = []
        camera_chains: Dict[str, List[dict]] = {c: [] for c in CAMERA_CHANNELS}
        annotations_by_object: Dict[int, List[dict]] = {}
        for kf in keyframes:
            sample_token = sample_tokens[kf.index]
            # Non-key sweeps leading up to this key frame (none before the first one).
            if kf.index > 0:
                for j in range(self.num_sweeps, 0, -1):
                    lidar_chain.append(self._sweep(world, static, attempt, kf, j, sample_token))
            lidar_chain.append(self._lidar_record(kf, sample_token))
            frames = {}
            for channel, camera in self.cameras.items():
                frame = camera.render(world, static, kf.dynamic, kf.ego2world)
                frames[channel] = frame
                camera_chains[channel].append(
                    self._camera_record(channel, camera, kf, frame, sample_token)
                )
            visibility = self._visibility(world, kf, object_samples, frames)
            for obj_index, (translation, size, rotation) in kf.boxes.items():
                annotations_by_object.setdefault(obj_index, []).append(
                    {
                        "token": self.token("annotation", obj_index, kf.index),
                        "sample_token": sample_token,
                        "instance_token": self.token("instance", obj_index),
                        "visibility_token": tables.visibility_token(visibility[obj_index]),
                        "attribute_tokens": self._attributes(world, obj_index),
                        "translation": translation,
                        "size": size,
                        "rotation": rotation,
                        "num_lidar_pts": kf.num_points[obj_index],
                        "num_radar_pts": 0,
                        "prev": "",
                        "next": "",
                    }
                )
            kf.dynamic = None  # free the per-instant Embree scene
            if progress is not None:
                progress.update(1)
        self._link(lidar_chain)
        for chain in camera_chains.values():
            self._link(chain)
        self.records["sample_data"] = lidar_chain + [
            r for c in CAMERA_CHANNELS for r in camera_chains[c]
        ]
        self._samples(sample_tokens, keyframes)
        self._instances(world, annotations_by_object)
        self._scene_log_map(world, sample_tokens)
        return self.records

    def _filename(self, folder: str, channel: str, timestamp: int, ext: str) -> str:
        return f"{folder}/{channel}/{self.logfile}__{channel}__{timestamp}.{ext}"

    def _lidar_record(self, kf: _KeyFrame, sample_token: str) -> dict:
        filename = self._filename("samples", LIDAR_CHANNEL, kf.timestamp, "pcd.bin")
        self.writer.write_points(filename, kf.points)
        token = self.token("sample_data", LIDAR_CHANNEL, kf.index)
        self.records["ego_pose"].append(_ego_pose_record(token, kf.timestamp, kf.ego_pose))
        return self._sample_data(
            token, sample_token, LIDAR_CHANNEL, kf.timestamp, "pcd", True, 0, 0, filename
        )

    def _sweep(
        self,
        world: SceneWorld,
        static: MeshCaster,
        attempt: int,
        kf: _KeyFrame,
        steps_before: int,
        sample_token: str,
    ) -> dict:
        time = kf.time - steps_before * SWEEP_INTERVAL
        timestamp = kf.timestamp - int(round(steps_before * SWEEP_INTERVAL * 1e6))
        pose = world.ego_pose(time)
        ego2world = yaw_pose_matrix(pose[0], pose[1], 0.0, pose[2])
        dynamic = MeshCaster(world.dynamic_mesh(time))
        points = self.lidar.scan(
            world,
            static,
            dynamic,
            ego2world,
            self.rng(attempt, 1, kf.index, steps_before),
            self.range_noise,
        )
        filename = self._filename("sweeps", LIDAR_CHANNEL, timestamp, "pcd.bin")
        self.writer.write_points(filename, points)
        token = self.token("sample_data", LIDAR_CHANNEL, kf.index, "sweep", steps_before)
        self.records["ego_pose"].append(_ego_pose_record(token, timestamp, pose))
        return self._sample_data(
            token, sample_token, LIDAR_CHANNEL, timestamp, "pcd", False, 0, 0, filename
        )

    def _camera_record(
        self, channel: str, camera: Camera, kf: _KeyFrame, frame, sample_token: str
    ) -> dict:
        filename = self._filename("samples", channel, kf.timestamp, "jpg")
        self.writer.write_image(filename, frame.rgb)
        if self.debug_depth:
            self.writer.write_depth(filename, frame.depth)
        token = self.token("sample_data", channel, kf.index)
        self.records["ego_pose"].append(_ego_pose_record(token, kf.timestamp, kf.ego_pose))
        return self._sample_data(
            token,
            sample_token,
            channel,
            kf.timestamp,
            "jpg",
            True,
            camera.width,
            camera.height,
            filename,
        )

    def _sample_data(
        self, token, sample_token, channel, timestamp, fileformat, key, width, height, filename
    ) -> dict:
        return {
            "token": token,
            "sample_token": sample_token,
            "ego_pose_token": token,
            "calibrated_sensor_token": self.calibrations[channel]["token"],
            "timestamp": int(timestamp),
            "fileformat": fileformat,
            "is_key_frame": key,
            "height": int(height),
            "width": int(width),
            "filename": filename,
            "prev": "",
            "next": "",
        }

    @staticmethod
    def _link(chain: List[dict]) -> None:
        """Set prev / next along a list of records in time order."""
        for prev, nxt in zip(chain[:-1], chain[1:]):
            prev["next"] = nxt["token"]
            nxt["prev"] = prev["token"]

    def _visibility(self, world: SceneWorld, kf: _KeyFrame, object_samples, frames):
        indices = list(kf.boxes)
        poses = {}
        for i in indices:
            x, y, yaw = world.object_pose(i, kf.time)
            poses[i] = (x, y, world.objects[i].z, yaw)
        return visible_fraction(
            {i: object_samples[i] for i in indices}, poses, self.cameras, frames, kf.ego2world
        )

    @staticmethod
    def _attributes(world: SceneWorld, obj_index: int) -> List[str]:
        attribute = world.objects[obj_index].attribute
        return [] if attribute is None else [tables.attribute_tokens_by_name()[attribute]]

    def _samples(self, sample_tokens: List[str], keyframes: List[_KeyFrame]) -> None:
        samples = [
            {
                "token": tok,
                "timestamp": kf.timestamp,
                "prev": "",
                "next": "",
                "scene_token": self.scene_token,
            }
            for tok, kf in zip(sample_tokens, keyframes)
        ]
        self._link(samples)
        self.records["sample"] = samples

    def _instances(self, world: SceneWorld, annotations_by_object: Dict[int, List[dict]]):
        category_tokens = tables.category_tokens_by_class()
        for obj_index in sorted(annotations_by_object):
            chain = annotations_by_object[obj_index]
            self._link(chain)
            self.records["sample_annotation"].extend(chain)
            self.records["instance"].append(
                {
                    "token": self.token("instance", obj_index),
                    "category_token": category_tokens[world.objects[obj_index].class_name],
                    "nbr_annotations": len(chain),
                    "first_annotation_token": chain[0]["token"],
                    "last_annotation_token": chain[-1]["token"],
                }
            )

    def _scene_log_map(self, world: SceneWorld, sample_tokens: List[str]) -> None:
        self.records["scene"].append(
            {
                "token": self.scene_token,
                "log_token": self.log_token,
                "nbr_samples": len(sample_tokens),
                "first_sample_token": sample_tokens[0],
                "last_sample_token": sample_tokens[-1],
                "name": self.name,
                "description": _describe(world),
            }
        )
        date = "2018-08-01"
        self.records["log"].append(
            {
                "token": self.log_token,
                "logfile": self.logfile,
                "vehicle": "synthetic",
                "date_captured": date,
                "location": "synthetic-city",
            }
        )
        self.records["map"].append(
            {
                "token": self.map_token,
                "log_tokens": [self.log_token],
                "category": "semantic_prior",
                "filename": f"maps/{self.map_token}.png",
            }
        )


@dataclass
class SceneJob:
    """Everything one scene's generation depends on."""

    scene_index: int
    name: str
    seed: int
    version: str
    num_samples: int
    num_sweeps: int
    width: int
    height: int
    range_noise: float
    out_dir: str
    debug_depth: bool


def run_scene(job: SceneJob, progress: Optional[tqdm] = None) -> Dict[str, List[dict]]:
    """Render and write one scene; returns its table records (scene, log, map, sample, ...)."""
    calibrations = tables.calibrated_sensor_records(job.width, job.height)
    by_channel = {r["token"]: r for r in calibrations}
    by_channel = {
        channel: by_channel[tables.calibrated_sensor_token(channel, job.width, job.height)]
        for channel in (LIDAR_CHANNEL,) + CAMERA_CHANNELS
    }
    scene = _SceneGenerator(
        job.scene_index,
        job.name,
        job.seed,
        job.version,
        job.num_samples,
        job.num_sweeps,
        make_cameras(job.width, job.height),
        Lidar(),
        job.range_noise,
        by_channel,
        DatasetWriter(job.out_dir),
        job.debug_depth,
    )
    return scene.run(progress)


def _describe(world: SceneWorld) -> str:
    network = world.network
    lanes = network.main.lanes_forward
    parts = [f"synthetic street, {lanes} lane{'s' if lanes > 1 else ''} each way"]
    if network.cross is not None:
        parts.append("junction")
    if world.lighting.sun_color[0] < 0.6:
        parts.append("overcast")
    counts = {}
    for obj in world.objects:
        counts[obj.class_name] = counts.get(obj.class_name, 0) + 1
    parts.append(", ".join(f"{n} {c}" for c, n in sorted(counts.items())))
    return "; ".join(parts)


def _validate(num_scenes, samples_per_scene, image_scale, num_sweeps, version):
    if samples_per_scene < 1:
        raise ValueError(f"samples_per_scene must be >= 1, got {samples_per_scene}")
    if not 0 <= num_sweeps <= MAX_SWEEPS_PER_INTERVAL:
        raise ValueError(
            f"num_sweeps must be in [0, {MAX_SWEEPS_PER_INTERVAL}] (20 Hz sweeps "
            f"between 2 Hz key frames), got {num_sweeps}"
        )
    image_size(image_scale)
    tables.scene_names(version, num_scenes)


def generate_dataset(
    out_dir: str,
    num_scenes: int = 10,
    samples_per_scene: int = 10,
    image_scale: float = 0.25,
    num_sweeps: int = 1,
    seed: int = 0,
    version: str = "v1.0-mini",
    debug_depth: bool = False,
    progress: bool = True,
    lidar_range_noise: float = LIDAR_RANGE_NOISE,
    overwrite: bool = False,
    num_workers: int = 1,
) -> Dict[str, int]:
    """Write a synthetic data set in the nuScenes layout to `out_dir`.

    Args:
        out_dir: root folder (gets `<version>/`, `samples/`, `sweeps/`, `maps/`, and `depth/`
            with `debug_depth`).
        num_scenes: number of scenes (v1.0-mini: at most 10; every fifth scene, starting with the
            second, is in the val split).
        samples_per_scene: key frames per scene, 0.5 s apart.
        image_scale: camera images are (1600 x 900) * image_scale pixels.
        num_sweeps: non-key LiDAR sweeps (20 Hz) before each key frame but the first (0-9).
        seed: seed of every random draw.
        version: "v1.0-mini" or "v1.0-trainval" (table folder and scene names).
        debug_depth: also write each camera's z-depth (float32 meters, inf on sky) to
            `depth/<CHANNEL>/<image name>.npy`.
        progress: show a tqdm progress bar over key frames.
        lidar_range_noise: standard deviation of the LiDAR range noise, meters.
        overwrite: remove the generator's folders in `out_dir` first; otherwise an existing
            `<version>/` folder is an error.
        num_workers: scenes generated in parallel by this many processes (the output does not
            depend on it).
    Returns:
        Counts of the written records per table.
    """
    _validate(num_scenes, samples_per_scene, image_scale, num_sweeps, version)
    table_dir = os.path.join(out_dir, version)
    if os.path.exists(table_dir):
        if not overwrite:
            raise FileExistsError(f"{table_dir} exists; pass overwrite=True to replace it")
        for sub in (version, "samples", "sweeps", "maps", "depth"):
            shutil.rmtree(os.path.join(out_dir, sub), ignore_errors=True)
    width, height = image_size(image_scale)
    calibrations = tables.calibrated_sensor_records(width, height)
    records: Dict[str, List[dict]] = {
        "category": tables.category_records(),
        "attribute": tables.attribute_records(),
        "visibility": tables.visibility_records(),
        "sensor": tables.sensor_records(),
        "calibrated_sensor": calibrations,
    }
    jobs = [
        SceneJob(
            index,
            name,
            seed,
            version,
            samples_per_scene,
            num_sweeps,
            width,
            height,
            lidar_range_noise,
            out_dir,
            debug_depth,
        )
        for index, (name, _) in enumerate(tables.scene_names(version, num_scenes))
    ]
    bar = tqdm(
        total=num_scenes * samples_per_scene,
        desc="synthetic key frames",
        unit="frame",
        disable=not progress,
    )
    if num_workers <= 1:
        results = (run_scene(job, bar) for job in jobs)
    else:
        executor = ProcessPoolExecutor(num_workers, mp_context=multiprocessing.get_context("spawn"))
        results = executor.map(run_scene, jobs)
    for scene_records in results:
        for table, rows in scene_records.items():
            records.setdefault(table, []).extend(rows)
        if num_workers > 1:
            bar.update(samples_per_scene)
    if num_workers > 1:
        executor.shutdown()
    bar.close()
    writer = DatasetWriter(out_dir)
    for table in tables.TABLE_NAMES:
        writer.write_table(version, table, records.get(table, []))
    return {table: len(records.get(table, [])) for table in tables.TABLE_NAMES}
