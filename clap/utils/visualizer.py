"""Drawing helpers shared by tools and TensorBoard views: points on images, bird's-eye views.

Images are (H, W, 3) uint8 RGB numpy arrays; points are in the (augmented) LiDAR frame, meters.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .panels import colormap, put_text

__all__ = [
    "CLASS_COLORS",
    "depth_colors",
    "project_points",
    "draw_points_on_image",
    "ego_forward_angle",
    "BevView",
    "BEV_FRAME_LEGEND",
    "draw_bev",
    "image_grid",
    "label_image",
    "save_image",
]

# RGB colour per detection class index (the order of clap.data.classes.DETECTION_CLASSES).
CLASS_COLORS = np.array(
    [
        [255, 158, 0],  # car
        [255, 99, 71],  # truck
        [233, 150, 70],  # construction_vehicle
        [255, 69, 0],  # bus
        [255, 140, 0],  # trailer
        [112, 128, 144],  # barrier
        [255, 61, 99],  # motorcycle
        [220, 20, 60],  # bicycle
        [0, 0, 230],  # pedestrian
        [47, 79, 79],  # traffic_cone
    ],
    dtype=np.uint8,
)


# Marks of `BevView.mark_frame`: the ego, the LiDAR frame's +x and +y axes.
_EGO_COLOR = (255, 255, 255)
_AXIS_COLORS = ((255, 80, 80), (80, 255, 80))
# Legend entries (RGB, label) of those marks, for figures that show a legend.
BEV_FRAME_LEGEND = (
    (_EGO_COLOR, "ego"),
    (_AXIS_COLORS[0], "LiDAR +x"),
    (_AXIS_COLORS[1], "LiDAR +y"),
)


def depth_colors(depths: np.ndarray, max_depth: float) -> np.ndarray:
    """(N,) depths, meters -> (N, 3) uint8 RGB (turbo colour map: near red, far blue)."""
    scaled = 1.0 - np.asarray(depths, np.float64).reshape(-1) / max_depth
    return colormap(scaled, cv2.COLORMAP_TURBO)


def _paint_squares(
    canvas: np.ndarray, rows: np.ndarray, columns: np.ndarray, colors: np.ndarray, radius: int
) -> None:
    """Paint (N,) pixel positions in place as squares of half size `radius`, in order (later on
    top), with (N, 3) uint8 RGB `colors`; what falls outside the canvas is left out."""
    height, width = canvas.shape[:2]
    colors = np.asarray(colors, dtype=np.uint8)
    for d_row in range(-radius, radius + 1):
        for d_col in range(-radius, radius + 1):
            r, c = rows + d_row, columns + d_col
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            canvas[r[inside], c[inside]] = colors[inside]


def project_points(points: np.ndarray, lidar2img: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(N, >=3) LiDAR points and a (4, 4) projection -> pixels (N, 2) (u, v) and depths (N,).

    Pixels of points with depth <= 0 are meaningless; check the depth.
    """
    points = np.asarray(points, dtype=np.float64)[:, :3]
    projected = points @ np.asarray(lidar2img, np.float64)[:3, :3].T + np.asarray(lidar2img)[:3, 3]
    depths = projected[:, 2]
    pixels = projected[:, :2] / np.where(np.abs(depths) < 1e-9, 1e-9, depths)[:, None]
    return pixels, depths


def draw_points_on_image(
    image: np.ndarray,
    points: np.ndarray,
    lidar2img: np.ndarray,
    max_depth: float = 60.0,
    radius: int = 1,
    min_depth: float = 0.5,
) -> np.ndarray:
    """A copy of `image` with each point in front of the camera drawn, coloured by depth.

    Args:
        image: (H, W, 3) uint8 RGB.
        points: (N, >=3) points, LiDAR frame.
        lidar2img: (4, 4) projection into this image.
        max_depth: depth of the last colour, meters.
        radius: half size of each drawn square, pixels.
        min_depth: points closer than this (meters) are not drawn.
    """
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    pixels, depths = project_points(points, lidar2img)
    visible = (depths > min_depth) & np.all(np.isfinite(pixels), axis=1)
    pixels, depths = pixels[visible], depths[visible]
    order = np.argsort(-depths)  # far first, so near points stay on top
    columns = np.round(pixels[order, 0]).astype(np.int64)
    rows = np.round(pixels[order, 1]).astype(np.int64)
    _paint_squares(canvas, rows, columns, depth_colors(depths[order], max_depth), radius)
    return canvas


