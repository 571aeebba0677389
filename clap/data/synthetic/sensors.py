"""The sensor rig and the two sensor models: a spinning 32-beam LiDAR and pinhole cameras.

Frames (nuScenes): sensor -> ego by the calibrated extrinsics in `constants.RIG`, ego -> world
by the ego pose. Camera frame: x right, y down, z forward. Pixel centres sit at integer
coordinates (the project-wide convention, as in OpenCV): a point at camera coordinates (x, y, z)
is seen at (u, v) = (fx x / z + cx, fy y / z + cy), in pixel (round(u), round(v)), and the ray of
pixel (col, row) goes through (col, row). Intrinsics for a scaled image map pixel areas: with
s = W / 1600 (or H / 900), f' = s f and c' = s (c + 0.5) - 0.5.
"""

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from .constants import (
    CAMERA_CHANNELS,
    FULL_IMAGE_HEIGHT,
    FULL_IMAGE_WIDTH,
    LIDAR_AZIMUTH_STEPS,
    LIDAR_MAX_ELEVATION,
    LIDAR_MAX_RANGE,
    LIDAR_MIN_ELEVATION,
    LIDAR_MIN_RANGE,
    LIDAR_NUM_BEAMS,
    RIG,
)
from .geometry import pose_matrix
from .raycast import MeshCaster, any_hit, cast_rays
from .textures import evaluate_materials, fractal_noise
from .world import SceneWorld


def image_size(image_scale: float) -> Tuple[int, int]:
    """(W, H) pixels of the cameras at `image_scale` (1.0 is 1600 x 900)."""
    if image_scale <= 0:
        raise ValueError(f"image_scale must be > 0, got {image_scale}")
    return (
        max(1, int(round(FULL_IMAGE_WIDTH * image_scale))),
        max(1, int(round(FULL_IMAGE_HEIGHT * image_scale))),
    )


def scaled_intrinsic(channel: str, width: int, height: int) -> np.ndarray:
    """(3, 3) intrinsics of camera `channel` for a width x height image."""
    intrinsic = np.array(RIG[channel]["intrinsic"], dtype=np.float64)
    for row, scale in ((0, width / FULL_IMAGE_WIDTH), (1, height / FULL_IMAGE_HEIGHT)):
        intrinsic[row, :2] *= scale
        intrinsic[row, 2] = scale * (intrinsic[row, 2] + 0.5) - 0.5
    return intrinsic


def sensor_to_ego(channel: str) -> np.ndarray:
    """(4, 4) extrinsics of `channel` (sensor -> ego)."""
    return pose_matrix(RIG[channel]["translation"], RIG[channel]["rotation"])


@dataclass
class CameraFrame:
    """One rendered image: rgb (H, W, 3) uint8, depth (H, W) float32 z-depth in meters (inf
    where the ray sees the sky), object (H, W) int32 object index (-1: world or sky)."""

    rgb: np.ndarray
    depth: np.ndarray
    object: np.ndarray


class Camera:
    """Pinhole camera of one channel at one image size."""

    def __init__(self, channel: str, width: int, height: int):
        self.channel = channel
        self.width, self.height = width, height
        self.intrinsic = scaled_intrinsic(channel, width, height)
        self.cam2ego = sensor_to_ego(channel)
        cols, rows = np.meshgrid(np.arange(width), np.arange(height))
        pixels = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=1)
        # Camera-frame directions with z = 1: the hit distance t is the z-depth.
        self.directions_cam = (pixels @ np.linalg.inv(self.intrinsic).T).astype(np.float32)

    def render(
        self, world: SceneWorld, static: MeshCaster, dynamic: MeshCaster, ego2world: np.ndarray
    ) -> CameraFrame:
        cam2world = ego2world @ self.cam2ego
        directions = self.directions_cam @ cam2world[:3, :3].T.astype(np.float32)
        origin = cam2world[:3, 3]
        hits = cast_rays(static, dynamic, origin, directions)
        rgb = shade(world, static, dynamic, hits, directions)
        shape = (self.height, self.width)
        return CameraFrame(
            rgb=rgb.reshape(shape + (3,)),
            depth=hits.t.reshape(shape),
            object=hits.object.reshape(shape).astype(np.int32),
        )


def sky_color(world: SceneWorld, directions: np.ndarray) -> np.ndarray:
    """Sky (above the horizon) and distant hazy ground (below) seen along (N, 3) directions."""
    light = world.lighting
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    elevation = np.arcsin(np.clip(unit[:, 2], -1, 1))
    up = np.sqrt(np.clip(elevation / np.float32(np.pi / 2), 0, 1))
    color = light.sky_horizon * (1 - up[:, None]) + light.sky_zenith * up[:, None]
    # Clouds on a plane 1 km up.
    above = unit[:, 2] > 0.02
    if above.any():
        scale = 1000.0 / unit[above, 2]
        cx, cy = unit[above, 0] * scale / 600.0, unit[above, 1] * scale / 600.0
        cloud = fractal_noise(cx, cy, light.cloud_seed, octaves=3)
        cloud = np.clip((cloud - 0.5) * 3.0, 0, 1) * np.clip(unit[above, 2] * 8, 0, 1)
        color[above] = color[above] * (1 - cloud[:, None]) + 0.95 * cloud[:, None]
    sun = np.clip(unit @ light.sun_direction, 0, 1)
    color = color + light.sun_color * (0.8 * sun**400 + 0.15 * sun**12)[:, None]
    below = elevation < 0
    ground = np.array([0.45, 0.46, 0.42], dtype=np.float32)
    fade = np.clip(-elevation[below] / 0.05, 0, 1)[:, None]
    color[below] = light.sky_horizon * (1 - fade) + ground * fade
    return color


