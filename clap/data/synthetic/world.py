"""Scene layout: roads, props, the annotated objects with their motion, the ego route, the sun.

A `SceneWorld` holds everything needed to render any instant of one scene:
- `static_mesh`: ground, curbs, buildings, trees, poles and every object that does not move,
- `objects`: the annotated objects (meshes in their own frame + motion over time),
- `ego_pose(t)`: where the ego vehicle is at time t (seconds from the first key frame),
- `dynamic_mesh(t)`: the moving objects placed at time t.
World coordinates are the global (map) frame: x, y on the ground, z up, meters; the road
surface is z = 0, everything off the road z = CURB_HEIGHT.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import shapely

from . import textures as tx
from .assets import AssetFactory, Mesh
from .constants import (
    CLASS_SPECS,
    CURB_HEIGHT,
    EGO_LENGTH,
    EGO_REAR_OVERHANG,
    EGO_WIDTH,
    SAMPLE_INTERVAL,
    WORLD_MARGIN,
)
from .geometry import Polyline, rectangle_corners, rectangles_overlap
from .roads import (
    Road,
    RoadNetwork,
    build_ground_mesh,
    build_network,
    build_surface_raster,
    crosswalk_positions,
    drivable_area_mask,
    junction_clearance,
)


@dataclass
class Motion:
    """Pose over time. Static: (x, y, yaw). Moving: along `path` from arc length `s0` at `speed`
    m/s, heading along the path."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    path: Optional[Polyline] = None
    s0: float = 0.0
    speed: float = 0.0

    @property
    def moving(self) -> bool:
        return self.path is not None

    def pose(self, t) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y (meters) and yaw (radians), each shaped like `t` (seconds)."""
        t = np.asarray(t, dtype=np.float64)
        if self.path is None:
            return (np.full(t.shape, self.x), np.full(t.shape, self.y), np.full(t.shape, self.yaw))
        s = self.s0 + self.speed * t
        xy = self.path.point(s)
        return xy[..., 0], xy[..., 1], self.path.heading(s)


@dataclass
class SceneObject:
    """An annotated object: detection class, box size (l, w, h) m, mesh in its own frame (bounds
    = the box, bottom at z = 0), motion, ground height z (m) and nuScenes attribute (or None)."""

    class_name: str
    size_lwh: Tuple[float, float, float]
    mesh: Mesh
    motion: Motion
    z: float
    attribute: Optional[str]


@dataclass
class WorldMesh:
    """Triangles in world coordinates with per-face data.

    vertices (V, 3) float64 m, faces (F, 3) int, material (F,) int, object (F,) int (index into
    `SceneWorld.objects`, -1 for the world), local (F, 3, 3) float32: each face's vertices in its
    object's own frame (world coordinates for the ground), for textures.
    """

    vertices: np.ndarray
    faces: np.ndarray
    material: np.ndarray
    object: np.ndarray
    local: np.ndarray

    @staticmethod
    def concatenate(parts: List["WorldMesh"]) -> "WorldMesh":
        if not parts:
            return WorldMesh(
                np.zeros((0, 3)),
                np.zeros((0, 3), np.int64),
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                np.zeros((0, 3, 3), np.float32),
            )
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
        return WorldMesh(
            np.concatenate([p.vertices for p in parts]),
            np.concatenate([p.faces + o for p, o in zip(parts, offsets)]),
            np.concatenate([p.material for p in parts]),
            np.concatenate([p.object for p in parts]),
            np.concatenate([p.local for p in parts]),
        )


def place_mesh(
    mesh: Mesh,
    x: float,
    y: float,
    z: float,
    yaw: float,
    object_index: int,
    local_is_world: bool = False,
) -> WorldMesh:
    """`mesh` (own frame) put at (x, y, z) with heading `yaw` in the world."""
    c, s = np.cos(yaw), np.sin(yaw)
    v = mesh.vertices
    world = np.stack(
        [x + c * v[:, 0] - s * v[:, 1], y + s * v[:, 0] + c * v[:, 1], z + v[:, 2]], axis=1
    )
    local_vertices = world if local_is_world else v
    return WorldMesh(
        world,
        mesh.faces,
        mesh.material,
        np.full(len(mesh.faces), object_index, dtype=np.int64),
        local_vertices[mesh.faces].astype(np.float32),
    )


@dataclass
class Lighting:
    """Sun direction (unit (3,), towards the sun), sun and sky colours (RGB), haze distance (m),
    exposure multiplier, all float32; seed of the clouds."""

    sun_direction: np.ndarray
    sun_color: np.ndarray
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    ambient: np.ndarray
    haze_distance: float
    exposure: float
    cloud_seed: int


class _Occupancy:
    """Footprints of everything placed so far (static and over the check times), for rejecting
    overlapping placements with a separating-axis test."""

    def __init__(self, num_times: int):
        self.num_times = num_times
        self.corners: List[np.ndarray] = []  # each (T, 4, 2)
        self.boxes: List[np.ndarray] = []  # each (4,) aabb over all times

    def is_free(self, corners: np.ndarray) -> bool:
        """corners (T, 4, 2) or (4, 2) for a static footprint."""
        if corners.ndim == 2:
            corners = np.broadcast_to(corners, (self.num_times, 4, 2))
        if not self.corners:
            return True
        lo, hi = corners.reshape(-1, 2).min(0), corners.reshape(-1, 2).max(0)
        boxes = np.asarray(self.boxes)
        near = np.nonzero(
            (boxes[:, 0] < hi[0])
            & (boxes[:, 2] > lo[0])
            & (boxes[:, 1] < hi[1])
            & (boxes[:, 3] > lo[1])
        )[0]
        if not len(near):
            return True
        others = np.stack([self.corners[k] for k in near])  # (K, T, 4, 2)
        return not rectangles_overlap(corners[None], others).any()

    def add(self, corners: np.ndarray) -> None:
        if corners.ndim == 2:
            corners = np.broadcast_to(corners, (self.num_times, 4, 2))
        flat = corners.reshape(-1, 2)
        self.corners.append(np.ascontiguousarray(corners))
        self.boxes.append(np.concatenate([flat.min(0), flat.max(0)]))


# Free ground an object keeps around its box: on a sidewalk from the curb edge, on the road from
# the curb (meters).
SIDEWALK_CLEARANCE = 0.45
ROAD_CLEARANCE = 0.1


def _sample_size(
    class_name: str, rng: np.random.Generator, rider: bool = False
) -> Tuple[float, float, float]:
    """Box size (l, w, h) in meters, around the nuScenes mean of the class."""
    spec = CLASS_SPECS[class_name]
    mean_width, mean_length, mean_height = spec["size"]
    spread_width, spread_length, spread_height = spec["spread"]
    factors = np.clip(
        1.0 + rng.normal(size=3) * np.array([spread_length, spread_width, spread_height]), 0.7, 1.35
    )
    length, width, height = (
        mean_length * factors[0],
        mean_width * factors[1],
        mean_height * factors[2],
    )
    if class_name in ("bicycle", "motorcycle"):
        height = rng.uniform(1.6, 1.8) if rider else rng.uniform(1.0, 1.2)
    return float(length), float(width), float(height)


# Classes drawn for parked vehicles, lane traffic and stopped traffic.
_PARKED = (
    ("car", 0.8),
    ("truck", 0.08),
    ("motorcycle", 0.06),
    ("trailer", 0.03),
    ("construction_vehicle", 0.03),
)
_TRAFFIC = (("car", 0.78), ("truck", 0.1), ("bus", 0.07), ("motorcycle", 0.05))


def _choose(rng: np.random.Generator, table) -> str:
    names = [n for n, _ in table]
    probs = np.array([p for _, p in table])
    return names[int(rng.choice(len(names), p=probs / probs.sum()))]


class _Builder:
    """Places everything of one scene; see `build_world`."""

    def __init__(self, rng: np.random.Generator, num_samples: int):
        self.rng = rng
        self.duration = SAMPLE_INTERVAL * (num_samples - 1)
        self.check_times = np.linspace(0.0, self.duration, max(2, int(self.duration / 0.1) + 1))
        self.occupancy = _Occupancy(len(self.check_times))
        self.materials = tx.MaterialTable()
        self.factory = AssetFactory(self.materials)
        self.objects: List[SceneObject] = []
        self.static_parts: List[WorldMesh] = []

    # -- layout -----------------------------------------------------------------------------
    def build_roads(self):
        rng = self.rng
        self.ego_speed = rng.uniform(3.0, 9.0)
        route_length = self.ego_speed * self.duration
        self.route_start = WORLD_MARGIN + 10.0
        self.network, _ = build_network(rng, route_length, self.route_start, WORLD_MARGIN)
        self.road_prepared = self.network.road_area
        shapely.prepare(self.road_prepared)
        main = self.network.main
        lane = int(rng.integers(main.lanes_forward))
        self.ego_lane = lane
        self.ego_path = self._lane_path(main, lane, forward=True)
        self.ego_motion = Motion(path=self.ego_path, s0=self.route_start, speed=self.ego_speed)
        # Ego footprint over time (rear axle origin, body ahead of it), with 4 m of headway in
        # front and behind so that lane traffic keeps its distance.
        x, y, yaw = self.ego_motion.pose(self.check_times)
        ahead = EGO_LENGTH / 2 - EGO_REAR_OVERHANG
        cx, cy = x + ahead * np.cos(yaw), y + ahead * np.sin(yaw)
        self.occupancy.add(rectangle_corners(cx, cy, yaw, EGO_LENGTH + 8.0, EGO_WIDTH + 0.6))
        # Arc length interval of the main road the ego covers.
        self.route_s = (self.route_start, self.route_start + route_length)

    def _lane_path(self, road: Road, lane: int, forward: bool) -> Polyline:
        vertices = road.centerline.offset_vertices(road.lane_offset(lane, forward))
        return Polyline(vertices if forward else vertices[::-1])

    def _offset_path(self, road: Road, offset: float, forward: bool) -> Polyline:
        vertices = road.centerline.offset_vertices(offset)
        return Polyline(vertices if forward else vertices[::-1])

    def _s_on(self, road: Road, point: np.ndarray) -> float:
        return float(road.centerline.project(np.asarray(point)[None])[0][0])

    def near_route_s(self, road: Road, before: float, after: float) -> Tuple[float, float]:
        """Arc-length interval of `road` close to the ego route."""
        if road is self.network.main:
            return self.route_s[0] - before, self.route_s[1] + after
        s_j = self._s_on(road, self.network.junction_point)
        return s_j - after, s_j + after

    # -- surface tests ------------------------------------------------------------------------
    def on_road(self, corners: np.ndarray) -> bool:
        pts = corners.reshape(-1, 2)
        return bool(shapely.contains_xy(self.road_prepared, pts[:, 0], pts[:, 1]).all())

    def off_road(self, corners: np.ndarray) -> bool:
        pts = corners.reshape(-1, 2)
        x0, y0, x1, y1 = self.network.world_rect
        inside = (pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)
        return bool(
            inside.all() and not shapely.contains_xy(self.road_prepared, pts[:, 0], pts[:, 1]).any()
        )

    # -- adding things ------------------------------------------------------------------------
    def add_prop(self, mesh: Mesh, x: float, y: float, yaw: float, footprint_lw) -> bool:
        corners = rectangle_corners(x, y, yaw, *footprint_lw)
        if not self.occupancy.is_free(corners) or not self.off_road(corners):
            return False
        self.occupancy.add(corners)
        self.static_parts.append(place_mesh(mesh, x, y, CURB_HEIGHT, yaw, -1))
        return True

    def try_object(
        self,
        class_name: str,
        motion: Motion,
        surface: str,
        attribute: Optional[str],
        rider: bool = False,
        size: Optional[Tuple[float, float, float]] = None,
        margin: float = 0.25,
    ) -> bool:
        """Place an object if its footprint (plus `margin` m) stays free at every check time and
        on `surface` ("road" or "raised"; raised objects keep SIDEWALK_CLEARANCE from the curb,
        road objects ROAD_CLEARANCE)."""
        length, width, height = size or _sample_size(class_name, self.rng, rider)
        x, y, yaw = motion.pose(self.check_times if motion.moving else np.zeros(1))
        clearance = ROAD_CLEARANCE if surface == "road" else SIDEWALK_CLEARANCE
        ground = rectangle_corners(x, y, yaw, length + 2 * clearance, width + 2 * clearance)
        surface_ok = self.on_road(ground) if surface == "road" else self.off_road(ground)
        if not surface_ok:
            return False
        corners = rectangle_corners(x, y, yaw, length + 2 * margin, width + 2 * margin)
        if corners.shape[0] == 1:
            corners = corners[0]
        if not self.occupancy.is_free(corners):
            return False
        self.occupancy.add(corners)
        size = (length, width, height)
        mesh = self.factory.object_mesh(class_name, size, self.rng, rider)
        z = 0.0 if surface == "road" else CURB_HEIGHT
        self.objects.append(SceneObject(class_name, size, mesh, motion, z, attribute))
        return True

    # -- static props ---------------------------------------------------------------------------
    def place_props(self):
        rng = self.rng
        for road in self.network.roads:
            length = road.centerline.length
            for right in (True, False):
                sign = -1.0 if right else 1.0
                edge = road.edge_offset(right)
                sw = road.sidewalk_width
                # Buildings beyond the sidewalk.
                s = rng.uniform(0, 10)
                while s < length:
                    b_len = rng.uniform(8.0, 30.0)
                    depth = rng.uniform(8.0, 18.0)
                    height = rng.uniform(5.0, 30.0) if rng.random() < 0.8 else rng.uniform(30, 50)
                    setback = rng.uniform(0.3, 6.0)
                    offset = edge + sign * (sw + setback + depth / 2)
                    centre = road.centerline.point(s + b_len / 2, offset)
                    yaw = float(road.centerline.heading(s + b_len / 2))
                    mesh = self.factory.building(rng, b_len, depth, height)
                    footprint = rectangle_corners(centre[0], centre[1], yaw, b_len, depth)
                    clear = rectangle_corners(centre[0], centre[1], yaw, b_len + 1.0, depth + 1.0)
                    if (
                        self.off_road(clear)
                        and self._clear_of_sidewalks(footprint)
                        and self.occupancy.is_free(clear)
                    ):
                        self.occupancy.add(footprint)
                        self.static_parts.append(
                            place_mesh(mesh, centre[0], centre[1], 0.0, yaw, -1)
                        )
                    s += b_len + rng.uniform(0.0, 10.0)
                # Trees between the sidewalk and the buildings, street lights and signs at the
                # curb.
                s = rng.uniform(0, 8)
                while s < length:
                    pos = road.centerline.point(s, edge + sign * (sw + rng.uniform(0.8, 2.5)))
                    if rng.random() < 0.55:
                        self.add_prop(
                            self.factory.tree(rng),
                            pos[0],
                            pos[1],
                            rng.uniform(-np.pi, np.pi),
                            (0.6, 0.6),
                        )
                    s += rng.uniform(7.0, 16.0)
                # Hedges and low walls along the back of the sidewalk.
                s = rng.uniform(0, 20)
                while s < length:
                    seg = rng.uniform(4.0, 12.0)
                    if rng.random() < 0.35:
                        hedge = bool(rng.random() < 0.5)
                        height = rng.uniform(0.8, 1.6) if hedge else rng.uniform(0.5, 1.1)
                        thickness = 0.7 if hedge else 0.3
                        pos = road.centerline.point(s + seg / 2, edge + sign * (sw + 0.5))
                        self.add_prop(
                            self.factory.wall(seg, height, thickness, hedge),
                            pos[0],
                            pos[1],
                            float(road.centerline.heading(s + seg / 2)),
                            (seg, thickness),
                        )
                    s += seg + rng.uniform(3.0, 15.0)
                s = rng.uniform(0, 30)
                while s < length:
                    pos = road.centerline.point(s, edge + sign * 0.45)
                    heading = float(road.centerline.heading(s)) - sign * np.pi / 2
                    self.add_prop(
                        self.factory.street_light(rng), pos[0], pos[1], heading, (0.4, 0.4)
                    )
                    s += rng.uniform(25.0, 40.0)
                s = rng.uniform(0, 40)
                while s < length:
                    pos = road.centerline.point(s, edge + sign * 0.4)
                    heading = float(road.centerline.heading(s)) + (np.pi if right else 0.0)
                    self.add_prop(
                        self.factory.traffic_sign(rng), pos[0], pos[1], heading, (0.3, 0.3)
                    )
                    s += rng.uniform(30.0, 80.0)
        self._traffic_lights()

    def _clear_of_sidewalks(self, corners: np.ndarray) -> bool:
        if not hasattr(self, "_sidewalks"):
            self._sidewalks = shapely.union_all(
                [road.area().buffer(road.sidewalk_width) for road in self.network.roads]
            )
            shapely.prepare(self._sidewalks)
        return not self._sidewalks.intersects(shapely.polygons(corners))

    def _traffic_lights(self):
        network = self.network
        if network.cross is None:
            return
        for road in network.roads:
            s_j = self._s_on(road, network.junction_point)
            clear = junction_clearance(network, road) + 4.5
            for s, right in ((s_j - clear, True), (s_j + clear, False)):
                offset = road.edge_offset(right) + (-0.6 if right else 0.6)
                pos = road.centerline.point(s, offset)
                # Arm over the approaching lanes: towards the centreline.
                heading = float(road.centerline.heading(s)) + (np.pi / 2 if right else -np.pi / 2)
                reach = min(5.0, abs(road.edge_offset(right)))
                mesh = self.factory.traffic_light(self.rng, reach)
                self.add_prop(mesh, pos[0], pos[1], heading, (0.4, 0.4))

    # -- annotated objects ----------------------------------------------------------------------
    def construction_zone(self):
        """Barriers, cones, a construction vehicle and workers on the opposite side of the main
        road (the parking strip, if any, and the outer lane), just ahead of the ego's start."""
        rng = self.rng
        main = self.network.main
        width = max(main.parking_left, 0.0) + main.lane_width * 0.9
        inner = main.left_width - width  # left offset of the zone's lane-side boundary
        sign = 1.0
        start = self.route_s[0] + rng.uniform(2.0, 12.0)
        length = rng.uniform(16.0, 28.0)
        line = main.centerline
        # Row of barriers along the lane side of the zone.
        s = start + 3.0
        while s < start + length - 3.0:
            size = _sample_size("barrier", rng)
            pos = line.point(s, inner + sign * (size[0] / 2 + 0.2))
            yaw = float(line.heading(s)) + np.pi / 2
            self.try_object(
                "barrier", Motion(pos[0], pos[1], yaw), "road", None, size=size, margin=0.05
            )
            s += size[1] + rng.uniform(0.1, 0.6)
        # Cone tapers at both ends and a few inside.
        for s_end, direction in ((start, 1.0), (start + length, -1.0)):
            for k in range(4):
                frac = k / 3.0
                pos = line.point(
                    s_end + direction * 2.5 * (1 - frac),
                    inner + sign * (0.3 + frac * (width - 0.6)),
                )
                self.try_object(
                    "traffic_cone",
                    Motion(pos[0], pos[1], rng.uniform(-3, 3)),
                    "road",
                    None,
                    margin=0.05,
                )
        for _ in range(3):
            pos = line.point(
                rng.uniform(start + 3, start + length - 3),
                inner + sign * rng.uniform(0.5, width - 0.5),
            )
            self.try_object(
                "traffic_cone",
                Motion(pos[0], pos[1], rng.uniform(-3, 3)),
                "road",
                None,
                margin=0.05,
            )
        # Construction vehicle and workers inside.
        yaw0 = float(line.heading(start + length / 2)) + np.pi
        for _ in range(10):
            pos = line.point(
                rng.uniform(start + 5, start + length - 5), inner + sign * (width / 2 + 0.3)
            )
            if self.try_object(
                "construction_vehicle",
                Motion(pos[0], pos[1], yaw0 + rng.uniform(-0.2, 0.2)),
                "road",
                "vehicle.parked",
                margin=0.1,
            ):
                break
        for _ in range(6):
            pos = line.point(
                rng.uniform(start + 2, start + length - 2), inner + sign * rng.uniform(0.4, width)
            )
            self.try_object(
                "pedestrian",
                Motion(pos[0], pos[1], rng.uniform(-3, 3)),
                "road",
                "pedestrian.standing",
            )

    def parked(self, class_name: str, road: Road, right: bool, s: float) -> bool:
        """A parked vehicle in the parking strip on one side (False without a strip)."""
        if road.parking_offset(right) is None:
            return False
        return self.curbside(class_name, road, right, s)

    def curbside(
        self, class_name: str, road: Road, right: bool, s: float, attribute: Optional[str] = None
    ) -> bool:
        """A vehicle against the curb (in the parking strip or the outer lane), parked unless
        another `attribute` is given."""
        size = _sample_size(class_name, self.rng)
        sign = -1.0 if right else 1.0
        gap = self.rng.uniform(0.2, 0.45)
        pos = road.centerline.point(s, road.edge_offset(right) - sign * (size[1] / 2 + gap))
        yaw = float(road.centerline.heading(s)) + (0.0 if right else np.pi)
        if attribute is None:
            attribute = "cycle.without_rider" if class_name == "motorcycle" else "vehicle.parked"
        return self.try_object(
            class_name, Motion(pos[0], pos[1], yaw), "road", attribute, size=size, margin=0.3
        )

    def lane_vehicle(
        self, class_name: str, road: Road, lane: int, forward: bool, s: float, speed: float
    ) -> bool:
        path = self._lane_path(road, lane, forward)
        s_path = s if forward else path.length - s
        rider = class_name in ("motorcycle", "bicycle")
        if speed <= 0:
            x, y, yaw = Motion(path=path, s0=s_path).pose(np.zeros(1))
            motion = Motion(float(x[0]), float(y[0]), float(yaw[0]))
            attribute = "vehicle.stopped" if not rider else "cycle.with_rider"
        else:
            motion = Motion(path=path, s0=s_path, speed=speed)
            attribute = "vehicle.moving" if not rider else "cycle.with_rider"
        return self.try_object(class_name, motion, "road", attribute, rider, margin=0.5)

    def cyclist(self, road: Road, forward: bool, s: float, speed: float) -> bool:
        """Bicycle with rider along the outer edge of the outermost lane."""
        if forward:
            offset = -(road.lanes_forward * road.lane_width) + 0.7
        else:
            offset = road.lanes_backward * road.lane_width - 0.7
        path = self._offset_path(road, offset, forward)
        s_path = s if forward else path.length - s
        return self.try_object(
            "bicycle",
            Motion(path=path, s0=s_path, speed=speed),
            "road",
            "cycle.with_rider",
            rider=True,
            margin=0.3,
        )

    def sidewalk_pedestrian(self, road: Road, right: bool, s: float, moving: bool) -> bool:
        sign = -1.0 if right else 1.0
        offset = road.edge_offset(right) + sign * self.rng.uniform(0.85, road.sidewalk_width - 0.4)
        if moving:
            forward = self.rng.random() < 0.5
            path = self._offset_path(road, offset, forward)
            s_path = s if forward else path.length - s
            motion = Motion(path=path, s0=s_path, speed=self.rng.uniform(0.8, 1.7))
            attribute = "pedestrian.moving"
        else:
            pos = road.centerline.point(s, offset)
            motion = Motion(pos[0], pos[1], self.rng.uniform(-np.pi, np.pi))
            attribute = "pedestrian.standing"
        return self.try_object("pedestrian", motion, "raised", attribute, margin=0.1)

    def crossing_pedestrian(self, road: Road, s: float) -> bool:
        rng = self.rng
        speed = rng.uniform(0.9, 1.6)
        start_off = rng.uniform(-road.right_width + 0.5, road.left_width - 0.5)
        direction = 1.0 if rng.random() < 0.5 else -1.0
        a = road.centerline.point(s + rng.uniform(-1, 1), start_off - direction * 30.0)
        b = road.centerline.point(s + rng.uniform(-1, 1), start_off + direction * 30.0)
        path = Polyline(np.stack([a, b]))
        motion = Motion(path=path, s0=30.0, speed=speed)
        return self.try_object("pedestrian", motion, "road", "pedestrian.moving", margin=0.1)

    def parked_bicycle(self, road: Road, right: bool, s: float) -> bool:
        sign = -1.0 if right else 1.0
        size = _sample_size("bicycle", self.rng)
        turn = float(self.rng.choice([0.0, np.pi / 2, np.pi]))
        half_extent = size[0] / 2 if turn == np.pi / 2 else size[1] / 2
        pos = road.centerline.point(
            s, road.edge_offset(right) + sign * (SIDEWALK_CLEARANCE + half_extent + 0.1)
        )
        yaw = float(road.centerline.heading(s)) + turn
        return self.try_object(
            "bicycle",
            Motion(pos[0], pos[1], yaw),
            "raised",
            "cycle.without_rider",
            size=size,
            margin=0.1,
        )

    # -- scene population -----------------------------------------------------------------------
    def populate(self):
        """Guarantee every class close to the route, then fill the streets."""
        rng = self.rng
        network = self.network
        main = network.main
        self.construction_zone()
        lo, hi = self.near_route_s(main, 5.0, 25.0)
        sides = [True, False]

        def attempts(fn, n=40):
            for _ in range(n):
                if fn():
                    return True
            return False

        # Guaranteed instances near the route (the construction zone holds barriers, cones and
        # the construction vehicle). Each try picks one of the ways to place the class.
        roads = network.roads

        def near_s(road):
            r_lo, r_hi = self.near_route_s(road, 5.0, 25.0)
            return rng.uniform(max(r_lo, 0.0), min(r_hi, road.centerline.length))

        def at_curb(class_name, attribute=None):
            road = roads[int(rng.integers(len(roads)))]
            return self.curbside(class_name, road, bool(rng.choice(sides)), near_s(road), attribute)

        def in_lane(class_name):
            road = roads[int(rng.integers(len(roads)))]
            forward = bool(rng.choice(sides))
            lanes = road.lanes_forward if forward else road.lanes_backward
            lane = int(rng.integers(lanes))
            if road is main and forward and lane == self.ego_lane:
                speed = self.ego_speed
            else:
                speed = float(rng.choice([0.0, rng.uniform(4.0, 10.0)]))
            return self.lane_vehicle(class_name, road, lane, forward, near_s(road), speed)

        ways = {
            "car": (at_curb, in_lane),
            "truck": (at_curb, in_lane),
            "bus": (in_lane, lambda c: at_curb(c, "vehicle.stopped")),
            "trailer": (at_curb,),
            "motorcycle": (at_curb, in_lane),
            "construction_vehicle": (at_curb,),
        }
        for class_name, options in ways.items():
            if any(o.class_name == class_name for o in self.objects):
                continue
            attempts(lambda c=class_name, o=options: o[int(rng.integers(len(o)))](c), n=80)
        attempts(lambda: self.parked_bicycle(main, bool(rng.choice(sides)), rng.uniform(lo, hi)))
        attempts(
            lambda: self.cyclist(
                main, bool(rng.choice(sides)), rng.uniform(lo, hi), rng.uniform(3.0, 6.0)
            )
        )
        for _ in range(3):
            attempts(
                lambda: self.sidewalk_pedestrian(
                    main, bool(rng.choice(sides)), rng.uniform(lo, hi), rng.random() < 0.6
                )
            )
        for class_name in ("barrier", "traffic_cone"):
            # Extra ones along the curbs, in case the zone got crowded.
            attempts(lambda c=class_name: self._roadside_static(c, main, lo, hi))

        # Fill.
        for road in network.roads:
            r_lo, r_hi = self.near_route_s(road, 70.0, 70.0)
            r_lo, r_hi = max(r_lo, 0.0), min(r_hi, road.centerline.length)
            span = r_hi - r_lo
            for right in sides:
                if road.parking_offset(right) is not None:
                    s = r_lo + rng.uniform(0, 4)
                    while s < r_hi:
                        if rng.random() < 0.6:
                            self.parked(_choose(rng, _PARKED), road, right, s)
                        s += rng.uniform(5.5, 9.0)
                for _ in range(int(span / 12)):
                    self.sidewalk_pedestrian(
                        road, right, rng.uniform(r_lo, r_hi), rng.random() < 0.6
                    )
                for _ in range(int(span / 60)):
                    self.parked_bicycle(road, right, rng.uniform(r_lo, r_hi))
            for forward in (True, False):
                lanes = road.lanes_forward if forward else road.lanes_backward
                for lane in range(lanes):
                    is_ego_lane = road is main and forward and lane == self.ego_lane
                    speed = self.ego_speed if is_ego_lane else rng.uniform(4.0, 12.0)
                    if road is not main and rng.random() < 0.5:
                        speed = 0.0  # waiting at the junction
                    s = r_lo + rng.uniform(0, 15)
                    while s < r_hi:
                        self.lane_vehicle(_choose(rng, _TRAFFIC), road, lane, forward, s, speed)
                        s += rng.uniform(12.0, 35.0)
                if rng.random() < 0.4:
                    self.cyclist(road, forward, rng.uniform(r_lo, r_hi), rng.uniform(3.0, 6.0))
        for road, s in crosswalk_positions(network):
            for _ in range(int(rng.integers(0, 3))):
                self.crossing_pedestrian(road, s)
        for _ in range(int(rng.integers(2, 6))):
            self._roadside_static("traffic_cone", main, *self.near_route_s(main, 40, 40))
        for _ in range(int(rng.integers(0, 4))):
            self._roadside_static("barrier", main, *self.near_route_s(main, 40, 40))

    def _roadside_static(self, class_name: str, road: Road, lo: float, hi: float) -> bool:
        """A cone or barrier on the road next to a curb."""
        right = bool(self.rng.random() < 0.5)
        s = self.rng.uniform(lo, hi)
        sign = -1.0 if right else 1.0
        size = _sample_size(class_name, self.rng)
        pos = road.centerline.point(s, road.edge_offset(right) - sign * (size[0] / 2 + 0.3))
        yaw = float(road.centerline.heading(s)) + (
            np.pi / 2 if class_name == "barrier" else self.rng.uniform(-3, 3)
        )
        return self.try_object(
            class_name, Motion(pos[0], pos[1], yaw), "road", None, size=size, margin=0.05
        )

    # -- lighting -------------------------------------------------------------------------------
    def lighting(self) -> Lighting:
        rng = self.rng
        elevation = rng.uniform(0.35, 1.1)
        azimuth = rng.uniform(-np.pi, np.pi)
        overcast = rng.random() < 0.3
        sun = np.array(
            [
                np.cos(elevation) * np.cos(azimuth),
                np.cos(elevation) * np.sin(azimuth),
                np.sin(elevation),
            ]
        )
        warmth = rng.uniform(0.0, 0.12)
        sun_color = np.array([1.0, 0.96 - warmth / 2, 0.9 - warmth]) * (0.45 if overcast else 1.0)
        zenith = np.array([0.25, 0.45, 0.85]) if not overcast else np.array([0.6, 0.63, 0.68])
        horizon = np.array([0.75, 0.82, 0.92]) if not overcast else np.array([0.78, 0.8, 0.82])
        ambient = np.array([0.42, 0.46, 0.52]) * (1.5 if overcast else 1.0)
        f32 = np.float32
        return Lighting(
            sun.astype(f32),
            sun_color.astype(f32),
            zenith.astype(f32),
            horizon.astype(f32),
            ambient.astype(f32),
            f32(rng.uniform(250, 600)),
            f32(rng.uniform(0.9, 1.1)),
            int(rng.integers(1 << 20)),
        )


