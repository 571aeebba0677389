"""The CLAP meta-architecture on the real frame: losses, modalities, paired cells, views."""

from pathlib import Path

import pytest
import torch

from clap.config import get_cfg
from clap.data import build_train_loader
from clap.engine.clap_visualization import ClapVisualizationHook
from clap.layers import VolumeGrid
from clap.modeling import build_model
from clap.modeling.lidar_backbone import sparse_res_encoder
from clap.modeling.meta_arch.clap import occupied_cells, unmasked_camera_cells
from clap.utils.events import EventStorage

TINY = Path(__file__).resolve().parent / "configs" / "clap_tiny.yaml"
FRAME_ROOT = Path(__file__).resolve().parent / "data" / "nuscenes_frame"


def tiny_cfg(tmp_path, *overrides):
    cfg = get_cfg()
    cfg.merge_from_file(str(TINY))
    cfg.merge_from_list(
        ["DATASETS.ROOT", str(FRAME_ROOT), "DATASETS.CACHE_DIR", str(tmp_path / "cache")]
        + list(overrides)
    )
    return cfg


@pytest.fixture(scope="module")
def frame_batch(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_cfg(tmp_path_factory.mktemp("clap"))
    return next(iter(build_train_loader(cfg)))


def test_occupied_cells_marks_the_cells_of_the_voxels():
    grid = VolumeGrid((-4.0, -4.0, -2.0, 4.0, 4.0, 2.0), (0.5, 0.5, 0.5), (4, 4, 2))
    coords = torch.tensor([[0, 0, 0, 0], [0, 15, 15, 7], [1, 5, 9, 3]], dtype=torch.int32)
    occupied = occupied_cells(coords, 2, grid)
    assert occupied.shape == (2,) + grid.volume_shape == (2, 4, 4, 4)
    expected = torch.zeros_like(occupied)
    expected[0, 0, 0, 0] = expected[0, 3, 3, 3] = expected[1, 1, 2, 1] = True
    assert torch.equal(occupied, expected)


def _forward_camera(focal=2.0, center=4.0):
    """lidar2img (4, 4) of a camera at the origin looking along +x: u = c - f y / x,
    v = c - f z / x."""
    return torch.tensor(
        [[center, -focal, 0.0, 0.0], [center, 0.0, -focal, 0.0], [1.0, 0.0, 0.0, 0.0],
         [0.0, 0.0, 0.0, 1.0]]
    )


def test_unmasked_camera_cells_keeps_cells_seen_at_unmasked_patches():
    # Cell centres x, y in {-3, -1, 1, 3}, z in {-1.5, -0.5, 0.5, 1.5}; an 8 x 8 image of 2 x 2
    # patches of 4 pixels. Seen: x = 3 (all), x = 1 with |y| = 1; u >= 3.5 exactly when y < 0.
    grid = VolumeGrid((-4.0, -4.0, -2.0, 4.0, 4.0, 2.0), (0.5, 0.5, 0.5), (4, 4, 2))
    lidar2img = _forward_camera().expand(1, 2, 4, 4)
    centers = grid.volume_centers()
    x, y = centers[..., 0], centers[..., 1]
    seen = (x == 3) | ((x == 1) & (y.abs() == 1))
    left_masked = torch.tensor([[True, False], [True, False]])
    all_masked = torch.ones(2, 2, dtype=torch.bool)
    # Camera 0 has its left patches masked, camera 1 every patch.
    cells = unmasked_camera_cells(
        torch.stack([left_masked, all_masked]), 4, lidar2img, (8, 8), grid, min_depth=0.1
    )
    assert cells.shape == (1, 4, 4, 4)
    assert torch.equal(cells[0], seen & (y < 0))
    # Camera 1 without masking: every seen cell, whatever camera 0 shows.
    cells = unmasked_camera_cells(
        torch.stack([all_masked, ~all_masked]), 4, lidar2img, (8, 8), grid, min_depth=0.1
    )
    assert torch.equal(cells[0], seen)


def _recording(function, records):
    def wrapper(*args, **kwargs):
        records.append(function(*args, **kwargs))
        return records[-1]

    return wrapper


def test_pairs_only_cells_with_a_kept_lidar_voxel(tmp_path, frame_batch, monkeypatch):
    keeps = []
    monkeypatch.setattr(
        sparse_res_encoder, "sample_block_mask",
        _recording(sparse_res_encoder.sample_block_mask, keeps),
    )
    torch.manual_seed(0)
    cfg = tiny_cfg(tmp_path, "MODEL.LIDAR_BACKBONE.MASK_RATIO", "0.8")
    model = build_model(cfg).train()
    model(frame_batch)
    (keep,) = keeps
    assert 0 < int(keep.sum()) < keep.numel()
    kept_cells = occupied_cells(
        frame_batch["voxel_coords"][keep], frame_batch["batch_size"], model.volume_grid
    )
    index = model.last_step["prototypes"]["paired_cell_index"]
    assert index.shape[0] > 0
    assert kept_cells.flatten(1)[index[:, 0], index[:, 1]].all()


def test_no_pairs_when_every_image_patch_is_masked(tmp_path, frame_batch):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(tmp_path, "MODEL.IMAGE_BACKBONE.MASK_RATIO", "1.0")).train()
    model(frame_batch)
    assert int(model.last_step["prototypes"]["num_paired_cells"]) == 0
    model.eval()  # no masking outside training: the cells the lift sees pair again
    model(frame_batch)
    assert int(model.last_step["prototypes"]["num_paired_cells"]) > 0


