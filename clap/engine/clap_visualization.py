"""TensorBoard views of a CLAP step: renderings, ray-sampling weights, prototype maps.

Each view is one image of titled panels with colour bars or legends, drawn with OpenCV from the
last step's tensors (see docs/engine.md, "TensorBoard views", for what each shows). The figure
functions take numpy arrays, so they can be called without a model.
"""

from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from clap.modeling.render_head.rays import camera_rays
from clap.utils.panels import (
    colormap,
    enlarge,
    stack,
    titled,
    with_colorbar,
    with_legend,
    wrap_text,
)
from clap.utils.visualizer import (
    BEV_FRAME_LEGEND,
    BevView,
    depth_colors,
    draw_points_on_image,
    ego_forward_angle,
)

from .train_loop import HookBase

__all__ = [
    "ClapVisualizationHook",
    "prototype_colors",
    "render_figure",
    "ray_weights_figure",
    "pixel_weights_figure",
    "prototype_figure",
]

# Pixel stride of the full-camera rendering (a coarse grid keeps it cheap on a CPU).
_RENDER_STRIDE = 4
# Rays rendered per chunk for the full-camera view.
_RENDER_CHUNK = 4096
# Camera panels narrower than this are enlarged (nearest neighbour) so their text stays legible.
_MIN_PANEL_WIDTH = 448
# Longer side of the BEV panels, pixels.
_BEV_SIZE = 448
# Colours of the figures (RGB).
_WEIGHT_MAP = cv2.COLORMAP_VIRIDIS
_WEIGHT_LOW = 0.2  # the colour map's start for the lowest weight (its darkest end is unused)
_UNSCORED = (110, 110, 110)
_DRAWN_RAY = (255, 40, 220)
_SAMPLED_PIXEL = (0, 255, 255)
_AGREE, _DISAGREE = (60, 200, 80), (220, 50, 50)
# Colours of the most used prototypes of a figure (Tableau 10 and two more), the others grey.
_DISTINCT = tuple(
    tuple(int(code[i : i + 2], 16) for i in (0, 2, 4))
    for code in "1f77b4 ff7f0e 2ca02c d62728 9467bd 8c564b e377c2 bcbd22 17becf ffbb78 aec7e8 "
    "98df8a".split()
)
_OTHER_PROTOTYPES = (90, 90, 90)


def prototype_colors(counts: np.ndarray, num_distinct: int = len(_DISTINCT)) -> np.ndarray:
    """(N_K, 3) uint8 RGB per prototype: the `num_distinct` most used (largest `counts` (N_K,))
    get distinct colours in that order, every other prototype grey."""
    colors = np.empty((len(counts), 3), dtype=np.uint8)
    colors[:] = _OTHER_PROTOTYPES
    used = [k for k in np.argsort(-np.asarray(counts), kind="stable") if counts[k] > 0]
    for colour, k in zip(_DISTINCT[:num_distinct], used):
        colors[k] = colour
    return colors


def _ramp(name: int, low: float = 0.0) -> np.ndarray:
    """(256, 3) uint8 RGB of a colour map from `low` to its high end."""
    return colormap(np.linspace(low, 1.0, 256), name)


def _enlarged(lidar2img: np.ndarray, factor: int) -> np.ndarray:
    """The (4, 4) projection into an image enlarged `factor` times by `enlarge` (pixel centres
    at integer coordinates)."""
    scale = np.diag([float(factor), float(factor), 1.0, 1.0])
    scale[:2, 2] = (factor - 1) / 2.0
    return scale @ np.asarray(lidar2img, dtype=np.float64)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if 1e-2 <= abs(value) < 1e4 or value == 0 else f"{value:.1e}"


