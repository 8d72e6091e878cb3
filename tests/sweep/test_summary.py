"""The sweep summary is the one run summary: each row equals summarize_run of its run."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sgdscope.store import SUMMARY_FIELDS, load_run, summarize_run
from sgdscope.sweep import load_sweep, point_name, run_sweep

from ..helpers import tiny_config


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_sweep_summary_rows_equal_summarize_run(tmp_path: Path) -> None:
    cfg = tiny_config(train__steps=6)
    cfg["eigenbasis"] = {"k": 2, "every": 2}
    cfg["probes"] = [
        {"name": "sharpness", "every": 2},
        {"name": "grad_cosine"},
        {"name": "distance"},
        {"name": "walk", "every": 3},
    ]
    grid = {"optim.lr": [0.05, 0.2], "model.options.activation": ["tanh", "bogus"]}
    out = run_sweep(cfg, grid, tmp_path / "s", executor="serial")
    sweep = load_sweep(out)
    summary = sweep.summary
    assert list(summary.columns) == ["run", "optim.lr", "model.options.activation", *SUMMARY_FIELDS]
    assert len(summary) == 4
    for point, (_, row) in zip(sweep.points, summary.iterrows(), strict=True):
        assert row["run"] == point_name(point)
        if point["model.options.activation"] == "bogus":  # rejected before it started: no run
            assert not (out / "runs" / point_name(point)).exists()
            continue
        expected = summarize_run(load_run(out / "runs" / point_name(point)))
        for field, value in expected.items():
            assert _same(row[field], value), (row["run"], field, row[field], value)
    ok = summary[summary["model.options.activation"] == "tanh"]
    assert (ok.status == "finished").all() and ok.peak_lambda_1.notna().all()
    assert ok.mean_height.notna().all() and ok.final_distance.notna().all()
    bad = summary[summary["model.options.activation"] == "bogus"]
    assert (bad.status == "failed").all() and bad.error.str.contains("bogus").all()
    # summary.csv is the same table.
    csv = pd.read_csv(out / "summary.csv")
    assert list(csv.columns) == list(summary.columns)
    pd.testing.assert_series_equal(csv.final_train_loss, summary.final_train_loss)