def test_clap_step_gives_every_loss_and_gradients(tmp_path, frame_batch):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(tmp_path))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    # The SDF MLP's geometric initialisation ignores the features at first (zero weights), so
    # the render losses reach the encoders from the second step on.
    for _ in range(2):
        optimizer.zero_grad()
        losses = model(frame_batch)
        assert set(losses) == {"loss_range", "loss_sdf", "loss_rgb", "loss_swav", "loss_em"}
        assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        optimizer.step()
    for name in ("lidar_backbone", "image_backbone", "view_transform", "fusion", "render_head"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert model.last_step["prototypes"]["num_paired_cells"] > 0


@pytest.mark.parametrize(
    "modality, expected",
    [("lidar", {"loss_range", "loss_sdf", "loss_rgb"}), ("camera", {"loss_rgb"})],
)
def test_single_modal_models_leave_out_the_other_encoder(tmp_path, frame_batch, modality, expected):
    overrides = ["MODEL.MODALITIES", f"['{modality}']", "MODEL.FUSION.NAME", "PassThroughFusion"]
    if modality == "camera":
        overrides += ["MODEL.RAY_SAMPLER.NAME", "Uniform", "MODEL.RAY_SAMPLER.NUM_LIDAR_RAYS", "0"]
    model = build_model(tiny_cfg(tmp_path, *overrides))
    assert model.prototype_head is None
    assert (model.lidar_backbone is None) == (modality == "camera")
    assert (model.image_backbone is None) == (modality == "lidar")
    losses = model(frame_batch)
    assert set(losses) == expected


def test_visualization_hook_puts_every_view(tmp_path, frame_batch):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(tmp_path, "MODEL.RAY_SAMPLER.NAME", "GeometricCurvature"))
    model(frame_batch)
    hook = ClapVisualizationHook(model, period=1)

    class _Trainer:
        iter = 0

    with EventStorage() as storage:
        _Trainer.storage = storage
        hook.trainer = _Trainer()
        hook.after_step()
        images = {name: image for name, image, _ in storage.images}
    assert set(images) == {
        "vis/render",
        "vis/lidar_ray_weights",
        "vis/pixel_weights",
        "vis/prototypes",
    }
    height, width = frame_batch["images"].shape[-2:]
    # Three camera-sized panels, enlarged to stay legible, each under a title.
    channels, figure_height, figure_width = images["vis/render"].shape
    assert channels == 3 and figure_height > 3 * height and figure_width > width
    assert all(float(image.max()) > 0 for image in images.values())
