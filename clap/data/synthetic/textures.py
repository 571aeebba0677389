"""Materials and procedural textures: per hit point, an albedo (camera) and a reflectivity (LiDAR).

Every triangle of the world carries a material index into one `MaterialTable` per scene. A
material has a pattern kind, two colours (RGB in [0, 1]), two pattern scales (meters) and two
LiDAR reflectivities (the nuScenes intensity scale, 0-255). Patterns are evaluated in the
object's own frame (`local`, meters), so textures move with the objects, or in the world frame
for the road surfaces, whose look comes from the surface raster (`SurfaceRaster`).
"""

from typing import Dict, Optional, Tuple

import numpy as np

# Pattern kinds.
PLAIN = 0  # colour with a little noise
NOISE = 1  # blend of colour and colour2 by fractal noise of period `scale`
WINDOWS = 2  # facade: grid of windows (colour2), `scale` = (bay width), `scale2` = floor height
BANDS = 3  # horizontal band of colour2 between heights scale and scale2 (local z)
STRIPES = 4  # diagonal stripes of colour / colour2 with period `scale`
GLASS = 5  # dark, reflects the sky
SURFACE = 6  # ground: look-up in the surface raster (road, markings, sidewalk, grass)
CHECKER = 7  # tiles of size `scale` alternating colour / colour2


def _hash2(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) for integer lattice points (uint32 hash)."""
    h = ix.astype(np.uint32) * np.uint32(374761393) + iy.astype(np.uint32) * np.uint32(668265263)
    h += np.uint32((seed * 2147483647) & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    h *= np.uint32(1274126177)
    h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 2D value noise in [0, 1) with unit lattice spacing (float32)."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    v00 = _hash2(ix, iy, seed)
    v10 = _hash2(ix + 1, iy, seed)
    v01 = _hash2(ix, iy + 1, seed)
    v11 = _hash2(ix + 1, iy + 1, seed)
    return (v00 + (v10 - v00) * tx) * (1 - ty) + (v01 + (v11 - v01) * tx) * ty


def fractal_noise(x: np.ndarray, y: np.ndarray, seed: int, octaves: int = 3) -> np.ndarray:
    """Sum of `octaves` value-noise layers (each twice as fine, half as strong), in [0, 1)."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    total = np.zeros(np.shape(x), dtype=np.float32)
    weight_sum = 0.0
    for octave in range(octaves):
        weight = 0.5**octave
        freq = np.float32(2.0**octave)
        total += np.float32(weight) * value_noise(x * freq, y * freq, seed + 101 * octave)
        weight_sum += weight
    return total / np.float32(weight_sum)


class SurfaceRaster:
    """Top view of the ground surfaces: an (H, W) uint8 class map over the world rectangle.

    Row 0 is the largest y (image convention, like the nuScenes map masks); pixel (row, col)
    covers x in [x0 + col * res, x0 + (col + 1) * res), y in (y1 - (row + 1) * res, y1 - row * res].
    """

    ASPHALT = 1
    PARKING = 2
    MARK_WHITE = 3
    MARK_YELLOW = 4
    SIDEWALK = 5
    GRASS = 6
    CROSSWALK = 7

    # class -> (albedo RGB, reflectivity)
    LOOK = {
        0: ((0.40, 0.42, 0.30), 12.0),
        ASPHALT: ((0.27, 0.27, 0.28), 9.0),
        PARKING: ((0.31, 0.30, 0.30), 11.0),
        MARK_WHITE: ((0.85, 0.85, 0.82), 80.0),
        MARK_YELLOW: ((0.85, 0.68, 0.18), 65.0),
        SIDEWALK: ((0.62, 0.60, 0.56), 28.0),
        GRASS: ((0.30, 0.45, 0.20), 14.0),
        CROSSWALK: ((0.88, 0.88, 0.86), 85.0),
    }
    ROAD_CLASSES = (ASPHALT, PARKING, MARK_WHITE, MARK_YELLOW, CROSSWALK)

    def __init__(self, classes: np.ndarray, x0: float, y1: float, resolution: float):
        self.classes = classes
        self.x0 = float(x0)
        self.y1 = float(y1)
        self.resolution = float(resolution)

    def lookup(self, xy: np.ndarray) -> np.ndarray:
        """Class (N,) uint8 at world points (N, 2); 0 outside the raster."""
        col = np.floor((xy[:, 0] - self.x0) / self.resolution).astype(np.int64)
        row = np.floor((self.y1 - xy[:, 1]) / self.resolution).astype(np.int64)
        h, w = self.classes.shape
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        out = np.zeros(len(xy), dtype=np.uint8)
        out[inside] = self.classes[row[inside], col[inside]]
        return out


class MaterialTable:
    """Growing list of materials of one scene; `add` returns the new material's index."""

    def __init__(self):
        self._rows = []

    def add(
        self,
        kind: int,
        color: Tuple[float, float, float],
        color2: Optional[Tuple[float, float, float]] = None,
        scale: float = 1.0,
        scale2: float = 1.0,
        reflectivity: float = 20.0,
        reflectivity2: Optional[float] = None,
        seed: int = 0,
    ) -> int:
        color2 = color if color2 is None else color2
        reflectivity2 = reflectivity if reflectivity2 is None else reflectivity2
        self._rows.append((kind, *color, *color2, scale, scale2, reflectivity, reflectivity2, seed))
        return len(self._rows) - 1

    def arrays(self) -> Dict[str, np.ndarray]:
        """The table as arrays: kind (M,), color (M, 3), color2 (M, 3), scale, scale2,
        reflectivity, reflectivity2, seed (M,)."""
        table = np.asarray(self._rows, dtype=np.float32).reshape(-1, 12)
        return {
            "kind": table[:, 0].astype(np.int64),
            "color": table[:, 1:4].copy(),
            "color2": table[:, 4:7].copy(),
            "scale": table[:, 7].copy(),
            "scale2": table[:, 8].copy(),
            "reflectivity": table[:, 9].copy(),
            "reflectivity2": table[:, 10].copy(),
            "seed": table[:, 11].copy(),
        }


