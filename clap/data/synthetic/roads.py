"""Road network of one scene: a main road (straight and curved pieces) and a crossing road
(four-way intersection or T-junction), lanes, parking strips, markings, curbs and sidewalks.

Everything off the road is raised by CURB_HEIGHT (sidewalks near the road, grass beyond), so the
road is bounded by curbs. The network produces
- the surface raster (road, markings, sidewalk, grass classes; `textures.SurfaceRaster`),
- the static ground geometry (road plane, raised areas, curb walls) as one `assets.Mesh`,
- the drivable-area map mask written as the nuScenes map png.
Traffic drives on the right. Lengths in meters, angles in radians.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import cv2
import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.geometry import box as shapely_box

from . import textures as tx
from .assets import Mesh
from .constants import CURB_HEIGHT, MAP_RESOLUTION
from .geometry import Polyline, triangulate_simple_polygon


@dataclass
class Road:
    """One road: a centreline (the divider between the two directions) and its cross-section.

    Lanes "forward" run along the centreline direction on its right, "backward" lanes on its
    left. Parking strips lie between the outermost lane and the curb.
    """

    centerline: Polyline
    lanes_forward: int
    lanes_backward: int
    lane_width: float
    parking_right: float
    parking_left: float
    sidewalk_width: float
    centre_marking: str  # "double_yellow" or "dashed_white"

    @property
    def right_width(self) -> float:
        return self.lanes_forward * self.lane_width + self.parking_right

    @property
    def left_width(self) -> float:
        return self.lanes_backward * self.lane_width + self.parking_left

    def lane_offset(self, lane: int, forward: bool) -> float:
        """Left offset of the centre of driving lane `lane` (0: next to the centreline)."""
        sign = -1.0 if forward else 1.0
        return sign * (lane + 0.5) * self.lane_width

    def parking_offset(self, right: bool) -> Optional[float]:
        """Left offset of the centre of the parking strip on one side, None without one."""
        if right:
            return None if self.parking_right <= 0 else -(self.right_width - self.parking_right / 2)
        return None if self.parking_left <= 0 else self.left_width - self.parking_left / 2

    def edge_offset(self, right: bool) -> float:
        """Left offset of the curb on one side."""
        return -self.right_width if right else self.left_width

    def area(self) -> Polygon:
        left = self.centerline.offset_vertices(self.left_width)
        right = self.centerline.offset_vertices(-self.right_width)
        return Polygon(np.concatenate([left, right[::-1]])).buffer(0)


@dataclass
class RoadNetwork:
    """Main road, optional crossing road and where they meet."""

    main: Road
    cross: Optional[Road]
    junction_s: Optional[float]  # arc length of the junction on the main road
    junction_point: Optional[np.ndarray]  # (2,) world point
    world_rect: Tuple[float, float, float, float]  # x0, y0, x1, y1
    road_area: Polygon = field(default=None)
    junction_area: Polygon = field(default=None)

    @property
    def roads(self) -> List[Road]:
        return [self.main] + ([self.cross] if self.cross is not None else [])


def _arc_polyline(start: np.ndarray, heading: float, pieces, step: float = 1.0) -> np.ndarray:
    """Vertices of a curve made of ("straight", length) and ("arc", radius, signed angle)."""
    points = [np.asarray(start, dtype=np.float64)]
    pos = points[0].copy()
    for piece in pieces:
        if piece[0] == "straight":
            n = max(1, int(np.ceil(piece[1] / step)))
            for _ in range(n):
                pos = pos + piece[1] / n * np.array([np.cos(heading), np.sin(heading)])
                points.append(pos)
        else:
            radius, angle = piece[1], piece[2]
            n = max(2, int(np.ceil(abs(angle) * radius / step)))
            d_heading = angle / n
            chord = 2 * radius * np.sin(abs(d_heading) / 2)
            for _ in range(n):
                heading_mid = heading + d_heading / 2
                pos = pos + chord * np.array([np.cos(heading_mid), np.sin(heading_mid)])
                heading += d_heading
                points.append(pos)
    return np.asarray(points)


def build_network(
    rng: np.random.Generator, route_length: float, route_start: float, margin: float
) -> Tuple[RoadNetwork, float]:
    """Random road network around a route of `route_length` meters along the main road.

    The ego route starts at arc length `route_start` of the main road. The world rectangle
    covers the route with `margin` meters around it and starts at (0, 0), so world coordinates
    are the global (map) coordinates. Returns the network and the arc length where the
    junction is (None without junction).
    """
    lane_width = rng.uniform(3.1, 3.7)
    lanes = int(rng.choice([1, 2], p=[0.45, 0.55]))
    main_total = route_start + route_length + margin + 40.0
    # Junction somewhere the ego sees it: from just behind the start to ~30 m past the end.
    has_junction = rng.random() < 0.85
    junction_s = route_start + rng.uniform(-5.0, route_length + 30.0) if has_junction else None
    # One curve away from the junction (or none).
    pieces = []
    if rng.random() < 0.7:
        radius = rng.uniform(45.0, 120.0)
        angle = rng.choice([-1, 1]) * rng.uniform(0.35, 1.2)
        arc_len = radius * abs(angle)
        candidates = []
        low = 20.0
        for s0 in np.arange(low, main_total - arc_len - 20.0, 5.0):
            if junction_s is None or (s0 > junction_s + 35.0 or s0 + arc_len < junction_s - 35.0):
                candidates.append(s0)
        if candidates:
            s0 = float(candidates[int(rng.integers(len(candidates)))])
            pieces = [
                ("straight", s0),
                ("arc", radius, angle),
                ("straight", max(10.0, main_total - s0 - arc_len)),
            ]
    if not pieces:
        pieces = [("straight", main_total)]
    heading0 = rng.uniform(-np.pi, np.pi)
    main_vertices = _arc_polyline(np.zeros(2), heading0, pieces)
    main_line = Polyline(main_vertices)
    main = Road(
        centerline=main_line,
        lanes_forward=lanes,
        lanes_backward=lanes,
        lane_width=lane_width,
        parking_right=rng.uniform(2.2, 2.6) if rng.random() < 0.8 else 0.0,
        parking_left=rng.uniform(2.2, 2.6) if rng.random() < 0.6 else 0.0,
        sidewalk_width=rng.uniform(2.5, 4.5),
        centre_marking="double_yellow" if rng.random() < 0.5 else "dashed_white",
    )
    cross = None
    junction_point = None
    if junction_s is not None:
        junction_point = main_line.point(junction_s)
        cross_heading = float(main_line.heading(junction_s)) + np.pi / 2 + rng.uniform(-0.25, 0.25)
        arm = margin + route_length + 60.0
        kind = rng.choice(["four_way", "t_left", "t_right"], p=[0.6, 0.2, 0.2])
        direction = np.array([np.cos(cross_heading), np.sin(cross_heading)])
        start = junction_point - direction * (arm if kind != "t_left" else 0.0)
        end = junction_point + direction * (arm if kind != "t_right" else 0.0)
        length = float(np.linalg.norm(end - start))
        cross_line = Polyline(_arc_polyline(start, cross_heading, [("straight", length)], 2.0))
        cross = Road(
            centerline=cross_line,
            lanes_forward=1,
            lanes_backward=1,
            lane_width=rng.uniform(3.0, 3.5),
            parking_right=rng.uniform(2.2, 2.5) if rng.random() < 0.5 else 0.0,
            parking_left=rng.uniform(2.2, 2.5) if rng.random() < 0.5 else 0.0,
            sidewalk_width=rng.uniform(2.5, 4.0),
            centre_marking="double_yellow" if rng.random() < 0.5 else "dashed_white",
        )

    # World rectangle: the route with the margin around it; shift so it starts at (0, 0).
    route = main_line.point(np.linspace(route_start, route_start + route_length, 20))
    lo = route.min(0) - margin
    hi = route.max(0) + margin
    shift = -lo
    main.centerline = Polyline(main.centerline.vertices + shift)
    if cross is not None:
        cross.centerline = Polyline(cross.centerline.vertices + shift)
        junction_point = junction_point + shift
    world_rect = (0.0, 0.0, float(hi[0] - lo[0]), float(hi[1] - lo[1]))
    network = RoadNetwork(main, cross, junction_s, junction_point, world_rect)
    _finish_areas(network)
    return network, junction_s


def _finish_areas(network: RoadNetwork) -> None:
    """Road area (with rounded curb corners at the junction) and junction area."""
    rect = shapely_box(*network.world_rect)
    areas = [road.area() for road in network.roads]
    road_area = shapely.union_all(areas)
    if network.cross is not None:
        # Closing rounds the inner corners of the junction (curb radius ~5 m).
        road_area = road_area.buffer(5.0, quad_segs=4).buffer(-5.0, quad_segs=4)
        network.junction_area = areas[0].intersection(areas[1]).buffer(1.0)
    else:
        network.junction_area = Polygon()
    network.road_area = road_area.intersection(rect)


# ---------------------------------------------------------------------------------------------
# Raster
# ---------------------------------------------------------------------------------------------
class _Canvas:
    """cv2 drawing in world coordinates onto the surface raster."""

    SHIFT = 4

    def __init__(self, world_rect, resolution):
        x0, y0, x1, y1 = world_rect
        self.x0, self.y1, self.res = x0, y1, resolution
        self.width = int(np.ceil((x1 - x0) / resolution))
        self.height = int(np.ceil((y1 - y0) / resolution))
        self.image = np.zeros((self.height, self.width), dtype=np.uint8)

    def _pixels(self, xy: np.ndarray) -> np.ndarray:
        col = (xy[:, 0] - self.x0) / self.res
        row = (self.y1 - xy[:, 1]) / self.res
        return np.round(np.stack([col, row], 1) * (1 << self.SHIFT)).astype(np.int32)

    def fill(self, geometry, value: int) -> None:
        polygons = getattr(geometry, "geoms", [geometry])
        for poly in polygons:
            if poly.is_empty or poly.geom_type != "Polygon":
                continue
            rings = [self._pixels(np.asarray(poly.exterior.coords))]
            rings += [self._pixels(np.asarray(r.coords)) for r in poly.interiors]
            cv2.fillPoly(self.image, rings, int(value), lineType=cv2.LINE_8, shift=self.SHIFT)

    def quads(self, quads: np.ndarray, value: int) -> None:
        """Fill (Q, 4, 2) world-space quadrilaterals."""
        if len(quads):
            pixels = [self._pixels(q) for q in quads]
            cv2.fillPoly(self.image, pixels, int(value), lineType=cv2.LINE_8, shift=self.SHIFT)


def _line_quads(
    line: Polyline,
    offset: float,
    width: float,
    s0: float,
    s1: float,
    dash: float = 0.0,
    gap: float = 0.0,
) -> np.ndarray:
    """Quads (Q, 4, 2) of a marking along `line` at `offset`, from s0 to s1, solid or dashed."""
    if s1 <= s0:
        return np.zeros((0, 4, 2))
    if dash > 0:
        starts = np.arange(s0, s1, dash + gap)
        ends = np.minimum(starts + dash, s1)
    else:
        starts = np.arange(s0, s1, 2.0)
        ends = np.minimum(starts + 2.0, s1)
    a_in = line.point(starts, offset + width / 2)
    a_out = line.point(starts, offset - width / 2)
    b_in = line.point(ends, offset + width / 2)
    b_out = line.point(ends, offset - width / 2)
    return np.stack([a_in, b_in, b_out, a_out], axis=1)


def _outside(quads: np.ndarray, area) -> np.ndarray:
    if area.is_empty or not len(quads):
        return quads
    centers = quads.mean(axis=1)
    return quads[~shapely.contains_xy(area, centers[:, 0], centers[:, 1])]


def _crosswalk_quads(road: Road, s: float) -> np.ndarray:
    """Zebra bars (along the road) across the whole road at arc length s."""
    bar, gap, depth = 0.5, 0.6, 3.0
    offsets = np.arange(-road.right_width + 0.4, road.left_width - 0.4, bar + gap)
    line = road.centerline
    quads = []
    for off in offsets:
        quads.append(
            [
                line.point(s - depth / 2, off + bar),
                line.point(s + depth / 2, off + bar),
                line.point(s + depth / 2, off),
                line.point(s - depth / 2, off),
            ]
        )
    return np.asarray(quads).reshape(-1, 4, 2)


def junction_clearance(network: RoadNetwork, road: Road) -> float:
    """Distance (along `road`) from the junction centre to the far curb of the other road."""
    other = network.cross if road is network.main else network.main
    return max(other.left_width, other.right_width) + 2.0


def crosswalk_positions(network: RoadNetwork) -> List[Tuple[Road, float]]:
    """(road, arc length) of every crosswalk: one on each junction approach."""
    if network.cross is None:
        return []
    out = []
    for road in network.roads:
        s_j, _ = road.centerline.project(network.junction_point[None])
        s_j = float(s_j[0])
        clear = junction_clearance(network, road) + 2.5
        for s in (s_j - clear, s_j + clear):
            if 0.0 < s < road.centerline.length:
                out.append((road, s))
    return out


def build_surface_raster(network: RoadNetwork, rng: np.random.Generator) -> tx.SurfaceRaster:
    """Surface classes over the world rectangle at MAP_RESOLUTION."""
    canvas = _Canvas(network.world_rect, MAP_RESOLUTION)
    canvas.image[:] = tx.SurfaceRaster.GRASS
    sidewalk = shapely.union_all(
        [road.area().buffer(road.sidewalk_width, quad_segs=4) for road in network.roads]
    )
    canvas.fill(sidewalk, tx.SurfaceRaster.SIDEWALK)
    canvas.fill(network.road_area, tx.SurfaceRaster.ASPHALT)
    junction = network.junction_area
    white, yellow = tx.SurfaceRaster.MARK_WHITE, tx.SurfaceRaster.MARK_YELLOW
    for road in network.roads:
        line = road.centerline
        length = line.length
        for right in (True, False):
            width = road.parking_right if right else road.parking_left
            if width > 0:
                off = road.parking_offset(right)
                strip = _line_quads(line, off, width, 0.0, length)
                canvas.quads(_outside(strip, junction), tx.SurfaceRaster.PARKING)
                # Solid edge line between the parking strip and the lanes.
                edge = off + (width / 2 if right else -width / 2)
                canvas.quads(_outside(_line_quads(line, edge, 0.15, 0.0, length), junction), white)
        # Centre divider.
        if road.centre_marking == "double_yellow":
            for off in (0.12, -0.12):
                canvas.quads(_outside(_line_quads(line, off, 0.12, 0.0, length), junction), yellow)
        else:
            canvas.quads(
                _outside(_line_quads(line, 0.0, 0.15, 0.0, length, 3.0, 6.0), junction), white
            )
        # Lane separators.
        for lane in range(1, road.lanes_forward):
            canvas.quads(
                _outside(
                    _line_quads(line, -lane * road.lane_width, 0.15, 0.0, length, 3.0, 6.0),
                    junction,
                ),
                white,
            )
        for lane in range(1, road.lanes_backward):
            canvas.quads(
                _outside(
                    _line_quads(line, lane * road.lane_width, 0.15, 0.0, length, 3.0, 6.0), junction
                ),
                white,
            )
    for road, s in crosswalk_positions(network):
        canvas.quads(_crosswalk_quads(road, s), tx.SurfaceRaster.CROSSWALK)
        # Stop line on the approaching lanes, before the crosswalk.
        s_j = float(road.centerline.project(network.junction_point[None])[0][0])
        if s < s_j:
            stop = _line_quads(
                road.centerline, -road.right_width / 2, road.right_width, s - 2.5, s - 2.1
            )
        else:
            stop = _line_quads(
                road.centerline, road.left_width / 2, road.left_width, s + 2.1, s + 2.5
            )
        canvas.quads(stop, white)
    x0, y0, x1, y1 = network.world_rect
    return tx.SurfaceRaster(canvas.image, x0, y0 + canvas.height * MAP_RESOLUTION, MAP_RESOLUTION)


def drivable_area_mask(network: RoadNetwork) -> np.ndarray:
    """(H, W) uint8 map mask, 255 on the road, 0 elsewhere, nuScenes map convention: pixel row 0
    is the largest y, the bottom-left corner is world (0, 0), MAP_RESOLUTION m per pixel."""
    canvas = _Canvas(network.world_rect, MAP_RESOLUTION)
    canvas.fill(network.road_area, 255)
    return canvas.image


# ---------------------------------------------------------------------------------------------
# Ground geometry
# ---------------------------------------------------------------------------------------------
def build_ground_mesh(
    network: RoadNetwork,
    road_material: int,
    raised_material: int,
    curb_material: int,
    cell: float = 10.0,
) -> Mesh:
    """Road plane at z = 0, raised surfaces at z = CURB_HEIGHT and the curb walls between."""
    x0, y0, x1, y1 = network.world_rect
    parts_v, parts_f, parts_m = [], [], []

    def add(vertices, faces, material):
        parts_f.append(np.asarray(faces, dtype=np.int64) + sum(len(v) for v in parts_v))
        parts_v.append(np.asarray(vertices, dtype=np.float64))
        parts_m.append(np.full(len(faces), material, dtype=np.int64))

    add([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], [[0, 1, 2], [0, 2, 3]], road_material)
    raised = shapely_box(x0, y0, x1, y1).difference(network.road_area)
    # Raised tops, triangulated cell by cell (small simple pieces).
    xs = np.arange(x0, x1, cell)
    ys = np.arange(y0, y1, cell)
    cells = [shapely_box(cx, cy, min(cx + cell, x1), min(cy + cell, y1)) for cy in ys for cx in xs]
    pieces = shapely.intersection(np.array(cells, dtype=object), raised)
    for piece in pieces:
        for poly in getattr(piece, "geoms", [piece]):
            if poly.is_empty or poly.geom_type != "Polygon" or poly.area < 1e-4:
                continue
            poly = shapely.polygons(poly.exterior)  # pieces of a cell have no holes
            ring = np.asarray(poly.exterior.coords)[:-1]
            tris = triangulate_simple_polygon(ring)
            vertices = np.concatenate([ring, np.full((len(ring), 1), CURB_HEIGHT)], axis=1)
            add(vertices, tris, raised_material)
    # Curb walls along every ring of the raised area, except on the world border.
    for poly in getattr(raised, "geoms", [raised]):
        for ring in [poly.exterior] + list(poly.interiors):
            pts = np.asarray(ring.coords)
            a, b = pts[:-1], pts[1:]
            on_border = (
                np.isclose(a[:, 0], b[:, 0]) & (np.isclose(a[:, 0], x0) | np.isclose(a[:, 0], x1))
            ) | (np.isclose(a[:, 1], b[:, 1]) & (np.isclose(a[:, 1], y0) | np.isclose(a[:, 1], y1)))
            a, b = a[~on_border], b[~on_border]
            if not len(a):
                continue
            n = len(a)
            vertices = np.concatenate(
                [
                    np.c_[a, np.zeros(n)],
                    np.c_[b, np.zeros(n)],
                    np.c_[b, np.full(n, CURB_HEIGHT)],
                    np.c_[a, np.full(n, CURB_HEIGHT)],
                ]
            )
            k = np.arange(n)
            faces = np.concatenate(
                [np.stack([k, n + k, 2 * n + k], 1), np.stack([k, 2 * n + k, 3 * n + k], 1)]
            )
            add(vertices, faces, curb_material)
    return Mesh(np.concatenate(parts_v), np.concatenate(parts_f), np.concatenate(parts_m))
