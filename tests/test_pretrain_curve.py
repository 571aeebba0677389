import json

import pytest
from tool_helpers import load_tool

from clap.comparison import summarize
from clap.comparison.curve import load_reports, pretrain_curve


def _report(path, pretrain_iters, scores):
    """A comparison.json at `path` with probe cells at 100% labels: method -> per-seed mAP (NDS
    the same minus 0.1)."""
    cells = [{"method": method, "protocol": "probe", "fraction": 1.0, "seed": seed,
              "mAP": score, "NDS": score - 0.1}
             for method, per_seed in scores.items() for seed, score in enumerate(per_seed)]
    report = summarize(cells, list(scores), ["probe"], [1.0])
    path.write_text(json.dumps({**report, "pretrain_iters": pretrain_iters}))
    return str(path)


def test_points_follow_each_report_and_gain_is_over_that_reports_scratch(tmp_path):
    short = _report(tmp_path / "short.json", 200, {"scratch": [0.20, 0.21, 0.22],
                                                   "clap": [0.14, 0.15, 0.16]})
    long = _report(tmp_path / "long.json", 600, {"scratch": [0.30, 0.31, 0.32],
                                                 "clap": [0.33, 0.35, 0.34]})
    points = pretrain_curve(load_reports([long, short]), "probe", 1.0, ["scratch", "clap"])
    assert [(p["method"], p["pretrain_iters"]) for p in points] == [
        ("scratch", 200), ("scratch", 600), ("clap", 200), ("clap", 600)]
    clap_long = points[3]
    assert clap_long["mAP_mean"] == pytest.approx(0.34)
    assert clap_long["mAP_gain"]["mean"] == pytest.approx(0.03)
    assert points[2]["NDS_gain"]["mean"] == pytest.approx(-0.06)
    assert points[0]["mAP_gain"] is None


def test_tool_prints_one_column_per_length_and_writes_the_plot(tmp_path):
    reports = [_report(tmp_path / f"{n}.json", n, {"scratch": [0.2, 0.3], "clap": [0.25, 0.4]})
               for n in (600, 200)]
    plot = tmp_path / "curve.png"
    tables = load_tool("pretrain_curve").main(reports + ["--plot", str(plot)])
    assert "| mAP (%) | 200 its | 600 its |" in tables
    assert "| clap | 32.50 +- 10.61; +7.50 [" in tables
    assert plot.stat().st_size > 0


def test_two_reports_of_one_length_are_refused_naming_both(tmp_path):
    first = _report(tmp_path / "a.json", 200, {"scratch": [0.2, 0.3]})
    second = _report(tmp_path / "b.json", 200, {"scratch": [0.2, 0.3]})
    with pytest.raises(ValueError, match="a.json and .*b.json both hold scratch after 200"):
        pretrain_curve(load_reports([first, second]), "probe", 1.0)


def test_a_file_that_is_not_a_report_is_named(tmp_path):
    path = tmp_path / "cells.json"
    path.write_text(json.dumps({"cells": []}))
    with pytest.raises(ValueError, match="cells.json: not a comparison report"):
        load_reports([str(path)])
