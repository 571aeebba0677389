"""TensorBoard views of a CLAP step: renderings, ray-sampling weights, prototype maps."""

import colorsys

import cv2
import numpy as np
import torch

from clap.modeling.render_head.rays import camera_rays
from clap.utils.visualizer import depth_colors, draw_bev, draw_points_on_image, label_image

from .train_loop import HookBase

__all__ = ["ClapVisualizationHook", "prototype_palette"]

# Pixel stride of the full-camera rendering (a coarse grid keeps it cheap on a CPU).
_RENDER_STRIDE = 4
# Rays rendered per chunk for the full-camera view.
_RENDER_CHUNK = 4096


def prototype_palette(num_prototypes: int) -> np.ndarray:
    """(N_K + 1, 3) uint8 RGB colours, one per prototype (golden-angle hues), black last."""
    hues = (np.arange(num_prototypes) * 0.618033988749895) % 1.0
    colours = [colorsys.hsv_to_rgb(h, 0.75, 0.95) for h in hues] + [(0.0, 0.0, 0.0)]
    return (np.asarray(colours) * 255).astype(np.uint8)


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def _heatmap(values: np.ndarray) -> np.ndarray:
    """(H, W) non-negative values -> (H, W, 3) uint8, scaled by the maximum."""
    peak = float(values.max()) if values.size else 0.0
    scaled = values / peak if peak > 0 else values
    return depth_colors(1.0 - scaled.reshape(-1), 1.0).reshape(*values.shape, 3)


class ClapVisualizationHook(HookBase):
    """Every `period` iterations, puts images of the last step of a CLAP model in the storage.

    - "vis/render": camera 0 of sample 0, stacked: input image with the LiDAR points, rendered
      RGB, rendered range (rendered on a pixel grid of stride 4 from the step's field volume);
    - "vis/lidar_ray_weights": BEV of sample 0's points coloured by their ray-sampling weight,
      and "vis/pixel_weights": the blurred pixel-weight map of camera 0 (weighted samplers);
    - "vis/prototypes_lidar", "vis/prototypes_camera": BEV maps (top-most paired cell per
      column) of sample 0's prototype assignments, one colour per prototype.
    Views that need a camera are left out for batches without images. The model must keep
    `last_step` (see `CLAP.forward`). Loss terms, prototype usage and
    perplexity are logged elsewhere (trainer and PrototypeEMHook).
    """

    def __init__(self, model, period: int):
        self.model = getattr(model, "module", model)
        self.period = period

    def after_step(self):
        if (self.trainer.iter + 1) % self.period != 0 or not self.model.last_step:
            return
        step = self.model.last_step
        storage = self.trainer.storage
        images = step["batch"].get("images")
        has_camera = images is not None and images.shape[1] > 0
        with torch.no_grad():
            if has_camera:
                storage.put_image("vis/render", _to_chw(self._render_view(step)))
            weights = step["sampled"].get("point_weights")
            if weights is not None:
                storage.put_image("vis/lidar_ray_weights", _to_chw(self._weights_bev(step)))
            pixel_weights = step["sampled"].get("pixel_weights")
            if pixel_weights is not None and has_camera:
                heat = _heatmap(pixel_weights[0, 0].float().cpu().numpy())
                storage.put_image("vis/pixel_weights", _to_chw(heat))
            if step["prototypes"].get("num_paired_cells", 0):
                for modality in ("lidar", "camera"):
                    image = self._prototype_bev(step, modality)
                    storage.put_image(f"vis/prototypes_{modality}", _to_chw(image))

    def _sample0(self, batch: dict) -> dict:
        in_sample0 = batch["points_batch"] == 0
        sub = {
            "batch_size": 1,
            "points": batch["points"][in_sample0],
            "points_batch": batch["points_batch"][in_sample0],
        }
        for key in ("images", "lidar2img", "lidar2cam", "intrinsics"):
            sub[key] = batch[key][:1, :1]
        return sub

    def _render_view(self, step: dict) -> np.ndarray:
        batch = step["batch"]
        sub = self._sample0(batch)
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
        rgb = torch.cat(colours).reshape(*grid_shape, 3).clamp(0, 1).cpu().numpy()
        rendered_range = torch.cat(ranges).reshape(grid_shape).cpu().numpy()
        max_range = max(float(np.abs(self.model.volume_grid.point_cloud_range).max()), 1.0)
        image = sub["images"][0, 0].permute(1, 2, 0).clamp(0, 255).byte().cpu().numpy()
        image = draw_points_on_image(
            image, sub["points"][:, :3].cpu().numpy(), sub["lidar2img"][0, 0].cpu().numpy()
        )
        rgb_u8 = (rgb * 255).astype(np.uint8)
        range_u8 = depth_colors(rendered_range.reshape(-1), max_range).reshape(*grid_shape, 3)
        full = (int(width), int(height))
        panels = [
            label_image(image, "input + LiDAR"),
            label_image(cv2.resize(rgb_u8, full, interpolation=cv2.INTER_NEAREST), "rendered RGB"),
            label_image(
                cv2.resize(range_u8, full, interpolation=cv2.INTER_NEAREST), "rendered range"
            ),
        ]
        return np.concatenate(panels, axis=0)

    def _weights_bev(self, step: dict) -> np.ndarray:
        batch = step["batch"]
        weights = step["sampled"]["point_weights"]
        in_sample0 = batch["points_batch"] == 0
        points = batch["points"][in_sample0, :3].cpu().numpy()
        w = weights[in_sample0].float().cpu().numpy()
        pc_range = self.model.volume_grid.point_cloud_range
        bev = draw_bev(np.zeros((0, 3)), point_cloud_range=pc_range, pixels_per_meter=4.0)
        order = np.argsort(w)  # heaviest drawn last
        colours = _heatmap(w[order].reshape(1, -1)).reshape(-1, 3)
        height, width = bev.shape[:2]
        col = ((points[order, 0] - pc_range[0]) / (pc_range[3] - pc_range[0]) * width).astype(int)
        row = ((pc_range[4] - points[order, 1]) / (pc_range[4] - pc_range[1]) * height).astype(int)
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        bev[row[inside], col[inside]] = colours[inside]
        return bev

    def _prototype_bev(self, step: dict, modality: str) -> np.ndarray:
        prototypes = step["prototypes"]
        cell_index = prototypes["paired_cell_index"]  # (N, 2): sample, flat cell (z, y, x)
        assignment = prototypes[f"assignment_{modality}"]
        z_n, y_n, x_n = self.model.volume_grid.volume_shape
        num_prototypes = self.model.prototype_head.prototypes.shape[0]
        in_sample0 = cell_index[:, 0] == 0
        flat = cell_index[in_sample0, 1].long()
        labels = assignment[in_sample0].long()
        z, column = flat // (y_n * x_n), flat % (y_n * x_n)
        bev = torch.full((y_n * x_n,), num_prototypes, dtype=torch.long)
        top = torch.full((y_n * x_n,), -1, dtype=torch.long)
        top = top.scatter_reduce(0, column.cpu(), z.cpu(), reduce="amax")
        is_top = z.cpu() == top[column.cpu()]
        bev[column.cpu()[is_top]] = labels.cpu()[is_top]
        image = prototype_palette(num_prototypes)[bev.numpy()].reshape(y_n, x_n, 3)
        image = image[::-1]  # +y up
        scale = max(1, 256 // max(y_n, x_n))
        return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
