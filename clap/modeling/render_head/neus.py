"""Neural SDF + colour field on a feature volume, rendered along rays with NeuS weights.

Units: ray origins, sample distances and ranges are meters in the (augmented) LiDAR frame. The
field itself sees the scene scaled by 1 / scene_scale (scene_scale = max |point-cloud range|),
so its inputs lie in [-1, 1] and its SDF is in those scaled units; the range and SDF losses are
computed in scaled units too (a range error of scene_scale meters counts 1).
"""

from typing import Callable, Dict, Optional, Sequence

import torch
from torch import nn

from clap.config import configurable
from clap.layers.conv3d import Conv3d
from clap.layers.mlp import MLP
from clap.layers.shape_spec import ShapeSpec
from clap.layers.trilinear import normalize_points, trilinear_sample
from clap.layers.volume import VolumeGrid

from .build import RENDER_HEAD_REGISTRY
from .rays import intersect_box

__all__ = ["NeuSRenderHead", "neus_weights", "sample_pdf"]


def neus_weights(sdf: torch.Tensor, inv_s: torch.Tensor) -> torch.Tensor:
    """Discrete NeuS rendering weights of the intervals between consecutive samples.

    alpha_n = max((Phi(s_n) - Phi(s_n+1)) / Phi(s_n), 0) with Phi(s) = sigmoid(inv_s * s),
    T_n = prod_{i<n} (1 - alpha_i), w_n = T_n alpha_n.

    Args:
        sdf: (R, S) SDF at S samples along each ray, ordered by distance.
        inv_s: scalar sharpness of Phi (1 / standard deviation), in 1 / SDF units.

    Returns:
        (R, S - 1) weights, one per interval [t_n, t_n+1].
    """
    cdf = torch.sigmoid(sdf * inv_s)
    previous, following = cdf[:, :-1], cdf[:, 1:]
    alpha = ((previous - following + 1e-5) / (previous + 1e-5)).clamp(0.0, 1.0)
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + 1e-7], dim=1), dim=1
    )
    return transmittance * alpha


