"""Depth-distribution camera lift: bins, a forced depth, image augmentation, the configs."""

import math
import os

import numpy as np
import pytest
import torch

from clap.config import get_cfg
from clap.data.transforms.image import ImageTransform
from clap.layers import VolumeGrid
from clap.modeling import build_image_backbone, build_view_transform
from clap.modeling.view_transform import depth_bin_index, project_points, sample_volume_features
from tests.test_configs_merge import ROOT, default_tree_for, discover_config_files
from tests.test_encoders import forward_camera


def look_along_x(fx, fy, cx, cy, x0=0.0):
    """lidar2img (4, 4) of a camera at (x0, 0, 0) looking along +x (u to -y, v to -z)."""
    to_camera_origin = torch.eye(4)
    to_camera_origin[0, 3] = -x0
    return forward_camera(fx, fy, cx, cy) @ to_camera_origin


def test_depth_bin_index_half_open_bins_and_range():
    # 4 bins of 2 m over [0, 8): [0, 2), [2, 4), [4, 6), [6, 8)
    depth = torch.tensor([-0.1, 0.0, 1.99, 2.0, 3.9, 4.0, 7.99, 8.0, 30.0])
    index, in_range = depth_bin_index(depth, 4, (0.0, 8.0))
    assert in_range.tolist() == [False, True, True, True, True, True, True, False, False]
    assert index[in_range].tolist() == [0, 0, 1, 1, 2, 3]


def lift_cfg(depth_bins):
    cfg = get_cfg()
    # x in [0, 16): 8 cells of 2 m; y in [-8, 8): 8 cells; z in [-2, 2): 4 cells of 1 m
    cfg.INPUT.POINT_CLOUD_RANGE = [0.0, -8.0, -2.0, 16.0, 8.0, 2.0]
    cfg.INPUT.VOXEL_SIZE = [0.5, 0.5, 0.5]
    cfg.MODEL.VOLUME_STRIDE = [4, 4, 2]
    cfg.MODEL.IMAGE_BACKBONE.DEPTH = 18
    cfg.MODEL.IMAGE_BACKBONE.FPN.OUT_CHANNELS = 8
    cfg.MODEL.VIEW_TRANSFORM.OUT_CHANNELS = 6
    cfg.MODEL.VIEW_TRANSFORM.DEPTH_BINS = depth_bins
    cfg.MODEL.VIEW_TRANSFORM.DEPTH_RANGE = [1.0, 17.0]  # 2 m bins: bin k = [1 + 2k, 3 + 2k)
    return cfg


def test_depth_forced_to_one_bin_lights_up_only_the_cells_at_that_depth():
    torch.manual_seed(0)
    cfg = lift_cfg(depth_bins=8)
    backbone = build_image_backbone(cfg).eval()
    lift = build_view_transform(cfg, backbone.output_shape())
    height, width = 64, 96
    # a synthetic image: smooth colour ramps plus noise
    ramp_v, ramp_u = torch.meshgrid(
        torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij"
    )
    image = torch.stack([ramp_u, ramp_v, ramp_u * ramp_v]) + 0.1 * torch.randn(3, height, width)
    features = backbone(image[None])
    # camera 0.5 m behind the box: cell-centre depths 1.5, 3.5, .., 15.5 m, one per 2 m bin,
    # off the bin centres (an interpolation between bins would light up neighbours too)
    lidar2img = look_along_x(30.0, 30.0, width / 2, height / 2, x0=-0.5)[None, None]
    forced_bin = 3  # [7, 9) m: the cells centred at x = 7 m, depth 7.5 m
    with torch.no_grad():
        lift.depth_head.weight.zero_()
        lift.depth_head.bias.fill_(0.0)
        lift.depth_head.bias[forced_bin] = 1.0e4  # softmax: exactly 1 there, exactly 0 elsewhere
        volume, visible = lift(features, lidar2img, (height, width))

    centres = VolumeGrid.from_config(cfg).volume_centers()  # (Z, Y, X, 3)
    uv, depth, in_front = project_points(centres.reshape(-1, 3), lidar2img, 0.1)
    u, v = (uv + 0.5).unbind(-1)
    in_image = (in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)).reshape(
        centres.shape[:3]
    )
    at_depth = (centres[..., 0] + 0.5 >= 7.0) & (centres[..., 0] + 0.5 < 9.0)
    lit = volume[0].abs().sum(dim=0) > 0
    assert (in_image & at_depth).sum() >= 8 and (in_image & ~at_depth).sum() >= 8
    assert torch.equal(lit, in_image & at_depth)
    # every cell the camera sees inside the depth range is visible, lit or not
    assert torch.equal(visible[0], in_image)

    # There the feature is the plain lifted feature: p(bin) = 1.
    plain = build_view_transform(lift_cfg(depth_bins=0), backbone.output_shape())
    plain.output_proj.load_state_dict(lift.output_proj.state_dict())
    with torch.no_grad():
        expected, _ = plain(features, lidar2img, (height, width))
    torch.testing.assert_close(volume[0][:, lit], expected[0][:, lit])