def shade(
    world: SceneWorld, static: MeshCaster, dynamic: MeshCaster, hits, directions: np.ndarray
) -> np.ndarray:
    """Colour (N, 3) uint8 of every ray: Lambertian surfaces lit by the sun (with cast shadows)
    and the sky, glossy glass, haze with distance; the sky where nothing is hit."""
    light = world.lighting
    color = np.empty((len(directions), 3), dtype=np.float32)
    miss = np.ones(len(directions), dtype=bool)
    miss[hits.index] = False
    if miss.any():
        color[miss] = sky_color(world, directions[miss])
    if len(hits.index):
        albedo, _, gloss = evaluate_materials(
            world.materials,
            hits.material,
            hits.point,
            hits.local,
            world.surface,
            hits.material == world.raised_material,
        )
        normal = hits.normal
        sun_dot = np.clip(normal @ light.sun_direction.astype(np.float32), 0, None)
        lit = np.nonzero(sun_dot > 0)[0]
        if len(lit):
            origins = hits.point[lit] + normal[lit] * 0.02
            dirs = np.broadcast_to(light.sun_direction, origins.shape)
            blocked = any_hit(static, dynamic, origins, dirs)
            sun_dot[lit[blocked]] = 0.0
        ambient = light.ambient * (0.65 + 0.35 * normal[:, 2:3])
        radiance = albedo * (light.sun_color * sun_dot[:, None] + ambient)
        glossy = np.nonzero(gloss > 0)[0]
        if len(glossy):
            d = directions[hits.index[glossy]]
            d = d / np.linalg.norm(d, axis=1, keepdims=True)
            n_g = normal[glossy]
            cos = np.sum(d * n_g, axis=1, keepdims=True)
            reflected = d - 2 * cos * n_g
            fresnel = gloss[glossy, None] * (0.35 + 0.65 * (1 - np.abs(cos)) ** 3)
            mirror = sky_color(world, reflected)
            radiance[glossy] = radiance[glossy] * (1 - fresnel) + mirror * fresnel
        distance = hits.t[hits.index] * np.linalg.norm(directions[hits.index], axis=1)
        haze = np.exp(-distance / light.haze_distance)[:, None]
        color[hits.index] = radiance * haze + light.sky_horizon * (1 - haze)
    color = np.clip(color * light.exposure, 0, 1)
    return np.round(color * 255).astype(np.uint8)


class Lidar:
    """Spinning LiDAR: LIDAR_NUM_BEAMS beams (ring 0 = lowest) x LIDAR_AZIMUTH_STEPS firings."""

    def __init__(self):
        self.lidar2ego = sensor_to_ego("LIDAR_TOP")
        self.elevations = np.linspace(LIDAR_MIN_ELEVATION, LIDAR_MAX_ELEVATION, LIDAR_NUM_BEAMS)

    def directions(self, azimuth_phase: float) -> Tuple[np.ndarray, np.ndarray]:
        """Unit directions (N, 3) in the LiDAR frame, azimuth-major, and the ring (N,) of each.
        `azimuth_phase` in [0, 1) shifts the firings by a fraction of one azimuth step."""
        azimuths = (np.arange(LIDAR_AZIMUTH_STEPS) + azimuth_phase) * (
            2 * np.pi / LIDAR_AZIMUTH_STEPS
        )
        az, el = np.meshgrid(azimuths, self.elevations, indexing="ij")
        dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
        rings = np.broadcast_to(np.arange(LIDAR_NUM_BEAMS), az.shape)
        return dirs.reshape(-1, 3), rings.reshape(-1)

    def scan(
        self,
        world: SceneWorld,
        static: MeshCaster,
        dynamic: MeshCaster,
        ego2world: np.ndarray,
        rng: np.random.Generator,
        range_noise: float,
    ) -> np.ndarray:
        """One sweep: (N, 5) float32 points x, y, z (LiDAR frame, m), intensity (0-255), ring.

        Args:
            rng: draws the azimuth phase, range noise and intensity speckle of this sweep.
            range_noise: standard deviation of the Gaussian range noise, meters.
        """
        phase = rng.random()
        dirs, rings = self.directions(phase)
        lidar2world = ego2world @ self.lidar2ego
        world_dirs = dirs @ lidar2world[:3, :3].T
        hits = cast_rays(static, dynamic, lidar2world[:3, 3], world_dirs)
        noise = rng.normal(0.0, 1.0, size=len(dirs)) * range_noise
        speckle = rng.uniform(0.9, 1.1, size=len(dirs))
        ranges = hits.t[hits.index].astype(np.float64)
        keep = (ranges >= LIDAR_MIN_RANGE) & (ranges <= LIDAR_MAX_RANGE)
        rays = hits.index[keep]
        _, reflectivity, _ = evaluate_materials(
            world.materials,
            hits.material[keep],
            hits.point[keep],
            hits.local[keep],
            world.surface,
            hits.material[keep] == world.raised_material,
        )
        cos = np.abs(np.sum(hits.normal[keep] * world_dirs[rays], axis=1))
        intensity = np.clip(np.round(reflectivity * (0.35 + 0.65 * cos) * speckle[rays]), 0, 255)
        measured = ranges[keep] + noise[rays]
        points = np.concatenate(
            [dirs[rays] * measured[:, None], intensity[:, None], rings[rays, None]], axis=1
        )
        return points.astype(np.float32)


def make_cameras(width: int, height: int) -> Dict[str, Camera]:
    return {channel: Camera(channel, width, height) for channel in CAMERA_CHANNELS}