@dataclass
class SceneWorld:
    """Everything of one scene; see the module docstring."""

    network: RoadNetwork
    surface: tx.SurfaceRaster
    materials: Dict[str, np.ndarray]
    road_material: int
    raised_material: int
    static_mesh: WorldMesh
    objects: List[SceneObject]
    ego_motion: Motion
    lighting: Lighting
    map_mask: np.ndarray

    def ego_pose(self, t: float) -> Tuple[float, float, float]:
        """Ego (rear axle centre) x, y in meters and yaw in radians at time t seconds."""
        x, y, yaw = self.ego_motion.pose(np.asarray([t], dtype=np.float64))
        return float(x[0]), float(y[0]), float(yaw[0])

    def object_pose(self, index: int, t: float) -> Tuple[float, float, float]:
        """Bottom centre x, y (m) and yaw (rad) of object `index` at time t (s)."""
        x, y, yaw = self.objects[index].motion.pose(np.asarray([t], dtype=np.float64))
        return float(x[0]), float(y[0]), float(yaw[0])

    @property
    def moving_indices(self) -> List[int]:
        return [i for i, o in enumerate(self.objects) if o.motion.moving]

    def dynamic_mesh(self, t: float) -> WorldMesh:
        """The moving objects at time t, in world coordinates."""
        parts = []
        for i in self.moving_indices:
            x, y, yaw = self.object_pose(i, t)
            parts.append(place_mesh(self.objects[i].mesh, x, y, self.objects[i].z, yaw, i))
        return WorldMesh.concatenate(parts)