def test_depth_weighting_is_exact_under_image_augmentation():
    """Halving and mirroring the image (the data pipeline's ImageTransform, folded into
    lidar2img) with feature and depth maps that follow the image gives the same features."""
    generator = torch.Generator().manual_seed(1)
    height, width, stride = 64, 96, 8
    channels, bins, depth_range = 5, 6, (1.0, 13.0)
    feature_map = torch.randn(1, channels, height // stride, width // stride, generator=generator)
    logits = torch.randn(1, bins, height // stride, width // stride, generator=generator)
    depth_probs = logits.softmax(dim=1)
    lidar2img = look_along_x(40.0, 40.0, width / 2 - 0.5, height / 2 - 0.5)
    points = torch.rand(400, 3, generator=generator) * torch.tensor([14.0, 12.0, 6.0])
    points -= torch.tensor([0.0, 6.0, 3.0])

    transform = ImageTransform(
        (height, width), (height // 2, width // 2), (0, 0), (height // 2, width // 2), flip=True
    )
    pixel_map = torch.eye(4)
    pixel_map[:3, :3] = torch.from_numpy(transform.matrix.astype(np.float32))
    augmented = pixel_map @ lidar2img  # = augmented intrinsics @ lidar2cam, as in the mapper

    def lift(feature, probs, projection, size, level_stride):
        return sample_volume_features(
            [feature], [level_stride], points, projection[None, None], size,
            depth_probs=[probs], depth_range=depth_range,
        )

    original, visible = lift(feature_map, depth_probs, lidar2img, (height, width), stride)
    # The halved image keeps the same feature cells at half the stride; the mirror flips them.
    flipped, visible_flipped = lift(
        feature_map.flip(-1), depth_probs.flip(-1), augmented, (height // 2, width // 2),
        stride // 2,
    )
    assert visible.sum() > 100 and torch.equal(visible, visible_flipped)
    assert original.abs().sum() > 0
    torch.testing.assert_close(flipped, original)
    # the depth behind the weights is the camera z of the un-augmented camera, in meters
    _, depth, _ = project_points(points, augmented[None, None], 0.1)
    torch.testing.assert_close(depth[0, 0], points[:, 0])


def test_depth_weights_sum_to_one_along_a_ray_through_every_bin():
    """Points at the bin centres along one ray share the pixel: their weights are the pixel's
    distribution, so they sum to 1 (the feature is spread along the ray, not copied)."""
    bins, depth_range = 5, (2.0, 12.0)
    probs = torch.rand(1, bins, 4, 4, generator=torch.Generator().manual_seed(2)).softmax(dim=1)
    feature_map = torch.ones(1, 1, 4, 4)
    lidar2img = look_along_x(8.0, 8.0, 7.5, 7.5)  # 16 x 16 image, stride 4
    centres = torch.arange(bins) * 2.0 + 3.0
    points = torch.stack([centres, torch.zeros(bins), torch.zeros(bins)], dim=1)
    features, visible = sample_volume_features(
        [feature_map], [4], points, lidar2img[None, None], (16, 16),
        depth_probs=[probs], depth_range=depth_range,
    )
    assert visible.all()
    # the optical axis hits the corner of the four central cells: bilinear mean of them
    expected = probs[0, :, 1:3, 1:3].mean(dim=(1, 2))
    torch.testing.assert_close(features[0, 0], expected)
    assert math.isclose(features.sum().item(), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize(
    "key, value, message",
    [("DEPTH_BINS", -1, "DEPTH_BINS must be >= 0"), ("DEPTH_RANGE", [5.0, 5.0], "DEPTH_RANGE")],
)
def test_bad_depth_settings_name_the_key(key, value, message):
    cfg = lift_cfg(depth_bins=8)
    setattr(cfg.MODEL.VIEW_TRANSFORM, key, value)
    with pytest.raises(ValueError, match=message):
        build_view_transform(cfg, build_image_backbone(cfg).output_shape())


@pytest.mark.parametrize("path", discover_config_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_camera_config_lifts_with_a_depth_distribution(path):
    cfg = default_tree_for(path)
    cfg.merge_from_file(path)
    uses_lift = cfg.MODEL.META_ARCHITECTURE in ("CLAP", "DetectionModel")
    if not uses_lift or "camera" not in cfg.MODEL.MODALITIES:
        pytest.skip("no camera-to-voxel lift")
    assert cfg.MODEL.VIEW_TRANSFORM.DEPTH_BINS > 0
    d_min, d_max = cfg.MODEL.VIEW_TRANSFORM.DEPTH_RANGE
    # the bins start near the cameras and reach at least the edges of the grid (not its corners:
    # BEVFusion's 60 m on a +-54 m grid)
    x0, y0, _, x1, y1, _ = cfg.INPUT.POINT_CLOUD_RANGE
    assert d_min <= 1.0 and d_max >= max(-x0, x1, -y0, y1)
