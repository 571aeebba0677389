"""LiDAR encoder, image backbone, camera-to-voxel lift and fusion on tiny inputs."""

import os

import pytest
import torch

from clap.config import get_cfg
from clap.layers import VolumeGrid
from clap.modeling import (
    build_fusion,
    build_image_backbone,
    build_lidar_backbone,
    build_view_transform,
)
from clap.modeling.image_backbone import (
    FrozenBatchNorm2d,
    ResNet,
    ResNetFPN,
    mask_image_patches,
    normalize_images,
)
from clap.modeling.lidar_backbone import sample_block_mask, stage_strides
from clap.modeling.view_transform import sample_volume_features
from tests.test_configs_merge import ROOT, default_tree_for


def tiny_cfg():
    cfg = get_cfg()
    cfg.INPUT.POINT_CLOUD_RANGE = [-3.2, -3.2, -1.6, 3.2, 3.2, 1.6]
    cfg.INPUT.VOXEL_SIZE = [0.2, 0.2, 0.2]  # input grid 32 x 32 x 16
    cfg.MODEL.VOLUME_STRIDE = [8, 8, 4]  # volume (Z, Y, X) = (4, 4, 4)
    cfg.MODEL.SPARSE_BACKEND = "torch"
    cfg.MODEL.LIDAR_BACKBONE.STEM_CHANNELS = 4
    cfg.MODEL.LIDAR_BACKBONE.STAGE_CHANNELS = [6, 8, 8, 16]  # 4 -> 6: submanifold transition
    cfg.MODEL.LIDAR_BACKBONE.NUM_BLOCKS = [1, 1, 1, 1]
    cfg.MODEL.LIDAR_BACKBONE.OUT_CHANNELS = 12
    cfg.MODEL.IMAGE_BACKBONE.DEPTH = 18
    cfg.MODEL.IMAGE_BACKBONE.FPN.OUT_CHANNELS = 8
    cfg.MODEL.VIEW_TRANSFORM.OUT_CHANNELS = 6
    cfg.MODEL.FUSION.OUT_CHANNELS = 10
    return cfg


