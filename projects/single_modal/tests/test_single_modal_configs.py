"""The project's configs build the single-modal models, and their encoders merge into the
fusion CLAP of the same scale (configs/synthetic/clap_cpu.yaml, configs/nuscenes/clap.yaml)."""

import pytest
import torch
from single_modal import add_single_modal_config, check_against_model, merge_encoder_states
from single_modal_test_helpers import CLAP_CPU_CONFIG, CLAP_PAPER_CONFIG, CPU_CONFIGS, PAPER_CONFIGS

import clap.modeling  # noqa: F401
from clap.config import get_cfg
from clap.modeling import build_model
from clap.modeling.fusion import PassThroughFusion
from clap.modeling.ray_sampler import DepthAware

GRID_KEYS = ("POINT_CLOUD_RANGE", "VOXEL_SIZE", "IMAGE_SIZE")


def build_on_cpu(path, project):
    cfg = get_cfg()
    if project:
        add_single_modal_config(cfg)
    cfg.merge_from_file(path)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu"])
    return cfg, build_model(cfg)


@pytest.mark.parametrize("single_modal_configs, clap_config",
                         [(CPU_CONFIGS, CLAP_CPU_CONFIG), (PAPER_CONFIGS, CLAP_PAPER_CONFIG)],
                         ids=["cpu", "paper"])
def test_single_modal_encoders_merge_into_the_fusion_clap_of_the_same_scale(
        single_modal_configs, clap_config):
    torch.manual_seed(0)
    clap_cfg, fusion_model = build_on_cpu(clap_config, project=False)
    states = {}
    for modality, path in single_modal_configs.items():
        cfg, model = build_on_cpu(path, project=True)
        assert list(cfg.MODEL.MODALITIES) == [modality]
        assert (model.lidar_backbone is None) == (modality == "camera")
        assert (model.image_backbone is None) == (modality == "lidar")
        assert model.prototype_head is None
        assert isinstance(model.fusion, PassThroughFusion)
        assert isinstance(model.ray_sampler, DepthAware)
        # one grid: the volumes of the two runs and of the fusion model line up
        assert model.volume_grid.volume_shape == fusion_model.volume_grid.volume_shape
        for key in GRID_KEYS:
            assert list(cfg.INPUT[key]) == list(clap_cfg.INPUT[key]), key
        states[modality] = model.state_dict()
    merged, _ = merge_encoder_states(states["lidar"], states["camera"])
    result = check_against_model(merged, fusion_model.state_dict())
    assert result["missing"] == result["unexpected"] == result["shape_mismatch"] == []