def evaluate_materials(
    materials: Dict[str, np.ndarray],
    material_ids: np.ndarray,
    world: np.ndarray,
    local: np.ndarray,
    surface: SurfaceRaster,
    is_raised: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo, LiDAR reflectivity and glossiness at hit points.

    Args:
        materials: `MaterialTable.arrays()`.
        material_ids: (N,) material index per hit.
        world: (N, 3) hit points in the world frame, meters.
        local: (N, 3) hit points in the hit object's frame (x forward, y left, z up from its
            bottom), meters.
        surface: the scene's surface raster (for SURFACE materials).
        is_raised: (N,) bool, hit on the top of a raised (off-road) surface.
    Returns:
        albedo (N, 3) float32 in [0, 1], reflectivity (N,) float32 in [0, 255], gloss (N,)
        float32 in [0, 1] (share of the sky colour mirrored by the surface).
    """
    n = len(material_ids)
    albedo = np.empty((n, 3), dtype=np.float32)
    refl = np.empty(n, dtype=np.float32)
    gloss = np.zeros(n, dtype=np.float32)
    kind = materials["kind"][material_ids]
    order = np.argsort(kind, kind="stable")
    ends = np.cumsum(np.bincount(kind, minlength=CHECKER + 1))
    for k in range(CHECKER + 1):
        idx = order[(ends[k - 1] if k else 0) : ends[k]]
        if not len(idx):
            continue
        if k == SURFACE:
            albedo[idx], refl[idx] = _surface_look(surface, world[idx], is_raised[idx])
            continue
        ids = material_ids[idx]
        loc = local[idx].astype(np.float32)
        # Horizontal coordinate along any vertical face of an object (see module docstring).
        u = loc[:, 0] + loc[:, 1]
        z = loc[:, 2]
        scale = materials["scale"][ids]
        scale2 = materials["scale2"][ids]
        mix = None  # share of colour2 / reflectivity2
        if k == NOISE:
            mix = fractal_noise((u + 0.37 * z) / scale, (loc[:, 1] + z) / scale, 7)
        elif k == WINDOWS:
            bay = (u / scale) % 1.0
            floor_pos = (z / scale2) % 1.0
            window = (bay > 0.2) & (bay < 0.8) & (floor_pos > 0.3) & (floor_pos < 0.85)
            mix = (window & (z >= 0.8 * scale2)).astype(np.float32)
            gloss[idx] = 0.35 * mix
        elif k == BANDS:
            mix = ((z >= scale) & (z <= scale2)).astype(np.float32)
        elif k == STRIPES:
            mix = (((u + z) / scale) % 1.0 < 0.5).astype(np.float32)
        elif k == CHECKER:
            parity = np.floor(world[idx, 0] / scale) + np.floor(world[idx, 1] / scale)
            mix = (0.3 * (parity % 2)).astype(np.float32)
        elif k == GLASS:
            gloss[idx] = 0.55
        color = materials["color"][ids]
        r = materials["reflectivity"][ids]
        if mix is not None:
            color = color + (materials["color2"][ids] - color) * mix[:, None]
            r = r + (materials["reflectivity2"][ids] - r) * mix
        # Fine grain, so that no surface is perfectly flat in colour.
        grain = value_noise(u * 3.1 + materials["seed"][ids] * 17.0, z * 3.1, 5)
        albedo[idx] = color * (0.92 + 0.16 * grain)[:, None]
        refl[idx] = r
    return np.clip(albedo, 0.0, 1.0), np.clip(refl, 0.0, 255.0), gloss


_LOOK_COLOR = np.array(
    [SurfaceRaster.LOOK.get(k, SurfaceRaster.LOOK[0])[0] for k in range(256)], dtype=np.float32
)
_LOOK_REFLECTIVITY = np.array(
    [SurfaceRaster.LOOK.get(k, SurfaceRaster.LOOK[0])[1] for k in range(256)], dtype=np.float32
)
_IS_ROAD_CLASS = np.isin(np.arange(256), SurfaceRaster.ROAD_CLASSES)


def _surface_look(
    surface: SurfaceRaster, world: np.ndarray, raised: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Albedo (K, 3) and reflectivity (K,) of ground hits from the surface raster."""
    cls = surface.lookup(world[:, :2])
    road_class = _IS_ROAD_CLASS[cls]
    # The raster is exact to a pixel; the curb geometry decides between road and sidewalk.
    cls[raised & road_class] = SurfaceRaster.SIDEWALK
    cls[~raised & ~road_class] = SurfaceRaster.ASPHALT
    x = world[:, 0].astype(np.float32)
    y = world[:, 1].astype(np.float32)
    grain = value_noise(x * 1.7, y * 1.7, 11)
    patch = value_noise(x / 9.0, y / 9.0, 13)
    shade = 0.82 + 0.22 * grain + 0.18 * (patch - 0.5)
    sidewalk = np.nonzero(cls == SurfaceRaster.SIDEWALK)[0]
    tile = (np.floor(x[sidewalk] / 0.6) + np.floor(y[sidewalk] / 0.6)) % 2
    shade[sidewalk] -= 0.04 * tile
    return _LOOK_COLOR[cls] * shade[:, None], _LOOK_REFLECTIVITY[cls] * (0.8 + 0.4 * grain)
