"""Object meshes: the ten nuScenes detection classes and the static props of the world.

Every builder returns a `Mesh` in the object's own frame: x forward (along the length), y left,
z up, the bottom on z = 0. Class objects are then fitted exactly into their box, so that
their axis-aligned bounds are [-l/2, l/2] x [-w/2, w/2] x [0, h]: the annotated box is the
tight box of the mesh. Shapes are built from primitives (boxes, cylinders, cones, ellipsoids,
extruded side profiles) so that each class has its typical outline.
"""

import functools
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import trimesh

from . import textures as tx
from .geometry import triangulate_simple_polygon


@dataclass
class Mesh:
    """Triangles with one material index each. vertices (V, 3) m, faces (F, 3) wound
    counter-clockwise seen from outside, material (F,)."""

    vertices: np.ndarray
    faces: np.ndarray
    material: np.ndarray

    @property
    def bounds(self) -> np.ndarray:
        return np.stack([self.vertices.min(0), self.vertices.max(0)])


def merge(parts: Sequence[Mesh]) -> Mesh:
    """One mesh holding all `parts`."""
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    return Mesh(
        vertices=np.concatenate([p.vertices for p in parts]),
        faces=np.concatenate([p.faces + o for p, o in zip(parts, offsets)]),
        material=np.concatenate([p.material for p in parts]),
    )


_BOX_CORNERS = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=np.float64)
_BOX_FACES = np.array(
    [
        [0, 1, 3],
        [0, 3, 2],
        [4, 6, 7],
        [4, 7, 5],
        [0, 4, 5],
        [0, 5, 1],
        [2, 3, 7],
        [2, 7, 6],
        [0, 2, 6],
        [0, 6, 4],
        [1, 5, 7],
        [1, 7, 3],
    ]
)


