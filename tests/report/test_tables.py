"""The papers' tables across runs read the one run summary and the run tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sgdscope.report import (
    SWEEP_TABLES,
    alpha_test_table,
    barrier_table,
    height_table,
    sharpness_table,
    walk_table,
)
from sgdscope.report._data import open_target
from sgdscope.store import load_run, summarize_run

from .conftest import scalar_rows, write_run


def test_sharpness_table_reads_the_run_summary(tiny_run: Path) -> None:
    run = load_run(tiny_run)
    table = sharpness_table([run])
    assert table is not None and len(table) == 1
    row, s = table.iloc[0], summarize_run(run)
    assert row["run"] == run.name
    assert row["λ₁ first"] == s["first_lambda_1"]
    assert row["λ₁ peak"] == s["peak_lambda_1"] and row["peak step"] == s["peak_lambda_1_step"]
    assert row["λ₁ last"] == s["final_lambda_1"]
    assert row["2/η"] == 2 / run.config["optim"]["lr"]
    assert row["align top-5"] == s["mean_alignment_top5"]
    assert row["align random"] == s["mean_alignment_random"]
    alpha = alpha_test_table(run).set_index(["direction", "alpha"])["mean"]
    for a in (0.5, 1.0, 2.0):
        assert row[f"ΔL(α={a:g})"] == alpha[("k1", a)]


def test_sharpness_table_momentum_limit_and_missing_columns(tmp_path: Path) -> None:
    vals = {"lambda_1": {0: 1.0, 10: 4.0, 20: 3.0}}
    path = write_run(tmp_path / "m", scalar_rows(vals), lr=0.1)
    run = load_run(path)
    run.config["optim"]["momentum"] = 0.9
    table = sharpness_table([run])
    assert table is not None
    assert list(table.columns) == ["run", "λ₁ first", "λ₁ peak", "peak step", "λ₁ last", "2(1+β)/η"]
    assert table["2(1+β)/η"].iloc[0] == 2 * 1.9 / 0.1
    assert (
        sharpness_table([load_run(write_run(tmp_path / "e", scalar_rows({"x": {0: 1.0}})))]) is None
    )


def test_walk_table_joins_heights_and_barriers_per_run(tiny_run: Path, tmp_path: Path) -> None:
    other = load_run(write_run(tmp_path / "nowalk", scalar_rows({"x": {0: 1.0}})))
    run = load_run(tiny_run)
    table = walk_table([run, other])
    assert table is not None and set(table.run) == {run.name}
    h, b = height_table(run), barrier_table(run)
    assert table.epoch.tolist() == h.epoch.tolist() == b.epoch.tolist()
    pd.testing.assert_series_equal(table["height mean"], h["height mean"])
    np.testing.assert_array_equal(table["barriers"], b["barriers"])
    np.testing.assert_array_equal(table["min inside share"], b["min inside share"])


def test_sweep_tables_on_a_sweep(good_sweep: Path) -> None:
    sweep = open_target(good_sweep)
    table = SWEEP_TABLES[next(iter(SWEEP_TABLES))](sweep)
    assert table is not None and len(table) == len(sweep.runs)  # every run has λ₁
    # The walk table: the runs with heights (per-step only here: one row per epoch each).
    walked = {r.name for r in sweep.runs if height_table(r) is not None}
    table = walk_table(sweep)
    assert walked and table is not None and set(table.run) == walked
