"""Drawing helpers and the data inspection tool."""

from pathlib import Path

import cv2
import numpy as np
from nuscenes_frame_helpers import FRAME_ROOT, FRAME_SAMPLE_TOKEN
from tool_helpers import load_tool

from clap.data.box_ops import box_corners
from clap.data.classes import DETECTION_CLASSES
from clap.utils.visualizer import (
    CLASS_COLORS,
    draw_bev,
    draw_points_on_image,
    ego_forward_angle,
    image_grid,
)

_REPO = Path(__file__).resolve().parent.parent


def test_points_are_drawn_where_they_project():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    lidar2img = np.eye(4)
    lidar2img[:3, :3] = [[10.0, 0, 15], [0, 10, 10], [0, 0, 1]]
    points = np.array([[0.5, 0.2, 1.0], [0.0, 0.0, -1.0]])  # the second is behind the camera
    drawn = draw_points_on_image(image, points, lidar2img, radius=0)
    assert drawn[12, 20].any() and drawn.any(axis=2).sum() == 1
    assert not image.any()  # the input is not modified


def test_bev_draws_points_and_box_outlines():
    points = np.array([[10.0, 0.0, 0.0]])
    boxes = np.array([[-10.0, 5.0, 0.0, 4.0, 2.0, 1.5, 0.0, 0.0, 0.0]])
    outlines = box_corners(boxes)[:, :4, :2]
    bev = draw_bev(points, outlines, CLASS_COLORS[[0]], (-20, -20, -5, 20, 20, 3), 2)
    assert bev.shape == (80, 80, 3)
    assert bev[20, 40].any()  # x = 10 m ahead: 20 pixels below the top, centre column
    # The box spans rows 56-64 and columns 28-32, outlined in the car colour (orange).
    for row, column in ((58, 28), (58, 32), (64, 30)):
        assert bev[row, column, 0] > 200 and bev[row, column, 2] == 0
    # Its heading line runs from the centre (row 60) to the front edge (row 56), not backwards.
    assert bev[57:61, 30].any(axis=1).all() and not bev[62, 30].any()
    turned = draw_bev(points, None, None, (-20, -20, -5, 20, 20, 3), 2, up_direction=np.pi / 2)
    assert turned[40, 60].any()  # with +y up, the point at +x is drawn to the right
    # The ego: a white triangle at the origin pointing up; the x axis arrow (red) points up
    # from the bottom-left corner in the default view and to the right in the turned one.
    assert tuple(bev[38, 40]) == (255, 255, 255) and tuple(turned[38, 40]) == (255, 255, 255)
    def reddish(pixels):
        return bool(((pixels[:, 0] > 150) & (pixels[:, 0] > 2 * pixels[:, 1])).any())

    assert reddish(bev[56:62, 16]) and not reddish(bev[64, 20:25])
    assert reddish(turned[64, 20:25]) and not reddish(turned[56:62, 16])


def test_ego_forward_angle_follows_the_mounting_and_the_augmentation():
    # nuScenes-like mounting: the LiDAR's +y is the ego's forward direction.
    lidar2ego = np.eye(4)
    lidar2ego[:3, :3] = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]
    assert np.isclose(ego_forward_angle(None, lidar2ego), np.pi / 2)
    turn = np.eye(4)
    turn[:2, :2] = [[0, -1], [1, 0]]  # +90 degrees about z
    assert np.isclose(abs(ego_forward_angle(turn, lidar2ego)), np.pi)


def test_visualizer_stays_below_the_data_layer():
    """clap.utils.visualizer draws arrays; it imports nothing of clap.data."""
    import subprocess
    import sys

    code = "import sys, clap.utils.visualizer; print([m for m in sys.modules if 'clap.data' in m])"
    out = subprocess.run([sys.executable, "-c", code], cwd=_REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_class_colors_cover_every_detection_class():
    assert len(CLASS_COLORS) == len(DETECTION_CLASSES)


def test_image_grid_layout():
    images = [np.full((4, 5, 3), i * 40, dtype=np.uint8) for i in range(1, 6)]
    grid = image_grid(images, columns=3, gap=1)
    assert grid.shape == (9, 17, 3)
    assert grid[0, 6, 0] == 80 and grid[5, 12, 0] == 0  # second image; empty sixth cell


def test_visualize_tool_writes_camera_and_bev_pngs(tmp_path):
    tool = load_tool("visualize_data")
    written = tool.main(
        [
            "--root",
            str(FRAME_ROOT),
            "--split",
            "mini_train",
            "--num-samples",
            "3",
            "--output",
            str(tmp_path / "vis"),
            "--train",
            "DATASETS.CACHE_DIR",
            str(tmp_path / "cache"),
            "INPUT.IMAGE_SIZE",
            "(64, 112)",
        ]
    )
    stems = {Path(p).name.rsplit("_", 1)[0] for p in written}
    assert stems == {f"0000_{FRAME_SAMPLE_TOKEN}"} and len(written) == 3
    cameras = cv2.imread(str(tmp_path / "vis" / f"0000_{FRAME_SAMPLE_TOKEN}_cameras.png"))
    assert cameras.shape == (2 * 64 + 2, 3 * 112 + 4, 3)
    bev = cv2.imread(str(tmp_path / "vis" / f"0000_{FRAME_SAMPLE_TOKEN}_bev.png"))
    assert bev.shape == (864, 864, 3) and bev.any()
    overview = cv2.imread(str(tmp_path / "vis" / f"0000_{FRAME_SAMPLE_TOKEN}_overview.png"))
    assert overview.shape[0] == cameras.shape[0] and overview.shape[1] > cameras.shape[1]
