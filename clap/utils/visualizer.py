"""Drawing helpers shared by tools and TensorBoard views: points on images, bird's-eye views.

Images are (H, W, 3) uint8 RGB numpy arrays; points are in the (augmented) LiDAR frame, meters.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from clap.data.box_ops import box_corners

__all__ = [
    "CLASS_COLORS",
    "depth_colors",
    "project_points",
    "draw_points_on_image",
    "draw_bev",
    "image_grid",
    "label_image",
    "save_image",
]

# RGB colour per detection class index (DETECTION_CLASSES order).
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


def depth_colors(depths: np.ndarray, max_depth: float) -> np.ndarray:
    """(N,) depths, meters -> (N, 3) uint8 RGB (turbo colour map: near red, far blue)."""
    scaled = np.clip(1.0 - np.asarray(depths, np.float64) / max_depth, 0.0, 1.0)
    levels = (scaled * 255).astype(np.uint8).reshape(-1, 1)
    return cv2.applyColorMap(levels, cv2.COLORMAP_TURBO).reshape(-1, 3)[:, ::-1].copy()


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
    height, width = canvas.shape[:2]
    pixels, depths = project_points(points, lidar2img)
    visible = (depths > min_depth) & np.all(np.isfinite(pixels), axis=1)
    pixels, depths = pixels[visible], depths[visible]
    order = np.argsort(-depths)  # far first, so near points stay on top
    columns = np.round(pixels[order, 0]).astype(np.int64)
    rows = np.round(pixels[order, 1]).astype(np.int64)
    colors = depth_colors(depths[order], max_depth)
    for d_row in range(-radius, radius + 1):
        for d_col in range(-radius, radius + 1):
            r, c = rows + d_row, columns + d_col
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
            canvas[r[inside], c[inside]] = colors[inside]
    return canvas


def draw_bev(
    points: np.ndarray,
    boxes: Optional[np.ndarray] = None,
    labels: Optional[np.ndarray] = None,
    point_cloud_range: Sequence[float] = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0),
    pixels_per_meter: float = 8.0,
    up_direction: float = 0.0,
) -> np.ndarray:
    """Bird's-eye view, points shaded by height, boxes outlined by class.

    The direction at angle `up_direction` (radians from +x towards +y) points up in the image and
    the direction 90 degrees counter-clockwise from it points left (default: +x up, +y left).

    Args:
        points: (N, >=3) points, LiDAR frame.
        boxes: (M, >=7) boxes (x, y, z, l, w, h, yaw, ...); a line marks each box's front.
        labels: (M,) class indices into `CLASS_COLORS` (default: all white).
        point_cloud_range: the area shown, (x_min, y_min, z_min, x_max, y_max, z_max), meters.
        pixels_per_meter: image resolution.
        up_direction: the direction drawn upwards, radians (e.g. the ego's forward direction).

    Returns:
        (H, W, 3) uint8 RGB with H along x and W along y.
    """
    x_min, y_min, z_min, x_max, y_max, z_max = (float(v) for v in point_cloud_range)
    height = int(round((x_max - x_min) * pixels_per_meter))
    width = int(round((y_max - y_min) * pixels_per_meter))
    canvas = np.zeros((height, width, 3), dtype=np.uint8)

    cos, sin = np.cos(up_direction), np.sin(up_direction)

    def to_pixels(xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y meters -> (..., 2) column, row pixels."""
        up = xy[..., 0] * cos + xy[..., 1] * sin
        left = -xy[..., 0] * sin + xy[..., 1] * cos
        return np.stack([(y_max - left) * pixels_per_meter, (x_max - up) * pixels_per_meter], -1)

    points = np.asarray(points, dtype=np.float64)
    if len(points):
        pixels = np.floor(to_pixels(points[:, :2])).astype(np.int64)
        inside = (
            (pixels[:, 0] >= 0)
            & (pixels[:, 0] < width)
            & (pixels[:, 1] >= 0)
            & (pixels[:, 1] < height)
        )
        shade = np.clip((points[inside, 2] - z_min) / max(z_max - z_min, 1e-6), 0, 1)
        canvas[pixels[inside, 1], pixels[inside, 0]] = (80 + 175 * shade)[:, None].astype(np.uint8)

    if boxes is not None and len(boxes):
        boxes = np.asarray(boxes, dtype=np.float64)
        corners = to_pixels(box_corners(boxes)[:, :4, :2])
        for index, box_pixels in enumerate(corners):
            label = None if labels is None else int(labels[index])
            color = (255, 255, 255) if label is None else tuple(int(c) for c in CLASS_COLORS[label])
            outline = np.round(box_pixels).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [outline], True, color, 1, cv2.LINE_AA)
            front = np.round(box_pixels[:2].mean(axis=0)).astype(int)
            centre = np.round(box_pixels.mean(axis=0)).astype(int)
            cv2.line(canvas, tuple(int(v) for v in centre), tuple(int(v) for v in front), color, 1)
    # The LiDAR at the origin.
    origin = np.round(to_pixels(np.zeros(2))).astype(int)
    cv2.circle(canvas, (int(origin[0]), int(origin[1])), 3, (0, 255, 0), -1)
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
