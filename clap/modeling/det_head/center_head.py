"""CenterPoint-style 3D detection head on a bird's-eye-view (BEV) feature map."""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from clap.config import configurable
from clap.layers import ShapeSpec, VolumeGrid

from .box_utils import circle_nms
from .build import DET_HEAD_REGISTRY
from .losses import gaussian_focal_loss
from .targets import REGRESSION_CHANNELS, CenterTargets, assign_center_targets

# Regression branches: name -> number of output channels, in the order of REGRESSION_CHANNELS.
_REGRESSION_BRANCHES = (("offset", 2), ("z", 1), ("log_size", 3), ("yaw", 2), ("velocity", 2))
# Initial heatmap probability everywhere (the heatmap's last bias is its logit).
_HEATMAP_PRIOR = 0.1


def _integer_ratio(a: int, b: int) -> bool:
    """Whether a / b or b / a is an integer (a, b > 0)."""
    return a % b == 0 or b % a == 0


def _branch(in_channels: int, hidden_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(hidden_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, out_channels, 3, padding=1),
    )


@DET_HEAD_REGISTRY.register()
class CenterHead(nn.Module):
    """Class heatmaps and box regression per BEV cell; objects are heatmap peaks.

    One heatmap per class (all classes in one group) and one shared set of regression branches:
    sub-cell centre offset (2, cells), centre height z (1, meters), log size l, w, h (3, log
    meters), sin / cos yaw (2), velocity vx, vy (2, m/s). The BEV map (B, C, Y, X) covers the
    x / y extent of the point-cloud range with cells of size extent / (X, Y); row iy is y, column
    ix is x, the origin is the range's (x_min, y_min).

    `forward(bev, targets)` returns the losses ("loss_heatmap", "loss_bbox") when `targets` is
    given, else the decoded detections (`predict`).
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        point_cloud_range: Sequence[float],
        bev_shape: Tuple[int, int],
        shared_channels: int = 64,
        head_channels: int = 64,
        min_overlap: float = 0.1,
        min_radius: int = 2,
        heatmap_loss_weight: float = 1.0,
        bbox_loss_weight: float = 0.25,
        code_weights: Sequence[float] = (1.0,) * 8 + (0.2, 0.2),
        score_threshold: float = 0.1,
        pre_nms_top_k: int = 1000,
        max_detections: int = 500,
        peak_kernel: int = 3,
        nms_radius: Sequence[float],
    ):
        """
        Args:
            in_channels: channels C of the BEV map.
            num_classes: number of classes (heatmaps).
            point_cloud_range: (x_min, y_min, z_min, x_max, y_max, z_max), meters, LiDAR frame.
            bev_shape: (Y, X) cells of the BEV map.
            shared_channels: channels of the shared 3x3 conv.
            head_channels: hidden channels of each output branch.
            min_overlap: IoU kept by the Gaussian radius (CenterPoint: 0.1).
            min_radius: smallest Gaussian radius, cells (CenterPoint: 2).
            heatmap_loss_weight, bbox_loss_weight: weights of the two losses.
            code_weights: 10 weights of the L1 regression channels (REGRESSION_CHANNELS order).
            score_threshold: detections below it are dropped.
            pre_nms_top_k: peaks taken per sample before NMS.
            max_detections: detections kept per sample after NMS.
            peak_kernel: a cell is a peak if it is the maximum of its class's heatmap in this
                square window (cells, odd; 1 keeps every cell).
            nms_radius: per class, circle-NMS radius in meters (centre distance in xy).
        """
        super().__init__()
        if len(code_weights) != len(REGRESSION_CHANNELS):
            raise ValueError(f"code_weights needs {len(REGRESSION_CHANNELS)} values "
                             f"({', '.join(REGRESSION_CHANNELS)}), got {len(code_weights)}")
        if len(nms_radius) != num_classes:
            raise ValueError(f"nms_radius needs one radius per class ({num_classes}), "
                             f"got {len(nms_radius)}")
        if peak_kernel < 1 or peak_kernel % 2 == 0:
            raise ValueError(f"peak_kernel must be a positive odd number, got {peak_kernel}")
        self.num_classes = num_classes
        self.bev_shape = tuple(int(v) for v in bev_shape)
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        x_min, y_min, _, x_max, y_max, _ = self.point_cloud_range
        self.grid_origin = (x_min, y_min)
        self.cell_size = ((x_max - x_min) / self.bev_shape[1], (y_max - y_min) / self.bev_shape[0])
        self.min_overlap = min_overlap
        self.min_radius = min_radius
        self.heatmap_loss_weight = heatmap_loss_weight
        self.bbox_loss_weight = bbox_loss_weight
        self.score_threshold = score_threshold
        self.pre_nms_top_k = pre_nms_top_k
        self.max_detections = max_detections
        self.peak_kernel = peak_kernel
        self.register_buffer("code_weights", torch.tensor(code_weights, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("nms_radius", torch.tensor(nms_radius, dtype=torch.float32),
                             persistent=False)

        self.shared_conv = nn.Sequential(
            nn.Conv2d(in_channels, shared_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(shared_channels),
            nn.ReLU(inplace=True),
        )
        self.heatmap = _branch(shared_channels, head_channels, num_classes)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - _HEATMAP_PRIOR) / _HEATMAP_PRIOR))
        self.regression = nn.ModuleDict({
            name: _branch(shared_channels, head_channels, channels)
            for name, channels in _REGRESSION_BRANCHES
        })

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        grid = VolumeGrid.from_config(cfg)
        _, volume_y, volume_x = grid.volume_shape
        if input_shape.height is None or input_shape.width is None:
            raise ValueError("CenterHead needs the BEV map's height and width in input_shape")
        if not all(_integer_ratio(volume, bev) for volume, bev in
                   ((volume_y, input_shape.height), (volume_x, input_shape.width))):
            raise ValueError(
                f"BEV map ({input_shape.height}, {input_shape.width}) is not the dense volume's "
                f"(Y, X) = ({volume_y}, {volume_x}) divided or multiplied by an integer; check "
                "MODEL.BEV_BACKBONE"
            )
        head = cfg.MODEL.DET_HEAD
        return {
            "in_channels": input_shape.channels,
            "num_classes": head.NUM_CLASSES,
            "point_cloud_range": grid.point_cloud_range,
            "bev_shape": (input_shape.height, input_shape.width),
            "shared_channels": head.SHARED_CHANNELS,
            "head_channels": head.HEAD_CHANNELS,
            "min_overlap": head.MIN_OVERLAP,
            "min_radius": head.MIN_RADIUS,
            "heatmap_loss_weight": head.HEATMAP_LOSS_WEIGHT,
            "bbox_loss_weight": head.BBOX_LOSS_WEIGHT,
            "code_weights": tuple(head.CODE_WEIGHTS),
            "score_threshold": head.SCORE_THRESHOLD,
            "pre_nms_top_k": head.PRE_NMS_TOP_K,
            "max_detections": head.MAX_DETECTIONS,
            "peak_kernel": head.PEAK_KERNEL,
            "nms_radius": tuple(head.NMS_RADIUS),
        }

    def forward(self, bev: torch.Tensor, targets: Optional[List[dict]] = None):
        """Losses for `targets` (per sample {"gt_boxes": (M, 9), "gt_labels": (M,)}), or, when
        `targets` is None, the detections of `predict`."""
        heatmap_logits, regression = self.predict_maps(bev)
        if targets is None:
            return self.decode(torch.sigmoid(heatmap_logits), regression)
        return self.losses(heatmap_logits, regression, targets)

    def predict_maps(self, bev: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Dense outputs: heatmap logits (B, num_classes, Y, X) and regression (B, 10, Y, X)
        in REGRESSION_CHANNELS order."""
        if tuple(bev.shape[-2:]) != self.bev_shape:
            raise ValueError(f"CenterHead was built for a BEV map of {self.bev_shape} cells, "
                             f"got {tuple(bev.shape[-2:])}")
        shared = self.shared_conv(bev)
        regression = torch.cat([self.regression[name](shared) for name, _ in
                                _REGRESSION_BRANCHES], dim=1)
        return self.heatmap(shared), regression

    def predict(self, bev: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        """Detections per sample: {"boxes" (M, 9) LiDAR frame, "scores" (M,), "labels" (M,)}."""
        heatmap_logits, regression = self.predict_maps(bev)
        return self.decode(torch.sigmoid(heatmap_logits), regression)

    def get_targets(self, gt_boxes: Sequence[torch.Tensor],
                    gt_labels: Sequence[torch.Tensor]) -> CenterTargets:
        """Heatmap and regression targets of per-sample boxes (M_i, 9) and labels (M_i,)."""
        return assign_center_targets(
            gt_boxes, gt_labels, num_classes=self.num_classes, grid_origin=self.grid_origin,
            cell_size=self.cell_size, grid_shape=self.bev_shape, min_overlap=self.min_overlap,
            min_radius=self.min_radius,
        )

    def losses(self, heatmap_logits: torch.Tensor, regression: torch.Tensor,
               targets: List[dict]) -> Dict[str, torch.Tensor]:
        """Gaussian focal loss on the heatmaps and weighted L1 on the regression at the centre
        cells, each divided by the number of objects in the batch (at least 1)."""
        if len(targets) != heatmap_logits.shape[0]:
            raise ValueError(f"got {len(targets)} target dicts for a batch of "
                             f"{heatmap_logits.shape[0]} BEV maps")
        assigned = self.get_targets([t["gt_boxes"].to(regression.device) for t in targets],
                                    [t["gt_labels"].to(regression.device) for t in targets])
        num_objects = max(assigned.num_objects, 1)
        loss_heatmap = gaussian_focal_loss(heatmap_logits.float(), assigned.heatmap)

        batch_size, channels = regression.shape[:2]
        flat = regression.float().reshape(batch_size, channels, -1).permute(0, 2, 1)
        predicted = flat[assigned.batch_index, assigned.cell_index]
        l1 = (predicted - assigned.regression).abs() * assigned.regression_mask
        loss_bbox = (l1 * self.code_weights).sum()
        return {
            "loss_heatmap": self.heatmap_loss_weight * loss_heatmap / num_objects,
            "loss_bbox": self.bbox_loss_weight * loss_bbox / num_objects,
        }

    @torch.no_grad()
    def decode(self, heatmap_scores: torch.Tensor,
               regression: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        """Boxes from heatmap peaks.

        Args:
            heatmap_scores: (B, num_classes, Y, X) probabilities.
            regression: (B, 10, Y, X), REGRESSION_CHANNELS order.
        Returns:
            per sample {"boxes" (M, 9) (x, y, z, l, w, h, yaw, vx, vy) LiDAR frame, "scores" (M,),
            "labels" (M,) long}, by decreasing score: the top `pre_nms_top_k` peaks above
            `score_threshold`, per-class circle NMS, at most `max_detections`.
        """
        batch_size, num_classes, height, width = heatmap_scores.shape
        if self.peak_kernel > 1:
            pooled = F.max_pool2d(heatmap_scores, self.peak_kernel, stride=1,
                                  padding=self.peak_kernel // 2)
            heatmap_scores = heatmap_scores * (heatmap_scores == pooled)
        top_k = min(self.pre_nms_top_k, num_classes * height * width)
        top_scores, top_index = heatmap_scores.reshape(batch_size, -1).topk(top_k, dim=1)
        cells_per_class = height * width
        regression = regression.reshape(batch_size, regression.shape[1], -1)

        detections = []
        for sample_idx in range(batch_size):
            keep = top_scores[sample_idx] > self.score_threshold
            scores = top_scores[sample_idx][keep]
            labels = top_index[sample_idx][keep] // cells_per_class
            cells = top_index[sample_idx][keep] % cells_per_class
            values = regression[sample_idx][:, cells].T.float()
            cell_x = (cells % width).float()
            cell_y = torch.div(cells, width, rounding_mode="floor").float()
            x = (cell_x + values[:, 0]) * self.cell_size[0] + self.grid_origin[0]
            y = (cell_y + values[:, 1]) * self.cell_size[1] + self.grid_origin[1]
            sizes = torch.exp(values[:, 3:6].clamp(max=math.log(100.0)))
            yaw = torch.atan2(values[:, 6], values[:, 7])
            boxes = torch.cat([torch.stack([x, y, values[:, 2]], dim=1), sizes, yaw[:, None],
                               values[:, 8:10]], dim=1)
            kept = circle_nms(boxes[:, :2], scores, labels, self.nms_radius)
            kept = kept[: self.max_detections]
            detections.append({"boxes": boxes[kept], "scores": scores[kept],
                               "labels": labels[kept]})
        return detections