def ego_forward_angle(aug_matrix: Optional[np.ndarray], lidar2ego: Optional[np.ndarray]) -> float:
    """The ego's forward direction (ego +x) in the augmented LiDAR frame, radians from +x
    towards +y: the `up_direction` that draws the BEV with the ego driving upwards.

    Args:
        aug_matrix: (4, 4) augmentation (augmented = aug_matrix @ original); None: identity.
        lidar2ego: (4, 4) LiDAR -> ego; None: the LiDAR frame is the ego frame.
    """
    forward = np.array([1.0, 0.0, 0.0])
    if lidar2ego is not None:
        forward = np.linalg.inv(np.asarray(lidar2ego, np.float64))[:3, :3] @ forward
    if aug_matrix is not None:
        forward = np.asarray(aug_matrix, np.float64)[:3, :3] @ forward
    return float(np.arctan2(forward[1], forward[0]))


class BevView:
    """A bird's-eye-view canvas of the LiDAR frame's x, y.

    The direction at angle `up_direction` (radians from +x towards +y; the ego's forward
    direction, see `ego_forward_angle`) points up in the image and the direction 90 degrees
    counter-clockwise from it points left (default: +x up, +y left).

    Args:
        point_cloud_range: the area shown, (x_min, y_min, z_min, x_max, y_max, z_max), meters.
        pixels_per_meter: image resolution.
        up_direction: the direction drawn upwards, radians.

    The canvas is (H, W) = (x extent, y extent) x pixels_per_meter.
    """

    def __init__(
        self,
        point_cloud_range: Sequence[float],
        pixels_per_meter: float,
        up_direction: float = 0.0,
    ):
        x_min, y_min, _, x_max, y_max, _ = (float(v) for v in point_cloud_range)
        self.x_max, self.y_max = x_max, y_max
        self.pixels_per_meter = float(pixels_per_meter)
        self.up_direction = float(up_direction)
        self.shape = (
            int(round((x_max - x_min) * pixels_per_meter)),
            int(round((y_max - y_min) * pixels_per_meter)),
        )

    def blank(self) -> np.ndarray:
        """A black (H, W, 3) uint8 canvas."""
        return np.zeros((*self.shape, 3), dtype=np.uint8)

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y meters -> (..., 2) float column, row pixels."""
        xy = np.asarray(xy, dtype=np.float64)
        cos, sin = np.cos(self.up_direction), np.sin(self.up_direction)
        up = xy[..., 0] * cos + xy[..., 1] * sin
        left = -xy[..., 0] * sin + xy[..., 1] * cos
        ppm = self.pixels_per_meter
        return np.stack([(self.y_max - left) * ppm, (self.x_max - up) * ppm], -1)

    def pixel_centres(self) -> np.ndarray:
        """(H, W, 2) x, y meters at the centre of every pixel (the inverse of `to_pixels`)."""
        rows, columns = np.mgrid[0 : self.shape[0], 0 : self.shape[1]] + 0.5
        up = self.x_max - rows / self.pixels_per_meter
        left = self.y_max - columns / self.pixels_per_meter
        cos, sin = np.cos(self.up_direction), np.sin(self.up_direction)
        return np.stack([up * cos - left * sin, up * sin + left * cos], -1)

    def draw_points(
        self, canvas: np.ndarray, xy: np.ndarray, colors: np.ndarray, radius: int = 0
    ) -> None:
        """Draw (N, 2) x, y points in place as squares of half size `radius` pixels, in order
        (later points on top), with (N, 3) uint8 RGB `colors`."""
        pixels = np.floor(self.to_pixels(np.asarray(xy)[:, :2])).astype(np.int64)
        _paint_squares(canvas, pixels[:, 1], pixels[:, 0], colors, radius)

    def mark_frame(self, canvas: np.ndarray) -> None:
        """Draw in place: the ego (a white triangle pointing up at the LiDAR origin), the LiDAR
        frame's +x (red) and +y (green) axes in the bottom-left corner, and a scale bar in the
        bottom-right corner."""
        height, width = self.shape
        size = max(4, min(height, width) // 64)
        origin = self.to_pixels(np.zeros(2))
        tip = origin + np.array([0.0, -1.6 * size])
        wings = [origin + np.array([side * size, 0.8 * size]) for side in (-1, 1)]
        triangle = np.round([tip, wings[0], wings[1]]).astype(np.int32)
        cv2.fillConvexPoly(canvas, triangle, _EGO_COLOR, cv2.LINE_AA)
        cv2.polylines(canvas, [triangle.reshape(-1, 1, 2)], True, (0, 0, 0), 1, cv2.LINE_AA)
        # Axes of the LiDAR frame.
        length = max(10, min(height, width) // 10)
        base = np.array([length + 6.0, height - length - 6.0])
        for axis, colour, name in ((0, _AXIS_COLORS[0], "x"), (1, _AXIS_COLORS[1], "y")):
            unit = np.zeros(2)
            unit[axis] = 1.0
            direction = self.to_pixels(unit) - origin
            end = base + direction / np.linalg.norm(direction) * length
            start_px = tuple(int(v) for v in np.round(base))
            end_px = tuple(int(v) for v in np.round(end))
            cv2.arrowedLine(canvas, start_px, end_px, colour, 1, cv2.LINE_AA, tipLength=0.3)
            label = np.round(end + direction / np.linalg.norm(direction) * 6).astype(int)
            put_text(canvas, name, (int(label[0]) - 3, int(label[1]) + 4), colour, 0.35)
        # Scale bar: the largest of 1, 2, 5, 10, 20, 50 m that fits a fifth of the width.
        meters = max(
            [m for m in (1, 2, 5, 10, 20, 50) if m * self.pixels_per_meter <= width / 5] or [1]
        )
        bar = int(round(meters * self.pixels_per_meter))
        right, row = width - 6, height - 6
        cv2.line(canvas, (right - bar, row), (right, row), (255, 255, 255), 1)
        put_text(canvas, f"{meters} m", (right - bar, row - 4), scale=0.35)


def draw_bev(
    points: np.ndarray,
    box_outlines: Optional[np.ndarray] = None,
    box_colors: Optional[np.ndarray] = None,
    point_cloud_range: Sequence[float] = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0),
    pixels_per_meter: float = 8.0,
    up_direction: float = 0.0,
) -> np.ndarray:
    """Bird's-eye view (see `BevView`): points shaded by height, boxes outlined, the ego, the
    LiDAR axes and a scale bar marked (`BevView.mark_frame`).

    Args:
        points: (N, >=3) points, LiDAR frame.
        box_outlines: (M, 4, 2) x, y of each box's bottom corners, meters, counter-clockwise
            from above with the front edge first (corners 0-1): e.g.
            `clap.data.box_ops.box_corners(boxes)[:, :4, :2]`. A line marks each box's front.
        box_colors: (M, 3) uint8 RGB per box (default: white), e.g. `CLASS_COLORS[labels]`.
        point_cloud_range: the area shown, (x_min, y_min, z_min, x_max, y_max, z_max), meters.
        pixels_per_meter: image resolution.
        up_direction: the direction drawn upwards, radians (the ego's forward direction).

    Returns:
        (H, W, 3) uint8 RGB with H along x and W along y.
    """
    view = BevView(point_cloud_range, pixels_per_meter, up_direction)
    canvas = view.blank()
    z_min, z_max = float(point_cloud_range[2]), float(point_cloud_range[5])
    points = np.asarray(points, dtype=np.float64)
    if len(points):
        shade = np.clip((points[:, 2] - z_min) / max(z_max - z_min, 1e-6), 0, 1)
        grey = (80 + 175 * shade).astype(np.uint8)
        view.draw_points(canvas, points[:, :2], np.repeat(grey[:, None], 3, axis=1))

    if box_outlines is not None and len(box_outlines):
        corners = view.to_pixels(np.asarray(box_outlines, dtype=np.float64))
        for index, box_pixels in enumerate(corners):
            color = (255, 255, 255)
            if box_colors is not None:
                color = tuple(int(c) for c in box_colors[index])
            outline = np.round(box_pixels).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [outline], True, color, 1, cv2.LINE_AA)
            front = np.round(box_pixels[:2].mean(axis=0)).astype(int)
            centre = np.round(box_pixels.mean(axis=0)).astype(int)
            cv2.line(canvas, tuple(int(v) for v in centre), tuple(int(v) for v in front), color, 1)
    view.mark_frame(canvas)
    return canvas


def label_image(image: np.ndarray, text: str) -> np.ndarray:
    """A copy of `image` with `text` written in its top-left corner."""
    canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    scale = max(0.4, canvas.shape[0] / 400.0)
    cv2.putText(canvas, text, (5, int(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3)
    cv2.putText(
        canvas, text, (5, int(20 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1
    )
    return canvas


def image_grid(images: Sequence[np.ndarray], columns: int = 3, gap: int = 2) -> np.ndarray:
    """Tile equally sized (H, W, 3) images row by row, `gap` black pixels between them."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    height, width = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    grid = np.zeros(
        (rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3), dtype=np.uint8
    )
    for index, image in enumerate(images):
        if image.shape[:2] != (height, width):
            raise ValueError(f"image {index} is {image.shape[:2]}, expected {(height, width)}")
        row, column = divmod(index, columns)
        top, left = row * (height + gap), column * (width + gap)
        grid[top : top + height, left : left + width] = image
    return grid


def save_image(path: str, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image (PNG, JPEG, ... by extension)."""
    if not cv2.imwrite(path, cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
        raise OSError(f"Could not write image {path}")
