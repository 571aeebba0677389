import math

import pytest
import torch

from clap.config import get_cfg
from clap.layers import ShapeSpec
from clap.modeling import build_bev_backbone, build_det_head
from clap.modeling.det_head import (
    CenterHead,
    circle_nms,
    gaussian_radius,
    transform_boxes,
)

# 8 x 8 m around the sensor, 0.5 m cells: a 16 x 16 BEV map.
RANGE = (-4.0, -4.0, -2.0, 4.0, 4.0, 2.0)
CELL = 0.5


@pytest.fixture
def one_thread():
    """Run a many-iteration loop on one CPU thread (and restore the count): on a shared
    2-core machine two threads mostly wait for each other on these small tensors."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_head(**overrides) -> CenterHead:
    arguments = dict(
        in_channels=4, num_classes=3, point_cloud_range=RANGE, bev_shape=(16, 16),
        shared_channels=8, head_channels=8, nms_radius=(1.0, 1.0, 0.3), score_threshold=0.1,
    )
    arguments.update(overrides)
    return CenterHead(**arguments)


def sample_boxes():
    """Boxes in distinct cells, not adjacent to each other, yaw in (-pi, pi)."""
    boxes = torch.tensor([
        # x, y, z, l, w, h, yaw, vx, vy
        [-2.8, -3.1, -0.9, 4.2, 1.8, 1.6, 0.3, 2.5, -0.5],
        [1.13, -2.61, 0.2, 0.6, 0.7, 1.8, -2.9, 0.0, 0.4],
        [0.37, 1.92, -0.1, 12.0, 2.9, 3.5, 3.1, -8.0, 1.0],
        [-2.2, 2.4, 0.5, 0.4, 0.4, 0.9, -0.01, 0.0, 0.0],
        [3.1, 0.2, 0.0, 2.0, 0.5, 1.0, 1.6, 0.0, 0.0],
    ])
    labels = torch.tensor([0, 2, 1, 2, 0])
    return boxes, labels


def dense_regression(head, targets, batch_size):
    height, width = head.bev_shape
    regression = torch.zeros(batch_size, 10, height * width)
    regression[targets.batch_index, :, targets.cell_index] = targets.regression
    return regression.reshape(batch_size, 10, height, width)


def test_encode_decode_round_trip_recovers_the_boxes():
    head = make_head()
    boxes, labels = sample_boxes()
    targets = head.get_targets([boxes], [labels])
    assert targets.num_objects == len(boxes)
    # Exactly one peak of 1 per object, on its class's heatmap at the centre cell.
    peaks = (targets.heatmap == 1).nonzero()
    assert len(peaks) == len(boxes)

    (decoded,) = head.decode(targets.heatmap, dense_regression(head, targets, 1))
    assert len(decoded["boxes"]) == len(boxes)
    assert torch.allclose(decoded["scores"], torch.ones(len(boxes)))
    for box, label in zip(boxes, labels):
        distance = torch.linalg.norm(decoded["boxes"][:, :2] - box[:2], dim=1)
        match = int(distance.argmin())
        found = decoded["boxes"][match]
        assert decoded["labels"][match] == label
        assert distance[match] <= CELL / 2
        assert torch.allclose(found[2:6], box[2:6], atol=1e-4)
        yaw_error = torch.atan2(torch.sin(found[6] - box[6]), torch.cos(found[6] - box[6]))
        assert abs(float(yaw_error)) < 1e-4
        assert torch.allclose(found[7:9], box[7:9], atol=1e-4)


def test_targets_skip_boxes_outside_the_grid_and_mask_unknown_velocity():
    head = make_head()
    boxes = torch.tensor([[0.1, 0.1, 0.0, 1.0, 1.0, 1.0, 0.0, float("nan"), float("nan")],
                          [9.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    targets = head.get_targets([boxes], [torch.tensor([0, 1])])
    assert targets.num_objects == 1
    assert targets.heatmap[0, 1].max() == 0
    assert torch.equal(targets.regression_mask[0],
                       torch.tensor([1.0] * 8 + [0.0, 0.0]))
    assert torch.isfinite(targets.regression).all()


def test_heatmap_gaussian_follows_the_centerpoint_radius():
    head = make_head(min_radius=1)
    # A 6 m x 3 m box: 12 x 6 cells.
    box = torch.tensor([[0.1, 0.1, 0.0, 6.0, 3.0, 1.5, 0.0, 0.0, 0.0]])
    targets = head.get_targets([box], [torch.tensor([0])])
    radius = int(gaussian_radius(torch.tensor(12.0), torch.tensor(6.0), 0.1))
    assert radius > 1
    heatmap = targets.heatmap[0, 0]
    cy, cx = 8, 8
    sigma = (2 * radius + 1) / 6
    for offset in (1, radius):
        expected = math.exp(-(offset ** 2) / (2 * sigma ** 2))
        assert heatmap[cy, cx + offset] == pytest.approx(expected, rel=1e-5)
        assert heatmap[cy - offset, cx] == pytest.approx(expected, rel=1e-5)
    assert heatmap[cy, cx + radius + 1] == 0

    # Small objects get the minimum radius.
    head = make_head(min_radius=2)
    tiny = torch.tensor([[0.1, 0.1, 0.0, 0.3, 0.3, 0.5, 0.0, 0.0, 0.0]])
    heatmap = head.get_targets([tiny], [torch.tensor([2])]).heatmap[0, 2]
    assert (heatmap > 0).sum() == 25


def test_gaussian_radius_grows_with_size_and_shrinks_with_overlap():
    sizes = torch.tensor([2.0, 4.0, 8.0, 16.0])
    radii = gaussian_radius(sizes, sizes / 2, 0.1)
    assert (radii[1:] > radii[:-1]).all()
    assert (gaussian_radius(sizes, sizes, 0.7) < gaussian_radius(sizes, sizes, 0.1)).all()


def test_circle_nms_suppresses_near_duplicates_within_a_class_only():
    centers = torch.tensor([[0.0, 0.0], [0.3, 0.0], [5.0, 5.0], [0.2, 0.1], [5.5, 5.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95])
    labels = torch.tensor([0, 0, 0, 1, 0])
    kept = circle_nms(centers, scores, labels, torch.tensor([1.0, 1.0]))
    # Box 1 is within 1 m of the better box 0 (same class), box 2 within 1 m of box 4; box 3
    # is close to box 0 but of another class.
    assert kept.tolist() == [4, 0, 3]
    kept = circle_nms(centers, scores, labels, torch.tensor([0.1, 0.1]))
    assert sorted(kept.tolist()) == [0, 1, 2, 3, 4]


def test_losses_are_normalised_by_the_number_of_objects():
    torch.manual_seed(0)
    head = make_head()
    head.eval()  # batch statistics must not depend on the batch size here
    boxes, labels = sample_boxes()
    bev = torch.randn(1, 4, 16, 16)
    single = head(bev, [{"gt_boxes": boxes, "gt_labels": labels}])
    double = head(bev.repeat(2, 1, 1, 1), [{"gt_boxes": boxes, "gt_labels": labels}] * 2)
    assert set(single) == {"loss_heatmap", "loss_bbox"}
    for key in single:
        assert torch.isfinite(single[key])
        assert double[key].item() == pytest.approx(single[key].item(), rel=1e-5)


def test_regression_loss_is_zero_for_perfect_regression_and_weighted():
    head = make_head(code_weights=(1.0,) * 8 + (0.5, 0.5), bbox_loss_weight=1.0)
    boxes, labels = sample_boxes()
    targets = head.get_targets([boxes], [labels])
    regression = dense_regression(head, targets, 1)
    logits = torch.zeros(1, 3, 16, 16)
    losses = head.losses(logits, regression, [{"gt_boxes": boxes, "gt_labels": labels}])
    assert losses["loss_bbox"].item() == pytest.approx(0.0, abs=1e-6)
    shifted = regression.clone()
    shifted[:, 8] += 1.0  # vx off by 1 m/s everywhere: 0.5 per object after weighting
    losses = head.losses(logits, shifted, [{"gt_boxes": boxes, "gt_labels": labels}])
    assert losses["loss_bbox"].item() == pytest.approx(0.5, rel=1e-5)


def test_training_reduces_the_losses(one_thread):
    torch.manual_seed(0)
    head = make_head()
    boxes, labels = sample_boxes()
    bev = torch.randn(1, 4, 16, 16)
    targets = [{"gt_boxes": boxes, "gt_labels": labels}]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        losses = head(bev, targets)
        total = sum(losses.values())
        first = total.item() if first is None else first
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert total.item() < 0.5 * first


def test_decoding_respects_threshold_and_limits():
    head = make_head(max_detections=2)
    heatmap = torch.zeros(1, 3, 16, 16)
    heatmap[0, 0, 2, 2] = 0.9
    heatmap[0, 1, 10, 10] = 0.5
    heatmap[0, 2, 5, 12] = 0.3
    heatmap[0, 2, 14, 3] = 0.05  # below the score threshold
    (decoded,) = head.decode(heatmap, torch.zeros(1, 10, 16, 16))
    assert decoded["scores"].tolist() == pytest.approx([0.9, 0.5])
    assert decoded["labels"].tolist() == [0, 1]
    # Cell (iy=2, ix=2) with zero offset: its lower corner, unit size (log size 0), yaw 0.
    assert decoded["boxes"][0].tolist() == pytest.approx(
        [-4.0 + 2 * CELL, -4.0 + 2 * CELL, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])


def test_transform_boxes_inverts_a_mirrored_scaled_rotation():
    boxes, _ = sample_boxes()
    angle, scale = 0.7, 1.2
    matrix = torch.eye(4, dtype=torch.float64)
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)],
                             [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    matrix[:2, :2] = scale * rotation @ torch.diag(torch.tensor([1.0, -1.0],
                                                                 dtype=torch.float64))
    matrix[:3, :3] *= torch.tensor([1.0, 1.0, scale], dtype=torch.float64)[None, :]
    matrix[:3, 3] = torch.tensor([1.0, -2.0, 0.5])
    moved = transform_boxes(boxes, matrix)
    assert torch.allclose(moved[:, 3:6], boxes[:, 3:6] * scale, atol=1e-5)
    assert moved[:, 7:9].norm(dim=1).allclose(boxes[:, 7:9].norm(dim=1) * scale, atol=1e-5)
    back = transform_boxes(moved, torch.linalg.inv(matrix))
    assert torch.allclose(back[:, :6], boxes[:, :6], atol=1e-5)
    assert torch.allclose(back[:, 7:], boxes[:, 7:], atol=1e-5)
    yaw_error = torch.atan2(torch.sin(back[:, 6] - boxes[:, 6]),
                            torch.cos(back[:, 6] - boxes[:, 6]))
    assert yaw_error.abs().max() < 1e-5


def test_backbone_and_head_build_from_config_on_the_volume_grid():
    cfg = get_cfg()
    cfg.INPUT.POINT_CLOUD_RANGE = [-8.0, -8.0, -2.0, 8.0, 8.0, 2.0]
    cfg.INPUT.VOXEL_SIZE = [0.25, 0.25, 0.5]
    cfg.MODEL.VOLUME_STRIDE = [2, 2, 2]  # volume (Z, Y, X) = (4, 32, 32), 0.5 m cells
    cfg.MODEL.BEV_BACKBONE.LAYER_NUMS = [1, 1]
    cfg.MODEL.BEV_BACKBONE.LAYER_STRIDES = [2, 2]
    cfg.MODEL.BEV_BACKBONE.NUM_FILTERS = [8, 16]
    cfg.MODEL.BEV_BACKBONE.UPSAMPLE_STRIDES = [1, 2]
    cfg.MODEL.BEV_BACKBONE.NUM_UPSAMPLE_FILTERS = [8, 8]
    cfg.MODEL.DET_HEAD.SHARED_CHANNELS = 8
    cfg.MODEL.DET_HEAD.HEAD_CHANNELS = 8
    backbone = build_bev_backbone(cfg, ShapeSpec(channels=12, height=32, width=32))
    assert backbone.output_shape() == ShapeSpec(channels=16, height=16, width=16, stride=2)
    features = backbone(torch.randn(2, 12, 32, 32))
    assert features.shape == (2, 16, 16, 16)
    head = build_det_head(cfg, backbone.output_shape())
    assert head.cell_size == (1.0, 1.0)  # the backbone's stride 2 on 0.5 m volume cells
    detections = head.eval()(features)
    assert len(detections) == 2
    assert detections[0]["boxes"].shape[1] == 9

    cfg.MODEL.BEV_BACKBONE.UPSAMPLE_STRIDES = [1, 1]
    with pytest.raises(ValueError, match="same stride"):
        build_bev_backbone(cfg, ShapeSpec(channels=12, height=32, width=32))
    cfg.MODEL.BEV_BACKBONE.UPSAMPLE_STRIDES = [3, 6]
    with pytest.raises(ValueError, match="neither an integer nor the inverse"):
        build_bev_backbone(cfg, ShapeSpec(channels=12, height=32, width=32))


def test_a_bev_output_finer_than_the_volume_puts_the_head_on_finer_cells():
    cfg = get_cfg()
    cfg.INPUT.POINT_CLOUD_RANGE = [-8.0, -8.0, -2.0, 8.0, 8.0, 2.0]
    cfg.INPUT.VOXEL_SIZE = [0.5, 0.5, 0.5]
    cfg.MODEL.VOLUME_STRIDE = [4, 4, 2]  # volume (Z, Y, X) = (4, 8, 8), 2 m cells
    cfg.MODEL.BEV_BACKBONE.LAYER_NUMS = [1, 1]
    cfg.MODEL.BEV_BACKBONE.LAYER_STRIDES = [1, 2]
    cfg.MODEL.BEV_BACKBONE.NUM_FILTERS = [8, 16]
    cfg.MODEL.BEV_BACKBONE.UPSAMPLE_STRIDES = [2, 4]  # output stride 1/2: 1 m cells
    cfg.MODEL.BEV_BACKBONE.NUM_UPSAMPLE_FILTERS = [8, 8]
    cfg.MODEL.DET_HEAD.SHARED_CHANNELS = 8
    cfg.MODEL.DET_HEAD.HEAD_CHANNELS = 8
    backbone = build_bev_backbone(cfg, ShapeSpec(channels=12, height=8, width=8))
    assert backbone.output_shape() == ShapeSpec(channels=16, height=16, width=16, stride=None)
    features = backbone(torch.randn(1, 12, 8, 8))
    assert features.shape == (1, 16, 16, 16)
    head = build_det_head(cfg, backbone.output_shape())
    assert head.cell_size == (1.0, 1.0)
    # A box centre at (2.3, -0.6) m falls in cell (x, y) = (10, 7) of the 1 m grid.
    boxes = torch.tensor([[2.3, -0.6, 0.0, 4.0, 1.8, 1.5, 0.0, 0.0, 0.0]])
    targets = head.get_targets([boxes], [torch.tensor([0])])
    assert targets.cell_index.tolist() == [7 * 16 + 10]