def build_world(rng: np.random.Generator, num_samples: int) -> SceneWorld:
    """Lay out one scene lasting `num_samples` key frames (SAMPLE_INTERVAL apart)."""
    builder = _Builder(rng, num_samples)
    builder.build_roads()
    network = builder.network
    surface = build_surface_raster(network, rng)
    road_material = builder.materials.add(tx.SURFACE, (0.3, 0.3, 0.3))
    raised_material = builder.materials.add(tx.SURFACE, (0.6, 0.6, 0.6))
    curb_material = builder.materials.add(
        tx.NOISE, (0.70, 0.70, 0.68), (0.55, 0.55, 0.53), scale=0.4, reflectivity=35.0
    )
    ground = build_ground_mesh(network, road_material, raised_material, curb_material)
    builder.place_props()
    builder.populate()
    static_parts = [place_mesh(ground, 0.0, 0.0, 0.0, 0.0, -1, local_is_world=True)]
    static_parts += builder.static_parts
    for index, obj in enumerate(builder.objects):
        if not obj.motion.moving:
            static_parts.append(
                place_mesh(obj.mesh, obj.motion.x, obj.motion.y, obj.z, obj.motion.yaw, index)
            )
    return SceneWorld(
        network=network,
        surface=surface,
        materials=builder.materials.arrays(),
        road_material=road_material,
        raised_material=raised_material,
        static_mesh=WorldMesh.concatenate(static_parts),
        objects=builder.objects,
        ego_motion=builder.ego_motion,
        lighting=builder.lighting(),
        map_mask=drivable_area_mask(network),
    )