def render_figure(
    image: np.ndarray,
    points: np.ndarray,
    lidar2img: np.ndarray,
    rendered_rgb: np.ndarray,
    rendered_range: np.ndarray,
    max_range: float,
    camera: str = "camera 0",
) -> np.ndarray:
    """The input image with the LiDAR points, the rendered RGB and the rendered range, one below
    the other, the two metric panels with a colour bar in meters.

    Args:
        image: (H, W, 3) uint8 RGB input image.
        points: (N, >=3) LiDAR points, meters.
        lidar2img: (4, 4) projection into `image`.
        rendered_rgb: (h, w, 3) float in [0, 1], rendered on a coarser pixel grid.
        rendered_range: (h, w) meters from the camera centre.
        max_range: the far end of the colour scale, meters.
    """
    big = enlarge(image, _MIN_PANEL_WIDTH)
    factor = big.shape[1] // image.shape[1]
    full = (big.shape[1], big.shape[0])
    turbo = depth_colors(np.linspace(max_range, 0.0, 256), max_range)
    ticks = [(f, f"{f * max_range:.0f}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    drawn = draw_points_on_image(big, points, _enlarged(lidar2img, factor), max_depth=max_range)
    rgb = (np.clip(rendered_rgb, 0.0, 1.0) * 255).astype(np.uint8)
    range_image = depth_colors(rendered_range.reshape(-1), max_range).reshape(
        *rendered_range.shape, 3
    )
    stride = max(1, round(image.shape[1] / max(rendered_rgb.shape[1], 1)))

    def panel(picture, title):
        return titled(cv2.resize(picture, full, interpolation=cv2.INTER_NEAREST), title)

    return stack(
        [
            with_colorbar(
                panel(drawn, f"Input {camera} with the LiDAR points, coloured by depth"),
                turbo,
                ticks,
                "depth m",
            ),
            panel(rgb, f"Rendered RGB (one ray per {stride} x {stride} pixels)"),
            with_colorbar(
                panel(range_image, "Rendered range from the camera"), turbo, ticks, "range m"
            ),
        ]
    )


def ray_weights_figure(
    view: BevView, points: np.ndarray, weights: np.ndarray, drawn: Optional[np.ndarray] = None
) -> np.ndarray:
    """BEV of one sample's points by ray-sampling weight, on a percentile scale.

    Points with weight > 0 are coloured by their percentile among those points (the colour bar's
    labels give the weight at each percentile); points with weight 0 (not candidates, or not
    scored) are grey; the points LiDAR rays were cast through are magenta.

    Args:
        view: the BEV mapping (ego forward up).
        points: (N, >=2) x, y meters.
        weights: (N,) non-negative weights.
        drawn: (R,) row indices into `points` of the drawn rays.
    """
    canvas = view.blank()
    weights = np.nan_to_num(np.asarray(weights, dtype=np.float64))
    scored = weights > 0
    num_scored = int(scored.sum())
    grey = np.broadcast_to(np.asarray(_UNSCORED, np.uint8), (int((~scored).sum()), 3))
    view.draw_points(canvas, points[~scored], grey)
    order = np.argsort(weights[scored], kind="stable")  # heaviest drawn last
    percentile = np.empty(num_scored)
    percentile[order] = np.arange(num_scored) / max(num_scored - 1, 1)
    by_weight = np.flatnonzero(scored)[order]
    shade = _WEIGHT_LOW + (1 - _WEIGHT_LOW) * percentile[order]
    view.draw_points(canvas, points[by_weight], colormap(shade, _WEIGHT_MAP))
    num_drawn = 0
    if drawn is not None and len(drawn):
        num_drawn = len(drawn)
        magenta = np.broadcast_to(np.asarray(_DRAWN_RAY, np.uint8), (num_drawn, 3))
        view.draw_points(canvas, points[np.asarray(drawn)], magenta, radius=1)
    view.mark_frame(canvas)
    title = (
        f"LiDAR ray weights, sample 0, BEV (ego forward up): {num_scored} of {len(weights)} "
        f"points scored, {num_drawn} rays drawn"
    )
    figure = titled(canvas, title)
    if num_scored:
        values = np.percentile(weights[scored], [0, 25, 50, 75, 90, 100])
        labels = ("p0", "p25", "p50", "p75", "p90", "max")
        ticks = [
            (q, f"{label} {_fmt(v)}")
            for q, label, v in zip((0, 0.25, 0.5, 0.75, 0.9, 1.0), labels, values)
        ]
        ramp = _ramp(_WEIGHT_MAP, _WEIGHT_LOW)
        figure = with_colorbar(figure, ramp, ticks, "weight percentile")
    legend = [(_UNSCORED, "weight 0 / not scored"), (_DRAWN_RAY, "drawn ray")]
    legend += list(BEV_FRAME_LEGEND)
    return with_legend(figure, legend, "points")


def pixel_weights_figure(
    image: np.ndarray,
    weight_map: np.ndarray,
    pixel_uv: Optional[np.ndarray] = None,
    camera: str = "camera 0",
) -> np.ndarray:
    """The pixel-sampling weights of one camera over its (greyed) image.

    Weights are shown linearly from 0 to their maximum (the sampler draws pixels in proportion
    to them), more opaque where higher; the sampled pixels are cyan.

    Args:
        image: (H, W, 3) uint8 RGB.
        weight_map: (H, W) non-negative pixel weights.
        pixel_uv: (N_C, 2) sampled pixels (u, v).
    """
    weight_map = np.nan_to_num(np.asarray(weight_map, dtype=np.float64))
    peak = float(weight_map.max()) if weight_map.size else 0.0
    scaled = weight_map / peak if peak > 0 else np.zeros_like(weight_map)
    grey = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2GRAY)
    base = np.repeat((grey * 0.55)[..., None], 3, axis=2)
    alpha = np.clip(scaled * 1.5, 0.0, 0.9)[..., None]  # faint tails stay see-through
    canvas = (base * (1 - alpha) + colormap(scaled, cv2.COLORMAP_INFERNO) * alpha).astype(np.uint8)
    canvas = enlarge(canvas, _MIN_PANEL_WIDTH)
    factor = canvas.shape[1] // weight_map.shape[1]
    num_sampled = 0
    if pixel_uv is not None and len(pixel_uv):
        num_sampled = len(pixel_uv)
        for u, v in np.asarray(pixel_uv, dtype=np.float64) * factor + (factor - 1) / 2:
            cv2.circle(canvas, (int(round(u)), int(round(v))), 2, _SAMPLED_PIXEL, -1)
    panel = titled(
        canvas, f"Pixel-sampling weights of {camera} over its image; {num_sampled} pixels sampled"
    )
    ticks = [(f, _fmt(f * peak)) for f in (0.0, 0.5, 1.0)]
    figure = with_colorbar(panel, _ramp(cv2.COLORMAP_INFERNO), ticks, "weight")
    return with_legend(figure, [(_SAMPLED_PIXEL, "sampled pixel")], "")


def prototype_figure(
    view: BevView,
    point_cloud_range: Sequence[float],
    lidar: np.ndarray,
    camera: np.ndarray,
    num_prototypes: int,
) -> np.ndarray:
    """BEV maps of the prototype assignments of one sample's paired cells: LiDAR, camera, and
    where the two agree, side by side. The most used prototypes (LiDAR and camera columns
    together) get distinct colours and a legend entry, the others are grey.

    Args:
        view: the BEV mapping (ego forward up).
        point_cloud_range: the range the (Y, X) cell grid covers, meters.
        lidar, camera: (Y, X) long prototype index per BEV cell column (-1: no paired cell).
        num_prototypes: N_K.
    """
    y_n, x_n = lidar.shape
    x_min, y_min, _, x_max, y_max, _ = (float(v) for v in point_cloud_range)
    centres = view.pixel_centres()
    column = np.floor((centres[..., 0] - x_min) / (x_max - x_min) * x_n).astype(np.int64)
    row = np.floor((centres[..., 1] - y_min) / (y_max - y_min) * y_n).astype(np.int64)
    inside = (column >= 0) & (column < x_n) & (row >= 0) & (row < y_n)
    column, row = np.where(inside, column, 0), np.where(inside, row, 0)

    def raster(cells: np.ndarray) -> np.ndarray:
        return np.where(inside, cells[row, column], -1)

    lidar_px, camera_px = raster(lidar), raster(camera)
    occupied = lidar >= 0
    lidar_counts = np.bincount(lidar[occupied], minlength=num_prototypes)
    camera_counts = np.bincount(camera[occupied], minlength=num_prototypes)
    counts = lidar_counts + camera_counts
    colors = np.concatenate([prototype_colors(counts), np.zeros((1, 3), np.uint8)])
    paired = lidar_px >= 0
    agreed, total = int((lidar[occupied] == camera[occupied]).sum()), int(occupied.sum())
    titles = [
        "LiDAR prototype of the top-most paired cell per column",
        "Camera prototype of the top-most paired cell per column",
        f"LiDAR and camera agree in {agreed} of {total} columns ({agreed / max(total, 1):.0%})",
    ]
    lines = max(len(wrap_text(title, view.shape[1])) for title in titles)
    canvases = [
        colors[np.where(labels >= 0, labels, num_prototypes)] for labels in (lidar_px, camera_px)
    ]
    agreement = view.blank()
    agreement[paired & (lidar_px == camera_px)] = _AGREE
    agreement[paired & (lidar_px != camera_px)] = _DISAGREE
    panels = []
    for canvas, title in zip(canvases + [agreement], titles):
        view.mark_frame(canvas)
        panels.append(titled(canvas, title, lines))
    figure = stack(panels, axis=1)
    used = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    # The axes are labelled in the panels; their colours would read as prototypes here.
    legend = [(_AGREE, "same prototype"), (_DISAGREE, "different prototypes")]
    legend += [entry for entry in BEV_FRAME_LEGEND if entry[1] == "ego"]
    legend += [
        (colors[k], f"#{k}: {lidar_counts[k]} LiDAR, {camera_counts[k]} camera")
        for k in used[: len(_DISTINCT)]
    ]
    if len(used) > len(_DISTINCT):
        legend.append((_OTHER_PROTOTYPES, f"{len(used) - len(_DISTINCT)} other prototypes"))
    return with_legend(figure, legend, f"{len(used)} of {num_prototypes} prototypes used")


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


class ClapVisualizationHook(HookBase):
    """Every `period` iterations, puts images of the last step of a CLAP model in the storage
    (sample 0, camera 0; see docs/engine.md, "TensorBoard views"):

    - "vis/render": `render_figure`, rendered on a pixel grid of stride 4 from the step's field
      volume;
    - "vis/lidar_ray_weights": `ray_weights_figure` and "vis/pixel_weights":
      `pixel_weights_figure` (weighted samplers after their warm-up);
    - "vis/prototypes": `prototype_figure` (models with a prototype head).

    Views that need a camera are left out for batches without images. The model must keep
    `last_step` (see `CLAP.forward`). Loss terms, prototype usage and perplexity are logged
    elsewhere (trainer and PrototypeEMHook).
    """

    def __init__(self, model, period: int):
        self.model = getattr(model, "module", model)
        self.period = period

    def after_step(self):
        if (self.trainer.iter + 1) % self.period != 0 or not self.model.last_step:
            return
        for name, image in self.figures(self.model.last_step).items():
            self.trainer.storage.put_image(name, _to_chw(image))

    @torch.no_grad()
    def figures(self, step: dict) -> dict:
        """{storage name: (H, W, 3) uint8 RGB figure} for a model's `last_step`."""
        batch, sampled = step["batch"], step["sampled"]
        images = batch.get("images")
        has_camera = images is not None and images.shape[1] > 0
        figures = {}
        if has_camera:
            figures["vis/render"] = self._render_view(step)
        if sampled.get("point_weights") is not None:
            figures["vis/lidar_ray_weights"] = self._weights_view(step)
        pixel_weights = sampled.get("pixel_weights")
        if pixel_weights is not None and has_camera:
            pixel_uv = sampled.get("pixel_uv")
            figures["vis/pixel_weights"] = pixel_weights_figure(
                self._image(batch),
                pixel_weights[0, 0].float().cpu().numpy(),
                None if pixel_uv is None else pixel_uv[0, 0].cpu().numpy(),
            )
        if int(step["prototypes"].get("num_paired_cells", 0)):
            figures["vis/prototypes"] = self._prototype_view(step)
        return figures

    @staticmethod
    def _image(batch: dict) -> np.ndarray:
        return batch["images"][0, 0].permute(1, 2, 0).clamp(0, 255).byte().cpu().numpy()

    def _bev(self, batch: dict) -> BevView:
        """The BEV of sample 0, ego forward up (as tools/visualize_data.py)."""
        pc_range = self.model.volume_grid.point_cloud_range
        extent = max(pc_range[3] - pc_range[0], pc_range[4] - pc_range[1])
        matrices = [batch.get(k) for k in ("aug_matrix", "lidar2ego")]
        matrices = [None if m is None else m[0].double().cpu().numpy() for m in matrices]
        return BevView(pc_range, _BEV_SIZE / extent, ego_forward_angle(*matrices))

    def _render_view(self, step: dict) -> np.ndarray:
        batch = step["batch"]
        in_sample0 = batch["points_batch"] == 0
        sub = {
            "batch_size": 1,
            "points": batch["points"][in_sample0],
            "points_batch": batch["points_batch"][in_sample0],
        }
        for key in ("images", "lidar2img", "lidar2cam", "intrinsics"):
            sub[key] = batch[key][:1, :1]
        height, width = sub["images"].shape[-2:]
        v, u = torch.meshgrid(
            torch.arange(_RENDER_STRIDE // 2, height, _RENDER_STRIDE),
            torch.arange(_RENDER_STRIDE // 2, width, _RENDER_STRIDE),
            indexing="ij",
        )
        grid_shape = u.shape
        pixel_uv = torch.stack([u, v], dim=-1).reshape(1, 1, -1, 2).to(sub["images"].device)
        rays = camera_rays(sub, pixel_uv, with_target_range=False)
        field_volume = step["field_volume"][:1]
        colours, ranges = [], []
        head = self.model.render_head
        was_training = head.training
        head.eval()
        for start in range(0, pixel_uv.shape[2], _RENDER_CHUNK):
            chunk = {k: t[start : start + _RENDER_CHUNK] for k, t in rays.items()}
            with torch.enable_grad():  # normals for the colour MLP
                out = head.render(field_volume, {"camera": chunk})
            colours.append(out["camera_rendered_rgb"].detach())
            ranges.append(out["camera_rendered_range"].detach())
        head.train(was_training)
        return render_figure(
            self._image(batch),
            sub["points"][:, :3].cpu().numpy(),
            sub["lidar2img"][0, 0].cpu().numpy(),
            torch.cat(colours).reshape(*grid_shape, 3).cpu().numpy(),
            torch.cat(ranges).reshape(grid_shape).cpu().numpy(),
            max(float(np.abs(self.model.volume_grid.point_cloud_range).max()), 1.0),
        )

    def _weights_view(self, step: dict) -> np.ndarray:
        batch, sampled = step["batch"], step["sampled"]
        in_sample0 = (batch["points_batch"] == 0).cpu()
        rows = torch.nonzero(in_sample0, as_tuple=True)[0]
        drawn = None
        if sampled.get("lidar_ray_index") is not None:
            # Rows of the whole batch -> positions among sample 0's points.
            position = torch.full((in_sample0.shape[0],), -1, dtype=torch.long)
            position[rows] = torch.arange(rows.numel())
            drawn = position[sampled["lidar_ray_index"][0].cpu()].numpy()
        return ray_weights_figure(
            self._bev(batch),
            batch["points"][in_sample0.to(batch["points"].device), :2].cpu().numpy(),
            sampled["point_weights"][in_sample0.to(batch["points"].device)].float().cpu().numpy(),
            drawn,
        )

    def _prototype_view(self, step: dict) -> np.ndarray:
        prototypes = step["prototypes"]
        cell_index = prototypes["paired_cell_index"].cpu()  # (N, 2): sample, flat cell (z, y, x)
        z_n, y_n, x_n = self.model.volume_grid.volume_shape
        num_prototypes = self.model.prototype_head.prototypes.shape[0]
        in_sample0 = cell_index[:, 0] == 0
        flat = cell_index[in_sample0, 1].long()
        z, column = flat // (y_n * x_n), flat % (y_n * x_n)
        top = torch.full((y_n * x_n,), -1, dtype=torch.long)
        top = top.scatter_reduce(0, column, z, reduce="amax")
        is_top = z == top[column]
        grids = []
        for modality in ("lidar", "camera"):
            labels = prototypes[f"assignment_{modality}"].cpu()[in_sample0].long()
            grid = torch.full((y_n * x_n,), -1, dtype=torch.long)
            grid[column[is_top]] = labels[is_top]
            grids.append(grid.view(y_n, x_n).numpy())
        return prototype_figure(
            self._bev(step["batch"]),
            self.model.volume_grid.point_cloud_range,
            grids[0],
            grids[1],
            num_prototypes,
        )
