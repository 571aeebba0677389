"""The CLAP meta-architecture on the real frame: losses, modalities, paired cells, views."""

from pathlib import Path

import pytest
import torch

from clap.config import get_cfg
from clap.data import build_train_loader
from clap.engine.clap_visualization import ClapVisualizationHook
from clap.layers import VolumeGrid
from clap.modeling import build_model
from clap.modeling.meta_arch.clap import occupied_cells
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