def sample_pdf(
    bins: torch.Tensor, weights: torch.Tensor, num_samples: int, deterministic: bool
) -> torch.Tensor:
    """Draw distances from the piecewise-constant density given by interval weights.

    Args:
        bins: (R, S) sorted interval edges (meters).
        weights: (R, S - 1) non-negative weight of each interval.
        num_samples: samples per ray.
        deterministic: evenly spaced quantiles instead of uniform random ones.

    Returns:
        (R, num_samples) distances, sorted, within [bins[:, 0], bins[:, -1]].
    """
    num_rays = bins.shape[0]
    pdf = weights + 1e-5
    pdf = pdf / pdf.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)
    if deterministic:
        quantiles = (torch.arange(num_samples, device=bins.device, dtype=bins.dtype) + 0.5)
        quantiles = (quantiles / num_samples).expand(num_rays, num_samples)
    else:
        quantiles = torch.rand(num_rays, num_samples, device=bins.device, dtype=bins.dtype)
    quantiles = quantiles.contiguous()
    upper = torch.searchsorted(cdf.contiguous(), quantiles, right=True)
    upper = upper.clamp(1, bins.shape[1] - 1)
    lower = upper - 1
    cdf_lower, cdf_upper = cdf.gather(1, lower), cdf.gather(1, upper)
    bin_lower, bin_upper = bins.gather(1, lower), bins.gather(1, upper)
    span = cdf_upper - cdf_lower
    span = torch.where(span < 1e-5, torch.ones_like(span), span)
    fraction = ((quantiles - cdf_lower) / span).clamp(0.0, 1.0)
    samples = bin_lower + fraction * (bin_upper - bin_lower)
    return torch.sort(samples, dim=-1).values


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask`; zero (still in the graph) when the mask is empty."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


@RENDER_HEAD_REGISTRY.register()
class NeuSRenderHead(nn.Module):
    """SDF + colour field decoded from a feature volume, rendered with NeuS weights.

    Field at a point p (meters): f_p = trilinear(F~, p) with F~ = f_3D(F^) (Conv3d + BN + ReLU,
    optional); [s, f_geo] = MLP_sdf([p / scene_scale, f_p]) (the SDF s and the geometry feature
    f_geo are two read-outs of the last layer, UniPAD's layout); colour c =
    sigmoid(MLP_rgb([p / scene_scale, f_geo, view direction, normal])) with the normal dSDF/dp by
    autograd (a graph is kept when gradients are enabled, so the colour loss also shapes the
    geometry through the normal).

    Rendering: rays are clipped to the scene box (INPUT.POINT_CLOUD_RANGE); each gets
    `num_uniform_samples` stratified samples and `num_importance_samples` drawn from the NeuS
    weights of the uniform ones (no gradient); range = sum w r / sum w over the interval
    midpoints r, colour = sum w c.
    """

    @configurable
    def __init__(
        self,
        *,
        volume_grid: VolumeGrid,
        in_channels: int,
        field_conv_channels: int = 32,
        field_conv_kernel_size: int = 3,
        sdf_hidden_channels: Sequence[int] = (16, 16, 16, 16),
        geometry_feature_channels: int = 16,
        rgb_hidden_channels: Sequence[int] = (16, 16),
        rgb_use_normals: bool = True,
        geometric_init: bool = True,
        init_sdf_radius: float = 0.3,
        init_variance: float = 0.3,
        num_uniform_samples: int = 72,
        num_importance_samples: int = 24,
        smooth_interpolation: bool = False,
        range_loss_weight: float = 2.0,
        sdf_loss_weight: float = 0.1,
        rgb_loss_weight: float = 0.1,
        eikonal_loss_weight: float = 0.0,
        camera_range_loss_weight: float = 0.0,
    ):
        """
        Args:
            volume_grid: where the volume lives in the LiDAR frame (also the scene box).
            in_channels: channels of the input volume F^.
            field_conv_channels: output channels of f_3D (Conv3d + BN + ReLU); 0: no f_3D, the
                field reads the input volume directly.
            field_conv_kernel_size: kernel size of the f_3D convolution (odd).
            sdf_hidden_channels: hidden widths of the SDF MLP.
            geometry_feature_channels: width of f_geo.
            rgb_hidden_channels: hidden widths of the colour MLP.
            rgb_use_normals: feed the SDF normal to the colour MLP.
            geometric_init: start the SDF as an inside-out sphere (positive around the sensor).
            init_sdf_radius: its radius, in scaled scene units (x scene_scale meters).
            init_variance: initial NeuS variance v; the sharpness is exp(10 v).
            num_uniform_samples, num_importance_samples: samples per ray.
            smooth_interpolation: smoothstep trilinear weights (see `trilinear_sample`).
            range_loss_weight, sdf_loss_weight, rgb_loss_weight, eikonal_loss_weight,
            camera_range_loss_weight: loss weights (0 leaves a loss out).
        """
        super().__init__()
        if num_uniform_samples < 2:
            raise ValueError("num_uniform_samples must be at least 2")
        self.volume_grid = volume_grid
        self.scene_scale = max(abs(float(v)) for v in volume_grid.point_cloud_range)
        self.register_buffer(
            "box_min", torch.tensor(volume_grid.point_cloud_range[:3]), persistent=False
        )
        self.register_buffer(
            "box_max", torch.tensor(volume_grid.point_cloud_range[3:]), persistent=False
        )
        if field_conv_channels > 0:
            self.field_conv = nn.Sequential(
                Conv3d(
                    in_channels,
                    field_conv_channels,
                    kernel_size=field_conv_kernel_size,
                    padding=field_conv_kernel_size // 2,
                    bias=False,
                ),
                nn.BatchNorm3d(field_conv_channels),
                nn.ReLU(inplace=True),
            )
            field_channels = field_conv_channels
        else:
            self.field_conv = None
            field_channels = in_channels
        self.sdf_net = MLP(
            3 + field_channels,
            sdf_hidden_channels,
            1 + geometry_feature_channels,
            activation="softplus",
            geometric_init=geometric_init,
            init_radius=init_sdf_radius,
            inside_out=True,
        )
        self.rgb_use_normals = rgb_use_normals
        # The colour field only learns from the colour loss: without it there is no colour MLP
        # (parameters without gradient would break DistributedDataParallel).
        self.rgb_net = None
        if rgb_loss_weight > 0:
            self.rgb_net = MLP(
                3 + geometry_feature_channels + 3 + (3 if rgb_use_normals else 0),
                rgb_hidden_channels,
                3,
                activation="relu",
                output_activation="sigmoid",
            )
        self.variance = nn.Parameter(torch.tensor(float(init_variance)))
        self.num_uniform_samples = num_uniform_samples
        self.num_importance_samples = num_importance_samples
        self.smooth_interpolation = smooth_interpolation
        self.range_loss_weight = range_loss_weight
        self.sdf_loss_weight = sdf_loss_weight
        self.rgb_loss_weight = rgb_loss_weight
        self.eikonal_loss_weight = eikonal_loss_weight
        self.camera_range_loss_weight = camera_range_loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        head = cfg.MODEL.RENDER_HEAD
        return {
            "volume_grid": VolumeGrid.from_config(cfg),
            "in_channels": input_shape.channels,
            "field_conv_channels": head.FIELD_CONV_CHANNELS,
            "field_conv_kernel_size": head.FIELD_CONV_KERNEL_SIZE,
            "sdf_hidden_channels": tuple(head.SDF_HIDDEN_CHANNELS),
            "geometry_feature_channels": head.GEOMETRY_FEATURE_CHANNELS,
            "rgb_hidden_channels": tuple(head.RGB_HIDDEN_CHANNELS),
            "rgb_use_normals": head.RGB_USE_NORMALS,
            "geometric_init": head.GEOMETRIC_INIT,
            "init_sdf_radius": head.INIT_SDF_RADIUS,
            "init_variance": head.INIT_VARIANCE,
            "num_uniform_samples": head.NUM_UNIFORM_SAMPLES,
            "num_importance_samples": head.NUM_IMPORTANCE_SAMPLES,
            "smooth_interpolation": head.SMOOTH_INTERPOLATION,
            "range_loss_weight": head.RANGE_LOSS_WEIGHT,
            "sdf_loss_weight": head.SDF_LOSS_WEIGHT,
            "rgb_loss_weight": head.RGB_LOSS_WEIGHT,
            "eikonal_loss_weight": head.EIKONAL_LOSS_WEIGHT,
            "camera_range_loss_weight": head.CAMERA_RANGE_LOSS_WEIGHT,
        }

    # ------------------------------------------------------------------------------------------
    # Field
    # ------------------------------------------------------------------------------------------
    @property
    def inv_s(self) -> torch.Tensor:
        """NeuS sharpness exp(10 v) (1 / scaled SDF units), clipped to [1e-6, 1e6]."""
        return torch.exp(self.variance * 10.0).clamp(1e-6, 1e6)

    def prepare_volume(self, volume: torch.Tensor) -> torch.Tensor:
        """F^ (B, C_F, Z, Y, X) -> the field's volume F~ (f_3D, or F^ itself without it)."""
        expected = tuple(self.volume_grid.volume_shape)
        if tuple(volume.shape[2:]) != expected:
            raise ValueError(
                f"render head volume has spatial shape {tuple(volume.shape[2:])}, expected "
                f"(Z, Y, X) = {expected} from INPUT.POINT_CLOUD_RANGE / VOXEL_SIZE and "
                "MODEL.VOLUME_STRIDE"
            )
        return volume if self.field_conv is None else self.field_conv(volume)

    def _field(self, field_volume, scaled_points, batch_index):
        """SDF (P,) and geometry feature (P, G) at scaled points (P, 3) of samples batch_index."""
        normalized = normalize_points(scaled_points * self.scene_scale, self.volume_grid)
        features = trilinear_sample(
            field_volume,
            normalized.to(field_volume.dtype),
            batch_index,
            smooth=self.smooth_interpolation,
            padding_mode="border",
        )
        output = self.sdf_net(torch.cat([scaled_points.to(features.dtype), features], dim=-1))
        return output[:, 0], output[:, 1:]

    def sdf_at(
        self,
        field_volume: torch.Tensor,
        points: torch.Tensor,
        batch_index: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """SDF of the field at LiDAR-frame points.

        Args:
            field_volume: (B, C, Z, Y, X) the field's volume, `prepare_volume(F^)`.
            points: (N, 3) points, meters.
            batch_index: (N,) sample of each point; may be omitted when B == 1.

        Returns:
            (N,) SDF in scaled scene units (positive in free space); differentiable w.r.t.
            the points, twice.
        """
        if batch_index is None:
            if field_volume.shape[0] != 1:
                raise ValueError("sdf_at needs batch_index when the volume holds several samples")
            batch_index = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
        sdf, _ = self._field(field_volume, points / self.scene_scale, batch_index)
        return sdf

    def field_function(self, field_volume: torch.Tensor) -> Callable:
        """A field callable for the ray samplers: (points (N, 3) m, batch_index (N,)) -> (N,).

        It reads a detached copy of the volume, so curvature sampling adds nothing to the
        volume's gradient.
        """
        detached = field_volume.detach()
        return lambda points, batch_index: self.sdf_at(detached, points, batch_index)

    # ------------------------------------------------------------------------------------------
    # Rendering
    # ------------------------------------------------------------------------------------------
    def _sample_distances(self, field_volume, origins, directions, batch_index, near, far):
        """(R, S) sorted sample distances (meters): stratified uniform + importance."""
        num_rays = origins.shape[0]
        steps = torch.arange(self.num_uniform_samples, device=origins.device, dtype=origins.dtype)
        if self.training:
            jitter = torch.rand(num_rays, self.num_uniform_samples, device=origins.device)
            steps = steps + jitter.to(origins.dtype)
        else:
            steps = steps + 0.5
        distances = near[:, None] + (far - near)[:, None] * steps / self.num_uniform_samples
        if self.num_importance_samples == 0:
            return distances
        with torch.no_grad():
            points = origins[:, None] + distances[..., None] * directions[:, None]
            repeated_batch = batch_index[:, None].expand_as(distances).reshape(-1)
            sdf, _ = self._field(
                field_volume, points.reshape(-1, 3) / self.scene_scale, repeated_batch
            )
            weights = neus_weights(sdf.view(num_rays, -1).to(distances.dtype), self.inv_s)
            extra = sample_pdf(
                distances, weights, self.num_importance_samples, deterministic=not self.training
            )
        return torch.sort(torch.cat([distances, extra], dim=1), dim=1).values

    def render_rays(
        self,
        field_volume: torch.Tensor,
        origins: torch.Tensor,
        directions: torch.Tensor,
        batch_index: torch.Tensor,
        with_rgb: bool,
    ) -> Dict[str, torch.Tensor]:
        """Render R rays through the field.

        Args:
            field_volume: (B, C, Z, Y, X) from `prepare_volume`.
            origins, directions: (R, 3) meters / unit vectors, LiDAR frame.
            batch_index: (R,) sample of each ray.
            with_rgb: also evaluate the colour (and the normals it takes); needs the colour
                MLP (RGB_LOSS_WEIGHT > 0).

        Returns:
            dict: `range` (R,) meters, `rgb` (R, 3) in [0, 1] (with_rgb), `weight_sum` (R,),
            `valid` (R,) bool (the ray crosses the scene box), `near`, `far` (R,) meters,
            `normals` (R, S, 3) dSDF/dp in scaled units (when computed).
        """
        if with_rgb and self.rgb_net is None:
            raise ValueError("NeuSRenderHead has no colour MLP (MODEL.RENDER_HEAD.RGB_LOSS_WEIGHT "
                             "is 0), so it renders no colour")
        near, far = intersect_box(origins, directions, self.box_min, self.box_max)
        valid = far > near + 1e-4
        far = torch.where(valid, far, near + 1.0)
        distances = self._sample_distances(
            field_volume, origins, directions, batch_index, near, far
        ).detach()
        num_rays, num_samples = distances.shape
        scaled_points = (
            (origins[:, None] + distances[..., None] * directions[:, None]) / self.scene_scale
        ).detach()
        repeated_batch = batch_index[:, None].expand(num_rays, num_samples).reshape(-1)
        flat_points = scaled_points.reshape(-1, 3).detach()

        need_normals = (with_rgb and self.rgb_use_normals) or (
            self.eikonal_loss_weight > 0 and self.training
        )
        keep_graph = torch.is_grad_enabled()
        normals = None
        with torch.set_grad_enabled(keep_graph or need_normals):
            if need_normals:
                flat_points.requires_grad_(True)
            sdf, geometry = self._field(field_volume, flat_points, repeated_batch)
            if need_normals:
                (normals,) = torch.autograd.grad(
                    sdf, flat_points, torch.ones_like(sdf), create_graph=keep_graph
                )
        sdf = sdf.view(num_rays, num_samples)
        weights = neus_weights(sdf, self.inv_s)  # (R, S - 1)
        midpoints = 0.5 * (distances[:, 1:] + distances[:, :-1])
        weight_sum = weights.sum(dim=1)
        rendered_range = (weights * midpoints.to(weights.dtype)).sum(dim=1) / weight_sum.clamp_min(
            1e-6
        )
        result = {
            "range": rendered_range,
            "weight_sum": weight_sum,
            "valid": valid,
            "near": near,
            "far": far,
        }
        if normals is not None:
            result["normals"] = normals.view(num_rays, num_samples, 3)
        if with_rgb:
            inputs = [
                scaled_points[:, :-1].to(geometry.dtype),
                geometry.view(num_rays, num_samples, -1)[:, :-1],
                directions[:, None].expand(-1, num_samples - 1, -1).to(geometry.dtype),
            ]
            if self.rgb_use_normals:
                inputs.append(result["normals"][:, :-1])
            colour = self.rgb_net(torch.cat(inputs, dim=-1))
            result["rgb"] = (weights[..., None] * colour).sum(dim=1)
        if not keep_graph:
            result = {k: v.detach() for k, v in result.items()}
        return result

    def forward(self, volume: torch.Tensor, rays: dict) -> Dict[str, torch.Tensor]:
        """Render the sampled rays and compute the losses.

        Args:
            volume: (B, C_F, Z, Y, X) fused volume F^.
            rays: {"lidar": ..., "camera": ...} from `rays.build_rays` (either may be absent).

        Returns:
            dict: losses `loss_range`, `loss_sdf` (LiDAR rays), `loss_rgb` (camera rays),
            `loss_eikonal`, `loss_camera_range` (when their weights are > 0), and detached
            per-ray values for visualisation: `lidar_rendered_range` (R_L,) meters,
            `lidar_valid` (R_L,), `camera_rendered_rgb` (R_C, 3; with a colour MLP),
            `camera_rendered_range` (R_C,) meters, `camera_valid` (R_C,).
        """
        field_volume = self.prepare_volume(volume)
        return self.render(field_volume, rays)

    def render(self, field_volume: torch.Tensor, rays: dict) -> Dict[str, torch.Tensor]:
        """`forward` on a volume already passed through `prepare_volume`."""
        outputs: Dict[str, torch.Tensor] = {}
        eikonal_terms = []
        lidar = rays.get("lidar")
        if lidar is not None:
            rendered = self.render_rays(
                field_volume, lidar["origins"], lidar["directions"], lidar["batch_index"], False
            )
            target = lidar["target_range"]
            valid = rendered["valid"] & (target > rendered["near"]) & (target <= rendered["far"])
            if self.range_loss_weight > 0:
                error = (rendered["range"] - target).abs() / self.scene_scale
                outputs["loss_range"] = self.range_loss_weight * _masked_mean(error, valid)
            if self.sdf_loss_weight > 0:
                hits = lidar["origins"] + target[:, None] * lidar["directions"]
                hit_sdf = self.sdf_at(field_volume, hits, lidar["batch_index"])
                outputs["loss_sdf"] = self.sdf_loss_weight * _masked_mean(hit_sdf.abs(), valid)
            if "normals" in rendered:
                eikonal_terms.append(rendered["normals"][valid])
            outputs["lidar_rendered_range"] = rendered["range"].detach()
            outputs["lidar_valid"] = valid
        camera = rays.get("camera")
        if camera is not None:
            rendered = self.render_rays(
                field_volume, camera["origins"], camera["directions"], camera["batch_index"],
                self.rgb_net is not None,
            )
            valid = rendered["valid"]
            if self.rgb_loss_weight > 0:
                error = (rendered["rgb"] - camera["target_rgb"]).abs().mean(dim=-1)
                outputs["loss_rgb"] = self.rgb_loss_weight * _masked_mean(error, valid)
            if self.camera_range_loss_weight > 0:
                with_range = valid & camera["target_range_valid"]
                error = (rendered["range"] - camera["target_range"]).abs() / self.scene_scale
                outputs["loss_camera_range"] = self.camera_range_loss_weight * _masked_mean(
                    error, with_range
                )
            if "normals" in rendered:
                eikonal_terms.append(rendered["normals"][valid])
            if "rgb" in rendered:
                outputs["camera_rendered_rgb"] = rendered["rgb"].detach()
            outputs["camera_rendered_range"] = rendered["range"].detach()
            outputs["camera_valid"] = valid
        if self.eikonal_loss_weight > 0 and self.training and eikonal_terms:
            normals = torch.cat([n.reshape(-1, 3) for n in eikonal_terms], dim=0)
            eikonal = (normals.norm(dim=-1) - 1.0).square()
            outputs["loss_eikonal"] = self.eikonal_loss_weight * (
                eikonal.sum() / max(eikonal.numel(), 1)
            )
        return outputs