def box(lo: Sequence[float], hi: Sequence[float], material: int) -> Mesh:
    """Axis-aligned box between corners `lo` and `hi`."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return Mesh(
        lo + _BOX_CORNERS * (hi - lo), _BOX_FACES.copy(), np.full(12, material, dtype=np.int64)
    )


def cylinder(
    center, radius: float, length: float, axis: str, material: int, sections: int = 12
) -> Mesh:
    """Cylinder around `axis` ("x", "y" or "z") through `center`."""
    mesh = frustum((0.0, 0.0, -length / 2), radius, radius, length, material, sections)
    vertices, faces = mesh.vertices, mesh.faces
    if axis in ("x", "y"):
        # Swapping two axes mirrors the mesh: reverse the winding to keep normals outward.
        vertices = vertices[:, [2, 1, 0]] if axis == "x" else vertices[:, [0, 2, 1]]
        faces = faces[:, ::-1]
    return Mesh(vertices + np.asarray(center, dtype=np.float64), faces, mesh.material)


def frustum(
    center_bottom,
    radius_bottom: float,
    radius_top: float,
    height: float,
    material: int,
    sections: int = 12,
) -> Mesh:
    """Vertical truncated cone standing on `center_bottom`."""
    angles = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    bottom = np.concatenate([ring * radius_bottom, np.zeros((sections, 1))], axis=1)
    top = np.concatenate([ring * radius_top, np.full((sections, 1), height)], axis=1)
    vertices = np.concatenate([bottom, top, [[0, 0, 0], [0, 0, height]]]) + center_bottom
    k = np.arange(sections)
    k1 = (k + 1) % sections
    faces = np.concatenate(
        [
            np.stack([k, k1, sections + k1], 1),
            np.stack([k, sections + k1, sections + k], 1),
            np.stack([np.full(sections, 2 * sections), k1, k], 1),
            np.stack([np.full(sections, 2 * sections + 1), sections + k, sections + k1], 1),
        ]
    )
    return Mesh(vertices, faces, np.full(len(faces), material, dtype=np.int64))


@functools.lru_cache(maxsize=4)
def _unit_sphere(subdivisions: int) -> Tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


def ellipsoid(
    center,
    radii,
    material: int,
    subdivisions: int = 1,
    jitter: float = 0.0,
    rng: np.random.Generator = None,
) -> Mesh:
    """Ellipsoid from an icosphere; `jitter` randomly moves vertices radially (fraction)."""
    vertices, faces = _unit_sphere(subdivisions)
    if jitter > 0:
        vertices = vertices * (1.0 + jitter * rng.uniform(-1, 1, size=(len(vertices), 1)))
    return Mesh(
        vertices * np.asarray(radii) + np.asarray(center),
        faces.copy(),
        np.full(len(faces), material, dtype=np.int64),
    )


def extrude_profile(profile_xz: np.ndarray, y0: float, y1: float, material: int) -> Mesh:
    """Prism from a simple side-profile polygon (P, 2) in the x-z plane, from y0 to y1."""
    profile_xz = np.asarray(profile_xz, dtype=np.float64)
    x, z = profile_xz[:, 0], profile_xz[:, 1]
    if np.dot(x, np.roll(z, -1)) - np.dot(z, np.roll(x, -1)) < 0:
        profile_xz = profile_xz[::-1]  # counter-clockwise in (x, z): outward side faces
    p = len(profile_xz)
    left = np.stack([profile_xz[:, 0], np.full(p, y1), profile_xz[:, 1]], 1)
    right = np.stack([profile_xz[:, 0], np.full(p, y0), profile_xz[:, 1]], 1)
    cap = triangulate_simple_polygon(profile_xz)
    k = np.arange(p)
    k1 = (k + 1) % p
    sides = np.concatenate([np.stack([k, k1, p + k1], 1), np.stack([k, p + k1, p + k], 1)])
    faces = np.concatenate([cap[:, ::-1], cap + p, sides])
    return Mesh(np.concatenate([left, right]), faces, np.full(len(faces), material, dtype=np.int64))


def rotated(mesh: Mesh, angle: float, axis: str, pivot) -> Mesh:
    """`mesh` rotated by `angle` radians about an axis through `pivot`."""
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    elif axis == "y":
        rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    else:
        rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    pivot = np.asarray(pivot, dtype=np.float64)
    return Mesh((mesh.vertices - pivot) @ rot.T + pivot, mesh.faces, mesh.material)


def fit_to_box(mesh: Mesh, length: float, width: float, height: float) -> Mesh:
    """Scale and shift `mesh` so that its bounds are exactly [-l/2, l/2] x [-w/2, w/2] x [0, h]."""
    lo, hi = mesh.bounds
    target_lo = np.array([-length / 2, -width / 2, 0.0])
    target_hi = np.array([length / 2, width / 2, height])
    scale = (target_hi - target_lo) / (hi - lo)
    vertices = (mesh.vertices - lo) * scale + target_lo
    # Pin the extremes exactly (no rounding left over from the affine map).
    for axis in range(3):
        vertices[np.isclose(vertices[:, axis], target_lo[axis], atol=1e-9), axis] = target_lo[axis]
        vertices[np.isclose(vertices[:, axis], target_hi[axis], atol=1e-9), axis] = target_hi[axis]
    return Mesh(vertices, mesh.faces, mesh.material)


# ---------------------------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------------------------
CAR_PAINTS = (
    ((0.86, 0.86, 0.86), 35.0),
    ((0.08, 0.08, 0.09), 12.0),
    ((0.58, 0.59, 0.61), 28.0),
    ((0.33, 0.34, 0.36), 20.0),
    ((0.62, 0.08, 0.07), 22.0),
    ((0.12, 0.22, 0.50), 18.0),
    ((0.10, 0.15, 0.30), 15.0),
    ((0.15, 0.35, 0.20), 18.0),
    ((0.72, 0.66, 0.52), 28.0),
    ((0.85, 0.70, 0.10), 30.0),
)
CLOTHES = (
    (0.10, 0.10, 0.12),
    (0.20, 0.25, 0.45),
    (0.55, 0.10, 0.10),
    (0.80, 0.80, 0.78),
    (0.35, 0.30, 0.25),
    (0.15, 0.40, 0.25),
    (0.70, 0.55, 0.20),
    (0.45, 0.45, 0.50),
)
SKIN = ((0.87, 0.70, 0.58), (0.65, 0.47, 0.35), (0.42, 0.29, 0.20), (0.93, 0.80, 0.70))
TRUCK_BODIES = (
    (0.90, 0.90, 0.88),
    (0.20, 0.30, 0.60),
    (0.70, 0.15, 0.10),
    (0.40, 0.42, 0.40),
    (0.85, 0.60, 0.10),
)
CONSTRUCTION_PAINTS = ((0.92, 0.70, 0.05), (0.95, 0.50, 0.05), (0.90, 0.85, 0.10))


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


class _Palette:
    """Shared materials of the object classes plus per-object paints, in one MaterialTable."""

    def __init__(self, materials: tx.MaterialTable):
        self.table = materials
        self.tyre = materials.add(tx.PLAIN, (0.05, 0.05, 0.05), reflectivity=4.0)
        self.glass = materials.add(tx.GLASS, (0.07, 0.09, 0.11), reflectivity=5.0)
        self.metal = materials.add(tx.PLAIN, (0.45, 0.46, 0.48), reflectivity=35.0)
        self.dark_metal = materials.add(tx.PLAIN, (0.16, 0.16, 0.17), reflectivity=15.0)
        self.head_light = materials.add(tx.PLAIN, (0.95, 0.95, 0.85), reflectivity=90.0)
        self.tail_light = materials.add(tx.PLAIN, (0.75, 0.05, 0.05), reflectivity=110.0)
        self.cone = materials.add(
            tx.BANDS, (0.95, 0.35, 0.05), (0.95, 0.95, 0.95), reflectivity=40.0, reflectivity2=160.0
        )
        self.concrete = materials.add(
            tx.NOISE,
            (0.68, 0.67, 0.64),
            (0.55, 0.54, 0.52),
            scale=0.5,
            reflectivity=30.0,
            reflectivity2=26.0,
        )
        self.striped = materials.add(
            tx.STRIPES,
            (0.80, 0.10, 0.08),
            (0.95, 0.95, 0.95),
            scale=0.5,
            reflectivity=35.0,
            reflectivity2=130.0,
        )
        self.skins = [materials.add(tx.PLAIN, c, reflectivity=18.0) for c in SKIN]
        self.clothes = [
            materials.add(tx.PLAIN, c, reflectivity=12.0 + 25.0 * np.mean(c)) for c in CLOTHES
        ]

    def paint(self, rng, options=CAR_PAINTS):
        color, refl = _pick(rng, options)
        return self.table.add(tx.PLAIN, color, reflectivity=refl, seed=int(rng.integers(1000)))


def _wheels(
    xs: Sequence[float], half_track: float, radius: float, width: float, material: int
) -> List[Mesh]:
    """Wheels (axis along y) at longitudinal positions xs, outer faces at +-half_track."""
    parts = []
    for x in xs:
        for side in (1, -1):
            y = side * (half_track - width / 2)
            parts.append(cylinder((x, y, radius), radius, width, "y", material))
    return parts


# ---------------------------------------------------------------------------------------------
# Class shapes. Each builder gets the target size (length, width, height) and returns the raw
# mesh (fitted afterwards). `rider` is only used by the cycles.
# ---------------------------------------------------------------------------------------------
def _car(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    paint = pal.paint(rng)
    r = 0.19 * height
    body_top = 0.55 * height
    low = 0.45 * r
    nose = rng.uniform(0.04, 0.1) * length
    body = extrude_profile(
        [
            (-length / 2, low + 0.1),
            (-length / 2 + 0.08, low),
            (length / 2 - 0.1, low),
            (length / 2, low + 0.12),
            (length / 2, body_top - nose * 0.6),
            (length / 2 - nose, body_top),
            (-length / 2 + 0.15, body_top),
            (-length / 2, body_top - 0.1),
        ],
        -width / 2 + 0.03,
        width / 2 - 0.03,
        paint,
    )
    back = rng.uniform(-0.45, -0.3) * length  # rear end of the cabin (hatchback / sedan)
    front = rng.uniform(0.12, 0.25) * length
    cabin = extrude_profile(
        [
            (back, body_top),
            (front, body_top),
            (front - 0.18 * length, height),
            (back + 0.07 * length, height),
        ],
        -0.43 * width,
        0.43 * width,
        pal.glass,
    )
    roof = box(
        (back + 0.07 * length + 0.05, -0.41 * width, height - 0.04),
        (front - 0.18 * length - 0.05, 0.41 * width, height),
        paint,
    )
    lights = [
        box(
            (length / 2 - 0.05, s * 0.3 * width - 0.12, body_top - 0.25),
            (length / 2 + 0.01, s * 0.3 * width + 0.12, body_top - 0.13),
            pal.head_light,
        )
        for s in (1, -1)
    ]
    lights += [
        box(
            (-length / 2 - 0.01, s * 0.32 * width - 0.12, body_top - 0.2),
            (-length / 2 + 0.05, s * 0.32 * width + 0.12, body_top - 0.08),
            pal.tail_light,
        )
        for s in (1, -1)
    ]
    base = 0.3 * length
    wheels = _wheels((base, -base), width / 2, r, 0.22, pal.tyre)
    return merge([body, cabin, roof] + lights + wheels)


def _truck(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    cab_paint = pal.paint(rng)
    body_paint = pal.table.add(
        tx.NOISE,
        _pick(rng, TRUCK_BODIES),
        (0.5, 0.5, 0.5),
        scale=3.0,
        reflectivity=30.0,
        reflectivity2=20.0,
    )
    r = rng.uniform(0.42, 0.5)
    cab_len = rng.uniform(0.2, 0.3) * length
    cab_h = rng.uniform(0.72, 0.9) * height
    cab = extrude_profile(
        [
            (length / 2 - cab_len, 0.4),
            (length / 2, 0.4),
            (length / 2, 0.62 * cab_h),
            (length / 2 - 0.25, cab_h),
            (length / 2 - cab_len, cab_h),
        ],
        -width / 2 + 0.02,
        width / 2 - 0.02,
        cab_paint,
    )
    windshield = box(
        (length / 2 - 0.24, -0.42 * width, 0.65 * cab_h),
        (length / 2 - 0.02, 0.42 * width, 0.95 * cab_h),
        pal.glass,
    )
    cargo = box(
        (-length / 2, -width / 2, 0.32 * height + 0.3),
        (length / 2 - cab_len - 0.15, width / 2, height),
        body_paint,
    )
    chassis = box(
        (-length / 2 + 0.2, -0.35 * width, r * 0.6),
        (length / 2 - 0.1, 0.35 * width, 0.32 * height + 0.3),
        pal.dark_metal,
    )
    axles = [length / 2 - cab_len * 0.5, -length / 2 + 1.2]
    if length > 7.5:
        axles.append(-length / 2 + 1.2 + 2.2 * r)
    wheels = _wheels(axles, width / 2, r, 0.3, pal.tyre)
    return merge([cab, windshield, cargo, chassis] + wheels)


def _bus(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    color, _ = _pick(rng, CAR_PAINTS[:1] + CAR_PAINTS[4:8] + CAR_PAINTS[9:])
    band_lo, band_hi = rng.uniform(0.45, 0.52) * height, rng.uniform(0.82, 0.9) * height
    paint = pal.table.add(
        tx.BANDS,
        color,
        (0.07, 0.09, 0.11),
        scale=band_lo,
        scale2=band_hi,
        reflectivity=30.0,
        reflectivity2=6.0,
    )
    r = 0.5
    body = extrude_profile(
        [
            (-length / 2, 0.3),
            (length / 2, 0.3),
            (length / 2, height - 0.25),
            (length / 2 - 0.25, height),
            (-length / 2 + 0.2, height),
            (-length / 2, height - 0.2),
        ],
        -width / 2 + 0.02,
        width / 2 - 0.02,
        paint,
    )
    windshield = box(
        (length / 2 - 0.02, -0.45 * width, 0.35 * height),
        (length / 2 + 0.01, 0.45 * width, 0.9 * height),
        pal.glass,
    )
    wheels = _wheels((length / 2 - 2.5, -length / 2 + 3.0), width / 2, r, 0.3, pal.tyre)
    return merge([body, windshield] + wheels)


def _trailer(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    body_paint = pal.table.add(
        tx.STRIPES,
        _pick(rng, TRUCK_BODIES),
        (0.45, 0.45, 0.47),
        scale=rng.uniform(0.3, 0.6),
        reflectivity=32.0,
        reflectivity2=24.0,
    )
    r = 0.45
    bar = rng.uniform(1.0, 1.8)
    body = box((-length / 2, -width / 2, 1.1), (length / 2 - bar, width / 2, height), body_paint)
    tow_bar = box((length / 2 - bar - 0.1, -0.1, 0.5), (length / 2, 0.1, 0.7), pal.dark_metal)
    legs = [
        box(
            (length / 2 - bar - 1.5, s * 0.35 * width - 0.08, 0.0),
            (length / 2 - bar - 1.3, s * 0.35 * width + 0.08, 1.1),
            pal.dark_metal,
        )
        for s in (1, -1)
    ]
    wheels = _wheels((-length / 2 + 1.0, -length / 2 + 1.0 + 2.2 * r), width / 2, r, 0.3, pal.tyre)
    return merge([body, tow_bar] + legs + wheels)


def _construction_vehicle(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    paint = pal.paint(rng, [(c, 45.0) for c in CONSTRUCTION_PAINTS])
    track_h = 0.22 * height
    tracks = [
        box(
            (-0.42 * length, -width / 2, 0.0),
            (0.2 * length, -0.25 * width, track_h),
            pal.dark_metal,
        ),
        box(
            (-0.42 * length, 0.25 * width, 0.0), (0.2 * length, width / 2, track_h), pal.dark_metal
        ),
    ]
    house = box(
        (-0.45 * length, -0.45 * width, track_h),
        (0.15 * length, 0.45 * width, 0.55 * height),
        paint,
    )
    cab = box(
        (-0.05 * length, 0.0, 0.55 * height),
        (0.15 * length, 0.45 * width, 0.95 * height),
        pal.glass,
    )
    cab_roof = box(
        (-0.05 * length, 0.0, 0.95 * height), (0.15 * length, 0.45 * width, height), paint
    )
    # Boom up and forward, stick down to a bucket at the front end.
    boom_angle = rng.uniform(0.35, 0.6)
    boom = rotated(
        box(
            (0.1 * length, -0.08 * width, 0.5 * height),
            (0.45 * length, 0.08 * width, 0.5 * height + 0.35),
            paint,
        ),
        -boom_angle,
        "y",
        (0.1 * length, 0.0, 0.5 * height),
    )
    tip = boom.vertices[:, 0].max()
    stick = box(
        (tip - 0.3, -0.06 * width, 0.25 * height), (tip, 0.06 * width, 0.78 * height), paint
    )
    bucket = box(
        (tip - 0.1, -0.3 * width, 0.1 * height),
        (0.5 * length, 0.3 * width, 0.32 * height),
        pal.dark_metal,
    )
    return merge(tracks + [house, cab, cab_roof, boom, stick, bucket])


def _person(height: float, rng, pal: _Palette, pose: str) -> Mesh:
    """A person standing/walking ("walk"), or seated on a cycle ("ride"), feet at z = 0 unless
    riding (then the hips are at z = 0 and the figure is shifted by the caller)."""
    skin = _pick(rng, pal.skins)
    top = _pick(rng, pal.clothes)
    trousers = _pick(rng, pal.clothes)
    head_r = 0.065 * height
    parts = []
    if pose == "walk":
        stride = rng.uniform(0.1, 0.3)
        leg_h = 0.47 * height
        for side, swing in ((1, stride), (-1, -stride)):
            leg = cylinder((0, side * 0.1, leg_h / 2), 0.075, leg_h, "z", trousers, sections=8)
            parts.append(rotated(leg, swing, "y", (0, 0, leg_h)))
        hip = leg_h
    else:
        hip = 0.0
        # Thighs forward, shins down.
        for side in (1, -1):
            parts.append(cylinder((0.2, side * 0.12, 0.0), 0.07, 0.45, "x", trousers, sections=8))
            parts.append(cylinder((0.42, side * 0.12, -0.25), 0.06, 0.5, "z", trousers, sections=8))
    torso_h = 0.33 * height
    parts.append(ellipsoid((0, 0, hip + torso_h / 2), (0.13, 0.2, torso_h / 2 + 0.03), top))
    shoulder = hip + torso_h
    for side in (1, -1):
        arm = cylinder((0, side * 0.25, shoulder - 0.3), 0.05, 0.6, "z", top, sections=8)
        swing = rng.uniform(-0.4, 0.4) if pose == "walk" else -1.0
        parts.append(rotated(arm, swing * side if pose == "walk" else swing, "y", (0, 0, shoulder)))
    parts.append(
        ellipsoid((0.02, 0, shoulder + 0.04 + head_r), (head_r, 0.9 * head_r, 1.1 * head_r), skin)
    )
    return merge(parts)


def _pedestrian(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    return _person(height, rng, pal, "walk")


def _cycle_rider(seat_x: float, seat_z: float, height: float, rng, pal: _Palette) -> Mesh:
    person = _person(height, rng, pal, "ride")
    return Mesh(person.vertices + np.array([seat_x, 0.0, seat_z]), person.faces, person.material)


def _motorcycle(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    paint = pal.paint(rng)
    r = 0.3
    wheels = [
        cylinder((x, 0, r), r, 0.14, "y", pal.tyre) for x in (length / 2 - r, -length / 2 + r)
    ]
    body = extrude_profile(
        [
            (-length / 2 + 0.3, 0.45),
            (length / 2 - 0.45, 0.35),
            (length / 2 - 0.3, 0.8),
            (0.1, 0.85),
            (-length / 2 + 0.15, 0.8),
        ],
        -0.16,
        0.16,
        paint,
    )
    seat = box((-0.35, -0.15, 0.8), (0.1, 0.15, 0.9), pal.dark_metal)
    fork = rotated(
        box((length / 2 - r - 0.03, -0.05, r), (length / 2 - r + 0.03, 0.05, 1.0), pal.metal),
        -0.35,
        "y",
        (length / 2 - r, 0, r),
    )
    fork_top = fork.vertices[fork.vertices[:, 2].argmax()]
    bar = box(
        (fork_top[0] - 0.1, -width / 2, fork_top[2] - 0.04),
        (fork_top[0], width / 2, fork_top[2]),
        pal.dark_metal,
    )
    parts = wheels + [body, seat, fork, bar]
    if rider:
        parts.append(_cycle_rider(-0.15, 0.85, 1.7, rng, pal))
    return merge(parts)


def _bicycle(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    frame = pal.paint(rng)
    r = 0.34
    wheels = [
        cylinder((x, 0, r), r, 0.05, "y", pal.tyre, sections=16)
        for x in (length / 2 - r, -length / 2 + r)
    ]
    rear, front = -length / 2 + r, length / 2 - r
    seat_x, seat_z = rear + 0.35, 0.9
    bar_x, bar_z = front - 0.1, 0.95

    def tube(p0, p1, thick=0.035):
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        tube_length = np.linalg.norm(p1 - p0)
        t = box((0, -thick, -thick), (tube_length, thick, thick), frame)
        angle = np.arctan2(p1[2] - p0[2], p1[0] - p0[0])
        t = rotated(t, -angle, "y", (0, 0, 0))
        return Mesh(t.vertices + p0, t.faces, t.material)

    crank = (rear + 0.55, 0, r)
    tubes = [
        tube((rear, 0, r), crank),
        tube(crank, (seat_x, 0, seat_z)),
        tube((rear, 0, r), (seat_x, 0, seat_z)),
        tube(crank, (bar_x, 0, bar_z - 0.1)),
        tube((seat_x, 0, seat_z - 0.05), (bar_x, 0, bar_z - 0.1)),
        tube((front, 0, r), (bar_x, 0, bar_z)),
    ]
    seat = box((seat_x - 0.12, -0.07, seat_z), (seat_x + 0.08, 0.07, seat_z + 0.05), pal.dark_metal)
    handlebar = box(
        (bar_x - 0.04, -width / 2, bar_z - 0.03),
        (bar_x + 0.04, width / 2, bar_z + 0.01),
        pal.dark_metal,
    )
    parts = wheels + tubes + [seat, handlebar]
    if rider:
        parts.append(_cycle_rider(seat_x - 0.05, seat_z + 0.05, 1.7, rng, pal))
    return merge(parts)


def _traffic_cone(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    base = box((-length / 2, -width / 2, 0.0), (length / 2, width / 2, 0.04), pal.dark_metal)
    cone = frustum(
        (0, 0, 0.04), 0.36 * min(length, width), 0.05 * min(length, width), height - 0.04, pal.cone
    )
    return merge([base, cone])


def _barrier(length, width, height, rng, pal: _Palette, rider: bool) -> Mesh:
    # The long side runs along y (nuScenes barriers: width ~2.5 m, length ~0.5 m).
    if rng.random() < 0.5:
        profile = [
            (-length / 2, 0.0),
            (length / 2, 0.0),
            (length / 2, 0.1),
            (0.2 * length, 0.35 * height),
            (0.15 * length, height),
            (-0.15 * length, height),
            (-0.2 * length, 0.35 * height),
            (-length / 2, 0.1),
        ]
        return extrude_profile(profile, -width / 2, width / 2, pal.concrete)
    panel = box((-0.06, -width / 2, 0.35 * height), (0.06, width / 2, height), pal.striped)
    feet = [
        box((-length / 2, y - 0.1, 0.0), (length / 2, y + 0.1, 0.08), pal.dark_metal)
        for y in (-width / 2 + 0.2, width / 2 - 0.2)
    ]
    posts = [
        box((-0.04, y - 0.04, 0.08), (0.04, y + 0.04, 0.35 * height), pal.dark_metal)
        for y in (-width / 2 + 0.2, width / 2 - 0.2)
    ]
    return merge([panel] + feet + posts)


CLASS_BUILDERS: Dict[str, Callable] = {
    "car": _car,
    "truck": _truck,
    "bus": _bus,
    "trailer": _trailer,
    "construction_vehicle": _construction_vehicle,
    "pedestrian": _pedestrian,
    "motorcycle": _motorcycle,
    "bicycle": _bicycle,
    "traffic_cone": _traffic_cone,
    "barrier": _barrier,
}


class AssetFactory:
    """Builds object and prop meshes whose materials live in one scene's MaterialTable."""

    def __init__(self, materials: tx.MaterialTable):
        self.materials = materials
        self.palette = _Palette(materials)

    def object_mesh(
        self,
        class_name: str,
        size_lwh: Tuple[float, float, float],
        rng: np.random.Generator,
        rider: bool = False,
    ) -> Mesh:
        """Mesh of a detection-class object whose bounds are exactly its box.

        Args:
            class_name: one of the ten detection classes.
            size_lwh: (length, width, height), meters.
            rider: for bicycles and motorcycles, whether a rider sits on it.
        """
        if class_name not in CLASS_BUILDERS:
            raise KeyError(f"Unknown class '{class_name}', expected one of {list(CLASS_BUILDERS)}")
        length, width, height = size_lwh
        raw = CLASS_BUILDERS[class_name](length, width, height, rng, self.palette, rider)
        return fit_to_box(raw, length, width, height)

    # -- static props (not annotated) ---------------------------------------------------------
    def tree(self, rng: np.random.Generator) -> Mesh:
        trunk_h = rng.uniform(2.0, 3.5)
        crown = rng.uniform(1.5, 3.2)
        bark = self.materials.add(
            tx.NOISE, (0.30, 0.22, 0.15), (0.20, 0.15, 0.10), scale=0.3, reflectivity=10.0
        )
        green = (rng.uniform(0.12, 0.25), rng.uniform(0.3, 0.45), rng.uniform(0.1, 0.2))
        leaves = self.materials.add(
            tx.NOISE,
            green,
            tuple(0.6 * np.array(green)),
            scale=0.4,
            reflectivity=16.0,
            reflectivity2=10.0,
        )
        trunk = cylinder(
            (0, 0, trunk_h / 2 + 0.3), rng.uniform(0.12, 0.22), trunk_h + 0.6, "z", bark, sections=8
        )
        canopy = ellipsoid(
            (0, 0, trunk_h + 0.8 * crown),
            (crown, crown, 1.1 * crown),
            leaves,
            subdivisions=1,
            jitter=0.18,
            rng=rng,
        )
        return merge([trunk, canopy])

    def street_light(self, rng: np.random.Generator) -> Mesh:
        h = rng.uniform(6.5, 9.0)
        arm = rng.uniform(1.5, 2.5)
        pal = self.palette
        pole = cylinder((0, 0, h / 2), 0.1, h, "z", pal.metal, sections=8)
        arm_mesh = box((0, -0.05, h - 0.15), (arm, 0.05, h - 0.05), pal.metal)
        lamp = box((arm - 0.5, -0.2, h - 0.3), (arm + 0.1, 0.2, h - 0.12), pal.dark_metal)
        return merge([pole, arm_mesh, lamp])

    def traffic_sign(self, rng: np.random.Generator) -> Mesh:
        h = rng.uniform(2.2, 2.8)
        color = _pick(rng, ((0.8, 0.1, 0.1), (0.1, 0.3, 0.7), (0.9, 0.8, 0.1)))
        plate_mat = self.materials.add(tx.PLAIN, color, reflectivity=170.0)
        pole = cylinder((0, 0, h / 2), 0.04, h, "z", self.palette.metal, sections=6)
        plate = cylinder((0.05, 0, h + 0.25), 0.32, 0.03, "x", plate_mat, sections=12)
        return merge([pole, plate])

    def traffic_light(self, rng: np.random.Generator, reach: float) -> Mesh:
        """Pole with an arm of length `reach` along +x carrying a signal head."""
        h = rng.uniform(5.5, 6.5)
        pal = self.palette
        pole = cylinder((0, 0, h / 2), 0.13, h, "z", pal.dark_metal, sections=8)
        arm = box((0, -0.07, h - 0.3), (reach, 0.07, h - 0.15), pal.dark_metal)
        head = box((reach - 0.6, -0.2, h - 1.3), (reach - 0.25, 0.2, h - 0.15), pal.dark_metal)
        return merge([pole, arm, head])

    def building(
        self, rng: np.random.Generator, length: float, depth: float, height: float
    ) -> Mesh:
        """Box building, facade along +-y faces (x = along the street)."""
        wall = (rng.uniform(0.45, 0.85),) * 3
        tint = rng.uniform(-0.08, 0.08, size=3)
        wall = tuple(np.clip(np.array(wall) + tint, 0.1, 0.95))
        window = tuple(np.array([0.10, 0.13, 0.17]) + rng.uniform(0, 0.08))
        facade = self.materials.add(
            tx.WINDOWS,
            wall,
            window,
            scale=rng.uniform(2.5, 4.5),
            scale2=rng.uniform(3.0, 3.6),
            reflectivity=35.0,
            reflectivity2=8.0,
        )
        roof = self.materials.add(
            tx.NOISE, (0.3, 0.3, 0.32), (0.4, 0.4, 0.4), scale=2.0, reflectivity=20.0
        )
        body = box((-length / 2, -depth / 2, 0.0), (length / 2, depth / 2, height), facade)
        parapet = box(
            (-length / 2, -depth / 2, height), (length / 2, depth / 2, height + 0.4), roof
        )
        return merge([body, parapet])

    def wall(self, length: float, height: float, thickness: float, hedge: bool) -> Mesh:
        """Low wall or hedge along x."""
        if hedge:
            mat = self.materials.add(
                tx.NOISE, (0.15, 0.35, 0.12), (0.08, 0.2, 0.07), scale=0.3, reflectivity=15.0
            )
        else:
            mat = self.palette.concrete
        return box((-length / 2, -thickness / 2, 0.0), (length / 2, thickness / 2, height), mat)
