import json

import pytest
from tool_helpers import load_tool

prototype_usage = load_tool("prototype_usage")


def write_run(run_dir, records, num_prototypes=128):
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(
        f"MODEL:\n  PROTOTYPE_HEAD:\n    NUM_PROTOTYPES: {num_prototypes}\n")
    (run_dir / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(run_dir)


def diagnostics(iteration, perplexity):
    return {"iteration": iteration, "prototypes/in_use_lidar": 100.0,
            "prototypes/in_use_camera": 90.0, "prototypes/perplexity_lidar": perplexity,
            "prototypes/perplexity_camera": 40.0, "prototypes/agreement": 0.0912}


def test_row_reports_the_last_diagnostics_against_the_uniform_loss_of_its_n_k(tmp_path):
    run = write_run(tmp_path / "clap_nk128", [
        {"iteration": 8, "loss_swav": 9.5}, diagnostics(9, perplexity=20.0),
        {"iteration": 18, "loss_swav": 8.25}, diagnostics(19, perplexity=61.6),
        {"iteration": 20, "loss_swav": 8.0},  # after the last EM period: not this row's
    ])

    row = prototype_usage.usage_row(run)

    # 20 iterations trained; 2 ln 128 = 9.70 is the loss of uniform assignments
    assert row == (f"| {run} | 20 | 100 / 90 of 128 | 62 / 40 | 0.091 | 8.25 (9.70) |")


def test_a_run_without_prototype_diagnostics_is_refused_by_file(tmp_path):
    run = write_run(tmp_path / "lidar_only", [{"iteration": 0, "loss_range": 1.0}])

    with pytest.raises(ValueError, match="lidar_only/metrics.json: no prototype diagnostics"):
        prototype_usage.usage_row(run)
    with pytest.raises(FileNotFoundError, match="missing/metrics.json"):
        prototype_usage.last_prototype_record(str(tmp_path / "missing" / "metrics.json"))
