"""The papers' tables across the runs of a sweep, as pandas DataFrames (numbers, not text).

Per-run numbers come from the one run summary (:func:`sgdscope.store.summarize_run`); per-epoch
and per-α numbers from the run tables of :mod:`sgdscope.report.figures`. Each function returns
``None`` when no run of the sweep has the data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..store import summarize_run
from ._data import as_sweep, lr_value
from .figures import alpha_test_table, barrier_table, height_table

#: The α values of paper A's α-test shown in :func:`sharpness_table`.
TABLE_ALPHAS = (0.5, 1.0, 2.0)


def _momentum(run: Any) -> float:
    return float(run.config.get("optim", {}).get("momentum", 0.0) or 0.0)


def sharpness_table(sweep: Any) -> pd.DataFrame | None:
    """Paper A per run: λ₁ at its first measurement, its peak (and step) and at the end, against
    the stability limit 2(1 + β)/η; the mean |cos(g_t, e_i)| over the top 5 against a random
    direction; and the α-test ΔL(α) along the top-1 step (mean over measurements), α ∈ 0.5, 1, 2.

    Rows: the runs with λ₁ measured. λ₁ in nats / param², ΔL in nats.
    """
    rows = []
    momentum = False
    for run in as_sweep(sweep).runs:
        s = summarize_run(run)
        if not np.isfinite(s["peak_lambda_1"]):
            continue
        beta = _momentum(run)
        momentum |= beta != 0
        row: dict[str, Any] = {
            "run": run.name,
            "λ₁ first": s["first_lambda_1"],
            "λ₁ peak": s["peak_lambda_1"],
            "peak step": int(s["peak_lambda_1_step"]),
            "λ₁ last": s["final_lambda_1"],
            "limit": 2 * (1 + beta) / lr_value(run),
            "align top-5": s["mean_alignment_top5"],
            "align random": s["mean_alignment_random"],
        }
        alpha = alpha_test_table(run)
        for a in TABLE_ALPHAS:
            hit = None if alpha is None else alpha[(alpha.direction == "k1") & (alpha.alpha == a)]
            row[f"ΔL(α={a:g})"] = (
                float(hit["mean"].iloc[0]) if hit is not None and len(hit) else np.nan
            )
        rows.append(row)
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    frame = frame.rename(columns={"limit": "2(1+β)/η" if momentum else "2/η"})
    # Columns no run measured (no alignment or α-test probe) say nothing: drop them.
    return frame.loc[:, frame.notna().any()]


def walk_table(sweep: Any) -> pd.DataFrame | None:
    """Paper B's Tables 1–2 per run and walked epoch: height above the valley floor (mean and
    std over the epoch's walked updates, nats), barriers crossed, walked updates and the share
    of interpolation curves with their minimum inside."""
    parts = []
    for run in as_sweep(sweep).runs:
        heights, barriers = height_table(run), barrier_table(run)
        if heights is None:
            continue
        t = heights
        if barriers is not None:
            t = t.merge(barriers[["epoch", "barriers", "min inside share"]], on="epoch", how="left")
        t.insert(0, "run", run.name)
        parts.append(t)
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True)


#: Tables across the runs of a sweep, by title.
SWEEP_TABLES: dict[str, Callable[[Any], pd.DataFrame | None]] = {
    "Paper A per run: λ₁, alignment with the top eigenvectors, α-test": sharpness_table,
    "Paper B per walked epoch: height above the valley floor, barriers (Tables 1–2)": walk_table,
}

__all__ = ["SWEEP_TABLES", "TABLE_ALPHAS", "sharpness_table", "walk_table"]
