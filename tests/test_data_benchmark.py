"""The reusable data-loading benchmark counts what it times."""

from nuscenes_frame_helpers import FRAME_ROOT, FRAME_VERSION, small_cfg

from clap.data.benchmark import benchmark_data_loading
from clap.data.datasets.nuscenes import load_nuscenes_dicts
from clap.data.mapper import build_mapper


def test_benchmark_times_the_requested_samples(tmp_path):
    dicts = load_nuscenes_dicts(str(FRAME_ROOT), FRAME_VERSION, "all", str(tmp_path))
    cfg = small_cfg(FRAME_ROOT, tmp_path, INPUT__IMAGE_SIZE=[32, 64], INPUT__CAMERAS=["CAM_FRONT"])
    mapper = build_mapper(cfg, is_train=True)
    result = benchmark_data_loading(dicts, mapper, num_workers=0, num_samples=4, batch_size=2)
    assert result["num_samples"] == 4 and result["batch_size"] == 2
    assert result["seconds"] > 0 and result["samples_per_second"] > 0