def random_voxels(grid_size, per_sample, seed=0):
    """(features (V, 5), coords (V, 4)) with `per_sample[b]` unique voxels in sample b."""
    generator = torch.Generator().manual_seed(seed)
    x_n, y_n, z_n = grid_size
    coords = []
    for b, count in enumerate(per_sample):
        flat = torch.randperm(x_n * y_n * z_n, generator=generator)[:count]
        coords.append(torch.stack(
            [torch.full_like(flat, b), flat // (y_n * z_n), (flat // z_n) % y_n, flat % z_n], 1
        ))
    coords = torch.cat(coords).int()
    features = torch.randn(coords.shape[0], 5, generator=generator)
    return features, coords


# ------------------------------------------------------------------------------------------
# LiDAR encoder
# ------------------------------------------------------------------------------------------


def test_lidar_encoder_shape_empty_sample_and_gradients():
    cfg = tiny_cfg()
    encoder = build_lidar_backbone(cfg).train()
    grid = VolumeGrid.from_config(cfg)
    features, coords = random_voxels(grid.input_grid_size, [60, 0, 40])
    volume = encoder(features, coords, batch_size=3)
    spec = encoder.output_shape()
    assert volume.shape == (3, spec.channels, spec.depth, spec.height, spec.width)
    assert (spec.depth, spec.height, spec.width) == grid.volume_shape == (4, 4, 4)
    assert volume[1].abs().sum() == 0
    assert volume[0].abs().sum() > 0 and volume[2].abs().sum() > 0
    volume.sum().backward()
    assert encoder.stem[0].weight.grad.abs().sum() > 0


def test_lidar_encoder_all_empty_batch():
    encoder = build_lidar_backbone(tiny_cfg()).eval()
    volume = encoder(torch.zeros(0, 5), torch.zeros(0, 4, dtype=torch.int32), batch_size=2)
    assert volume.shape == (2, 12, 4, 4, 4) and volume.abs().sum() == 0


def test_lidar_encoder_rejects_coords_outside_grid():
    encoder = build_lidar_backbone(tiny_cfg())
    coords = torch.tensor([[0, 1, 2, 16]], dtype=torch.int32)  # z grid has 16 voxels
    with pytest.raises(ValueError, match="voxel_coords z"):
        encoder(torch.zeros(1, 5), coords, batch_size=1)


def test_stage_strides_follow_volume_stride():
    assert stage_strides((8, 8, 4), 4) == [(1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 1)]
    with pytest.raises(ValueError, match="VOLUME_STRIDE along z"):
        stage_strides((8, 8, 3), 4)


def test_block_mask_drops_requested_ratio_of_blocks_per_sample():
    block = 4
    coords = []
    # Sample 0 occupies 10 blocks, sample 1 occupies 4 blocks; 3 voxels per block.
    for b, num_blocks in ((0, 10), (1, 4)):
        for k in range(num_blocks):
            base = torch.tensor([k * block, (k % 2) * block, 0])
            for offset in ([0, 0, 0], [1, 2, 3], [3, 3, 1]):
                coords.append([b] + (base + torch.tensor(offset)).tolist())
    coords = torch.tensor(coords)
    keep = sample_block_mask(coords, block, 0.5, generator=torch.Generator().manual_seed(0))
    block_id = coords[:, 1] // block
    for b, num_blocks in ((0, 10), (1, 4)):
        in_sample = coords[:, 0] == b
        kept_blocks = set(block_id[in_sample & keep].tolist())
        dropped_blocks = set(block_id[in_sample & ~keep].tolist())
        assert not kept_blocks & dropped_blocks  # whole blocks are dropped
        assert len(dropped_blocks) == num_blocks // 2
    assert sample_block_mask(coords, block, 0.0).all()


def test_lidar_encoder_masking_only_in_training():
    cfg = tiny_cfg()
    cfg.MODEL.LIDAR_BACKBONE.MASK_RATIO = 0.5
    cfg.MODEL.LIDAR_BACKBONE.MASK_BLOCK_SIZE = 8
    encoder = build_lidar_backbone(cfg)
    features, coords = random_voxels(VolumeGrid.from_config(cfg).input_grid_size, [80, 80])
    _, keep = encoder.train()(features, coords, 2, return_mask=True)
    assert keep.shape == (coords.shape[0],) and 0 < int(keep.sum()) < coords.shape[0]
    _, keep = encoder.eval()(features, coords, 2, return_mask=True)
    assert keep.all()


# ------------------------------------------------------------------------------------------
# Image backbone
# ------------------------------------------------------------------------------------------


def test_resnet_fpn_output_shapes():
    cfg = tiny_cfg()
    cfg.MODEL.IMAGE_BACKBONE.FPN.OUT_FEATURES = ["p2", "p3", "p4", "p5"]
    backbone = build_image_backbone(cfg).eval()
    assert isinstance(backbone, ResNetFPN)
    images = torch.rand(2, 3, 64, 96) * 255
    features = backbone(normalize_images(images, cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD))
    shapes = backbone.output_shape()
    assert list(features) == ["p2", "p3", "p4", "p5"] == list(shapes)
    for name, feature in features.items():
        spec = shapes[name]
        assert feature.shape == (2, spec.channels, 64 // spec.stride, 96 // spec.stride)


def test_resnet_fpn_builds_only_the_levels_the_lift_reads_and_each_gets_a_gradient():
    cfg = tiny_cfg()  # ResNet stages res2..res5, the lift reads p3
    backbone = build_image_backbone(cfg)
    assert list(backbone.output_shape()) == ["p3"]
    assert backbone.fpn.in_features == ["res3", "res4", "res5"]  # res2 has no lateral conv
    assert len(backbone.fpn.output_convs) == 1
    features = backbone(torch.randn(1, 3, 64, 96))
    assert list(features) == ["p3"] and features["p3"].shape == (1, 8, 8, 12)
    features["p3"].sum().backward()
    assert [n for n, p in backbone.named_parameters() if p.grad is None] == []

    cfg.MODEL.VIEW_TRANSFORM.IN_FEATURES = ["p3", "p5"]
    assert list(build_image_backbone(cfg).output_shape()) == ["p3", "p5"]
    cfg.MODEL.IMAGE_BACKBONE.FPN.OUT_FEATURES = ["p4"]  # an explicit choice wins
    assert list(build_image_backbone(cfg).output_shape()) == ["p4"]
    cfg.MODEL.IMAGE_BACKBONE.FPN.OUT_FEATURES = ["p6"]
    with pytest.raises(ValueError, match="p6"):
        build_image_backbone(cfg)


def test_resnet50_stage_channels():
    backbone = ResNet(depth=50, out_features=["res2", "res5"]).eval()
    features = backbone(torch.randn(1, 3, 64, 64))
    assert features["res2"].shape == (1, 256, 16, 16)
    assert features["res5"].shape == (1, 2048, 2, 2)
    assert backbone.output_shape()["res5"].channels == 2048


def torchvision_resnet18_state_dict(generator):
    """A state dict with torchvision's ResNet-18 names and shapes, written out by hand."""
    state = {}

    def conv(name, c_out, c_in, k):
        state[f"{name}.weight"] = torch.randn(c_out, c_in, k, k, generator=generator)

    def bn(name, c):
        state[f"{name}.weight"] = torch.rand(c, generator=generator) + 0.5
        state[f"{name}.bias"] = torch.randn(c, generator=generator)
        state[f"{name}.running_mean"] = torch.randn(c, generator=generator)
        state[f"{name}.running_var"] = torch.rand(c, generator=generator) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(100)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    c_in = 64
    for layer, c in zip(range(1, 5), (64, 128, 256, 512)):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            conv(f"{prefix}.conv1", c, c_in if block == 0 else c, 3)
            bn(f"{prefix}.bn1", c)
            conv(f"{prefix}.conv2", c, c, 3)
            bn(f"{prefix}.bn2", c)
            if block == 0 and layer > 1:
                conv(f"{prefix}.downsample.0", c, c_in, 1)
                bn(f"{prefix}.downsample.1", c)
        c_in = c
    state["fc.weight"] = torch.randn(1000, 512, generator=generator)
    state["fc.bias"] = torch.randn(1000, generator=generator)
    return state


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_load_torchvision_checkpoint_matches_all_keys(tmp_path, norm):
    state = torchvision_resnet18_state_dict(torch.Generator().manual_seed(0))
    path = tmp_path / "resnet18_torchvision.pth"
    torch.save(state, path)
    backbone = ResNetFPN(
        bottom_up=ResNet(depth=18, norm=norm), fpn_out_channels=8
    )
    report = backbone.load_torchvision_checkpoint(str(path))
    assert report == {"missing": [], "unexpected": [], "ignored": ["fc.bias", "fc.weight"]}
    loaded = backbone.bottom_up.state_dict()
    for key in ("conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.running_var",
                "layer3.0.downsample.1.bias"):
        assert torch.equal(loaded[key], state[key])


def test_torchvision_weights_loaded_from_config_and_bad_keys_reported(tmp_path):
    state = torchvision_resnet18_state_dict(torch.Generator().manual_seed(1))
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    del state["layer1.1.conv2.weight"]
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    cfg = tiny_cfg()
    cfg.MODEL.IMAGE_BACKBONE.WEIGHTS = str(path)
    backbone = build_image_backbone(cfg)
    assert torch.equal(backbone.bottom_up.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    report = backbone.load_torchvision_checkpoint(str(path))
    assert report["missing"] == ["layer1.1.conv2.weight"]
    assert report["unexpected"] == ["layer5.0.conv1.weight"]


def test_freeze_at_freezes_leading_stages():
    backbone = ResNet(depth=18, norm="BN", freeze_at=2)
    assert not any(p.requires_grad for p in backbone.conv1.parameters())
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert all(p.requires_grad for p in backbone.layer2.parameters())
    assert isinstance(backbone.bn1, FrozenBatchNorm2d)
    assert isinstance(backbone.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(backbone.layer2[0].bn1, torch.nn.BatchNorm2d)


def test_frozen_batchnorm_matches_eval_batchnorm():
    bn = torch.nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 2)
    bn.eval()
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(FrozenBatchNorm2d.convert(bn)(x), bn(x))


def test_patch_masking_ratio_and_fill():
    images = torch.randn(3, 3, 20, 30) + 5.0
    masked, patch_mask = mask_image_patches(images, 8, 0.25)
    assert patch_mask.shape == (3, 3, 4)  # ceil(20 / 8), ceil(30 / 8)
    assert (patch_mask.flatten(1).sum(1) == 3).all()  # round(0.25 * 12)
    pixel_mask = patch_mask.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, :20, :30]
    assert (masked.permute(1, 0, 2, 3)[:, pixel_mask] == 0).all()
    assert torch.equal(masked.permute(1, 0, 2, 3)[:, ~pixel_mask],
                       images.permute(1, 0, 2, 3)[:, ~pixel_mask])


def test_backbone_masks_only_in_training():
    backbone = ResNet(depth=18, out_features=["res3"], mask_ratio=0.5, mask_patch_size=16)
    _, mask = backbone.train()(torch.randn(2, 3, 32, 32), return_mask=True)
    assert mask.shape == (2, 2, 2) and (mask.flatten(1).sum(1) == 2).all()
    _, mask = backbone.eval()(torch.randn(2, 3, 32, 32), return_mask=True)
    assert mask is None


# (LiDAR, image) masking rate per method config: CLAP's paper rate 0.9 for both modalities at
# the paper's scale, UniPAD's 0.8 / 0.3 for the single-modal baselines and for every rendering
# method on the small CPU volume (docs/prototypes.md), none for detection.
MASK_RATIOS = {
    "configs/nuscenes/clap.yaml": (0.9, 0.9),
    "configs/synthetic/clap_cpu.yaml": (0.8, 0.3),
    "projects/single_modal/configs/nuscenes/lidar_only.yaml": (0.8, 0.3),
    "projects/single_modal/configs/nuscenes/camera_only.yaml": (0.8, 0.3),
    "projects/single_modal/configs/synthetic/lidar_only_cpu.yaml": (0.8, 0.3),
    "projects/single_modal/configs/synthetic/camera_only_cpu.yaml": (0.8, 0.3),
    "configs/nuscenes/detection.yaml": (0.0, 0.0),
    "configs/synthetic/detection_cpu.yaml": (0.0, 0.0),
}


@pytest.mark.parametrize("config", sorted(MASK_RATIOS))
def test_masking_rates_of_the_method_configs(config):
    path = os.path.join(ROOT, config)
    cfg = default_tree_for(path)
    cfg.merge_from_file(path)
    rates = (cfg.MODEL.LIDAR_BACKBONE.MASK_RATIO, cfg.MODEL.IMAGE_BACKBONE.MASK_RATIO)
    assert rates == MASK_RATIOS[config]


# ------------------------------------------------------------------------------------------
# Camera-to-voxel lift
# ------------------------------------------------------------------------------------------


def forward_camera(fx, fy, cx, cy):
    """lidar2img of a camera at the origin looking along +x (image u to -y, v to -z)."""
    lidar2cam = torch.tensor(
        [[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    intrinsics = torch.tensor(
        [[fx, 0.0, cx, 0.0], [0.0, fy, cy, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    return intrinsics @ lidar2cam


def test_sampling_at_projected_cell_centre_is_exact_and_outside_is_zero():
    stride, (height, width) = 4, (16, 24)
    channels = 3
    # Feature cell (i, j) of camera 0 holds 100 * c + 10 * i + j; camera 1 holds its negative.
    i, j = torch.meshgrid(torch.arange(4.0), torch.arange(6.0), indexing="ij")
    fmap0 = torch.stack([100 * c + 10 * i + j for c in range(channels)])
    feature_maps = torch.stack([fmap0, -fmap0 + 1000])  # (B * N_cam, C, h, w), B = 1

    target_i, target_j = 2, 3
    # Cell centre in integer-centre pixel coordinates (pixel (u, v) covers [u - 0.5, u + 0.5)).
    u_star, v_star = stride * (target_j + 0.5) - 0.5, stride * (target_i + 0.5) - 0.5
    seen = torch.tensor([4.0, 0.5, -0.25])  # x forward 4 m, 0.5 m left, 0.25 m down
    fx = fy = 20.0
    cx = u_star - fx * (-seen[1] / seen[0])
    cy = v_star - fy * (-seen[2] / seen[0])
    camera = forward_camera(fx, fy, float(cx), float(cy))
    behind = -seen  # projects onto the same pixel, but from behind the camera
    off_image = torch.tensor([4.0, -5.0, 0.0])  # u far beyond the right border
    points = torch.stack([seen, behind, off_image])

    # One camera sees `seen`.
    features, visible = sample_volume_features(
        [fmap0[None]], [stride], points, camera[None, None], (height, width)
    )
    torch.testing.assert_close(features[0, :, 0], fmap0[:, target_i, target_j])
    assert visible[0].tolist() == [True, False, False]
    assert features[0, :, 1:].abs().sum() == 0

    # Two cameras see it: the mean of their features.
    features, visible = sample_volume_features(
        [feature_maps], [stride], points, torch.stack([camera, camera])[None], (height, width)
    )
    expected = (fmap0[:, target_i, target_j] + (1000 - fmap0[:, target_i, target_j])) / 2
    torch.testing.assert_close(features[0, :, 0], expected)
    assert features[0, :, 1:].abs().sum() == 0


def test_lift_module_shapes_and_invisible_cells_are_zero():
    cfg = tiny_cfg()
    cfg.MODEL.VIEW_TRANSFORM.DEPTH_BINS = 4
    backbone = build_image_backbone(cfg).eval()
    lift = build_view_transform(cfg, backbone.output_shape())
    height, width = 32, 48
    features = backbone(torch.randn(2 * 2, 3, height, width))  # B = 2, N_cam = 2
    camera = forward_camera(10.0, 10.0, width / 2, height / 2)
    lidar2img = torch.stack([camera, camera]).expand(2, 2, 4, 4)
    volume, visible = lift(features, lidar2img, (height, width))
    spec = lift.output_shape()
    assert volume.shape == (2, spec.channels, spec.depth, spec.height, spec.width)
    assert visible.shape == (2, spec.depth, spec.height, spec.width)
    centres = VolumeGrid.from_config(cfg).volume_centers()
    assert not visible[:, centres[..., 0] <= 0.1].any()  # behind both cameras
    assert visible.any() and not visible.all()
    assert volume.permute(0, 2, 3, 4, 1)[~visible].abs().sum() == 0
    assert volume.permute(0, 2, 3, 4, 1)[visible].abs().sum() > 0


# ------------------------------------------------------------------------------------------
# Fusion
# ------------------------------------------------------------------------------------------


def test_fusion_shapes_and_single_modal_variants():
    cfg = tiny_cfg()
    lidar_shape = build_lidar_backbone(cfg).output_shape()
    camera_shape = build_view_transform(
        cfg, build_image_backbone(cfg).output_shape()
    ).output_shape()
    z, y, x = VolumeGrid.from_config(cfg).volume_shape
    lidar = torch.randn(2, lidar_shape.channels, z, y, x)
    camera = torch.randn(2, camera_shape.channels, z, y, x)

    fusion = build_fusion(cfg, lidar_shape, camera_shape)
    fused = fusion(lidar, camera)
    spec = fusion.output_shape()
    assert fused.shape == (2, spec.channels, spec.depth, spec.height, spec.width)
    assert spec.channels == 10

    camera_only = build_fusion(cfg, None, camera_shape)
    assert camera_only(None, camera).shape == (2, 10, z, y, x)
    with pytest.raises(ValueError, match="without a lidar volume"):
        camera_only(lidar, camera)

    cfg.MODEL.FUSION.NAME = "PassThroughFusion"
    lidar_only = build_fusion(cfg, lidar_shape, None)
    assert lidar_only(lidar, None) is lidar
    assert lidar_only.output_shape() == lidar_shape
    with pytest.raises(ValueError, match="exactly one modality"):
        build_fusion(cfg, lidar_shape, camera_shape)
