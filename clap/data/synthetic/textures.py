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
    """Deterministic pseudo-random values in [0, 1) for integer lattice points."""
    h = ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + seed * 2147483647
    h = h & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float64) / float(0x1000000)


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 2D value noise in [0, 1) with unit lattice spacing."""
    fx, fy = np.floor(x), np.floor(y)
    tx, ty = x - fx, y - fy
    tx = tx * tx * (3 - 2 * tx)
    ty = ty * ty * (3 - 2 * ty)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    v00 = _hash2(ix, iy, seed)
    v10 = _hash2(ix + 1, iy, seed)
    v01 = _hash2(ix, iy + 1, seed)
    v11 = _hash2(ix + 1, iy + 1, seed)
    return (v00 * (1 - tx) + v10 * tx) * (1 - ty) + (v01 * (1 - tx) + v11 * tx) * ty


def fractal_noise(x: np.ndarray, y: np.ndarray, seed: int, octaves: int = 3) -> np.ndarray:
    """Sum of `octaves` value-noise layers (each twice as fine, half as strong), in [0, 1)."""
    total = np.zeros(np.shape(x))
    weight_sum = 0.0
    for octave in range(octaves):
        weight = 0.5**octave
        freq = 2.0**octave
        total += weight * value_noise(x * freq, y * freq, seed + 101 * octave)
        weight_sum += weight
    return total / weight_sum


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
        table = np.asarray(self._rows, dtype=np.float64).reshape(-1, 12)
        return {
            "kind": table[:, 0].astype(np.int64),
            "color": table[:, 1:4],
            "color2": table[:, 4:7],
            "scale": table[:, 7],
            "scale2": table[:, 8],
            "reflectivity": table[:, 9],
            "reflectivity2": table[:, 10],
            "seed": table[:, 11].astype(np.int64),
        }

    def __len__(self) -> int:
        return len(self._rows)


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
        albedo (N, 3) in [0, 1], reflectivity (N,) in [0, 255], gloss (N,) in [0, 1] (share of
        the sky colour mirrored by the surface).
    """
    n = len(material_ids)
    kind = materials["kind"][material_ids]
    color = materials["color"][material_ids]
    color2 = materials["color2"][material_ids]
    scale = materials["scale"][material_ids]
    scale2 = materials["scale2"][material_ids]
    refl = materials["reflectivity"][material_ids].copy()
    refl2 = materials["reflectivity2"][material_ids]
    seed = materials["seed"][material_ids]
    mix = np.zeros(n)  # share of colour2 / reflectivity2
    gloss = np.zeros(n)
    # Horizontal coordinate along any vertical face of an object (see module docstring).
    u = local[:, 0] + local[:, 1]
    z = local[:, 2]

    sel = kind == NOISE
    if sel.any():
        mix[sel] = fractal_noise(
            u[sel] / scale[sel] + 0.37 * z[sel] / scale[sel],
            local[sel, 1] / scale[sel] + z[sel] / scale[sel],
            7,
        )
    sel = kind == WINDOWS
    if sel.any():
        bay = (u[sel] / scale[sel]) % 1.0
        floor_pos = (z[sel] / scale2[sel]) % 1.0
        ground_floor = z[sel] < 0.8 * scale2[sel]
        window = (bay > 0.2) & (bay < 0.8) & (floor_pos > 0.3) & (floor_pos < 0.85)
        mix[sel] = np.where(window & ~ground_floor, 1.0, 0.0)
        gloss[sel] = 0.35 * mix[sel]
    sel = kind == BANDS
    if sel.any():
        mix[sel] = ((z[sel] >= scale[sel]) & (z[sel] <= scale2[sel])).astype(np.float64)
    sel = kind == STRIPES
    if sel.any():
        mix[sel] = (((u[sel] + z[sel]) / scale[sel]) % 1.0 < 0.5).astype(np.float64)
    sel = kind == CHECKER
    if sel.any():
        parity = np.floor(world[sel, 0] / scale[sel]) + np.floor(world[sel, 1] / scale[sel])
        mix[sel] = 0.3 * (parity % 2)
    sel = kind == GLASS
    if sel.any():
        gloss[sel] = 0.55

    albedo = color * (1 - mix[:, None]) + color2 * mix[:, None]
    refl = refl * (1 - mix) + refl2 * mix

    sel = kind == SURFACE
    if sel.any():
        cls = surface.lookup(world[sel, :2])
        raised = is_raised[sel]
        road_class = np.isin(cls, SurfaceRaster.ROAD_CLASSES)
        # The raster is exact to a pixel; the curb geometry decides between road and sidewalk.
        cls = np.where(raised & road_class, SurfaceRaster.SIDEWALK, cls)
        cls = np.where(~raised & ~road_class, SurfaceRaster.ASPHALT, cls)
        look_color = np.array(
            [SurfaceRaster.LOOK.get(k, SurfaceRaster.LOOK[0])[0] for k in range(256)]
        )
        look_refl = np.array(
            [SurfaceRaster.LOOK.get(k, SurfaceRaster.LOOK[0])[1] for k in range(256)]
        )
        base = look_color[cls]
        grain = fractal_noise(world[sel, 0] * 1.7, world[sel, 1] * 1.7, 11, octaves=2)
        patch = fractal_noise(world[sel, 0] / 9.0, world[sel, 1] / 9.0, 13, octaves=2)
        tile = (np.floor(world[sel, 0] / 0.6) + np.floor(world[sel, 1] / 0.6)) % 2
        tile = np.where(cls == SurfaceRaster.SIDEWALK, 0.04 * tile, 0.0)
        shade = 0.82 + 0.22 * grain + 0.18 * (patch - 0.5) - tile
        albedo[sel] = base * shade[:, None]
        refl[sel] = look_refl[cls] * (0.8 + 0.4 * grain)

    # Fine grain on everything else, so that no surface is perfectly flat in colour.
    other = kind != SURFACE
    if other.any():
        grain = value_noise(u[other] * 3.1 + seed[other] * 17.0, z[other] * 3.1, 5)
        albedo[other] *= (0.92 + 0.16 * grain)[:, None]
    return np.clip(albedo, 0.0, 1.0), np.clip(refl, 0.0, 255.0), gloss
