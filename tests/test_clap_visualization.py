"""The TensorBoard figures of a CLAP step, drawn from tiny arrays."""

import numpy as np

from clap.engine.clap_visualization import (
    pixel_weights_figure,
    prototype_colors,
    prototype_figure,
    ray_weights_figure,
    render_figure,
)
from clap.utils.panels import stack, titled, with_colorbar, with_legend
from clap.utils.visualizer import BevView

RANGE = (-4.0, -4.0, -1.0, 4.0, 4.0, 1.0)


def _pixel(view, figure, xy, title_height):
    column, row = np.floor(view.to_pixels(np.asarray(xy, float))).astype(int)
    return tuple(int(v) for v in figure[title_height + row, column])


def test_panels_add_titles_colour_bars_and_legends():
    image = np.zeros((60, 80, 3), np.uint8)
    with_title = titled(image, "a title long enough to wrap onto a second line of text")
    assert with_title.shape[1] == 80 and with_title.shape[0] > 60 + 30  # two text lines
    ramp = np.stack([np.arange(256)] * 3, axis=1).astype(np.uint8)
    bar = with_colorbar(image, ramp, [(0.0, "0"), (1.0, "1")], "m")
    assert bar.shape[0] == 60 and bar.shape[1] > 80
    legend = with_legend(image, [((255, 0, 0), "red")] * 10)
    assert legend.shape[0] == 60 and (legend[:, 80:] == (255, 0, 0)).all(axis=2).any()
    assert stack([image, bar], axis=0, gap=2).shape == (122, bar.shape[1], 3)


def test_ray_weights_are_on_a_percentile_scale_and_unscored_points_stand_apart():
    view = BevView(RANGE, 10.0)
    points = np.array([[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0], [0.5, 3.5]])
    weights = np.array([1e-6, 1e-5, 1.0, 0.0, 1e-6])
    figure = ray_weights_figure(view, points, weights, drawn=np.array([4]))
    title = figure.shape[0] - view.shape[0]
    low, middle, high, unscored = (_pixel(view, figure, p, title) for p in points[:4])
    assert unscored == (110, 110, 110)  # grey, unlike any colour of the weight scale
    assert len({low, middle, high, unscored}) == 4
    # On a linear scale 1e-5 would look like 1e-6; on the percentile scale it sits halfway:
    # viridis is green-blue in the middle, blue-purple at the low end, yellow at the top.
    assert middle[1] > low[1] and middle[1] < high[1] and high[0] > 200
    assert _pixel(view, figure, points[4], title) == (255, 40, 220)  # a drawn ray
    assert figure.shape[1] > view.shape[1]  # colour bar and legend


def test_pixel_weights_are_drawn_over_the_image():
    image = np.full((20, 40, 3), 200, np.uint8)
    weights = np.zeros((20, 40))
    weights[10, 30] = 2.0
    figure = pixel_weights_figure(image, weights, np.array([[5, 5]]))
    body = figure[-20 * 12 :, : 40 * 12]  # enlarged 12 times to 480 pixels
    assert body.shape == (240, 480, 3)
    hot, cold = body[10 * 12 + 6, 30 * 12 + 6], body[15 * 12, 10 * 12]
    assert hot.max() > 200 and (cold == cold[0]).all() and 0 < cold[0] < 200  # greyed image
    assert tuple(body[5 * 12 + 6, 5 * 12 + 6]) == (0, 255, 255)  # the sampled pixel


def test_prototype_figure_shows_both_assignments_and_where_they_agree():
    view = BevView(RANGE, 10.0)
    lidar = np.full((2, 2), -1)
    camera = np.full((2, 2), -1)
    lidar[0, 0], camera[0, 0] = 3, 3  # x < 0, y < 0: agree
    lidar[1, 1], camera[1, 1] = 3, 5  # x > 0, y > 0: disagree
    figure = prototype_figure(view, RANGE, lidar, camera, num_prototypes=8)
    width = view.shape[1] + 4  # a panel and the gap after it
    title = figure.shape[0] - view.shape[0]
    colors = prototype_colors(np.bincount([3, 3, 3, 5], minlength=8))
    assert _pixel(view, figure, (-3.0, -3.0), title) == tuple(colors[3])
    assert _pixel(view, figure[:, width:], (3.0, 3.0), title) == tuple(colors[5])
    agreement = figure[:, 2 * width :]
    assert _pixel(view, agreement, (-3.0, -3.0), title) == (60, 200, 80)
    assert _pixel(view, agreement, (3.0, 3.0), title) == (220, 50, 50)
    assert _pixel(view, agreement, (-3.0, 3.0), title) == (0, 0, 0)  # no paired cell


def test_render_figure_stacks_three_titled_panels():
    image = np.zeros((16, 32, 3), np.uint8)
    figure = render_figure(
        image, np.array([[5.0, 0.0, 0.0]]), np.eye(4), np.zeros((4, 8, 3)), np.ones((4, 8)), 10.0
    )
    assert figure.dtype == np.uint8 and figure.shape[0] > 3 * 16 * 14  # enlarged 14 times
