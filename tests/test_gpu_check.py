"""tools/gpu_check.py --cpu-dry-run: every step of the GPU check at tiny scale on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_passes_every_step_and_writes_the_report(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--cpu-dry-run",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    failed = {n: s.get("error") for n, s in report["steps"].items() if s["status"] != "ok"}
    assert not failed, failed
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert list(report["steps"]) == [
        "environment", "cuda_tests", "clap", "detection", "sparse_backends", "trilinear", "ddp"
    ]
    for name in ("clap", "detection"):
        rows = report["steps"][name]["result"]["rows"]
        assert [row["batch_size"] for row in rows] == [1, 2]
        assert all(row["seconds_per_iteration"] > 0 and row["peak_memory_mib"] > 0 for row in rows)
    assert report["steps"]["ddp"]["result"]["backend"] == "gloo"
    trilinear = report["steps"]["trilinear"]["result"]["max_abs_difference_float64"]
    assert max(trilinear.values()) < 1e-9
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "configs/nuscenes/clap.yaml" in markdown and "| 2 |" in markdown
