"""The one run summary: every field, on a constructed store with known values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sgdscope import metrics as M
from sgdscope.store import SUMMARY_FIELDS, MetricsStore, load_run, summarize_run
from sgdscope.store.summary import lambda1, spectral_norm

INF, NAN = math.inf, math.nan


def _store(
    path: Path,
    values: Mapping[str, Mapping[int, float]],
    arrays: Mapping[str, Mapping[int, np.ndarray]] | None = None,
    *,
    status: str = "finished",
    **status_kw: Any,
) -> Path:
    """A run directory holding {name: {step: value}} scalars (epoch = step // 5)."""
    path.mkdir(parents=True)
    store = MetricsStore(path / "metrics.sqlite")
    arrays = arrays or {}
    steps = sorted({s for v in (*values.values(), *arrays.values()) for s in v})
    for s in steps:
        scalars = {n: v[s] for n, v in values.items() if s in v}
        arrs = {n: v[s] for n, v in arrays.items() if s in v}
        store.write_step(s, s // 5, scalars, arrs)
    store.set_status(status, **status_kw)
    store.close()
    return path


def test_every_field_from_known_values(tmp_path: Path) -> None:
    values = {
        M.TRAIN_LOSS: {0: 2.0, 5: 1.0, 10: 0.5},
        M.TRAIN_ACC: {0: 0.1, 10: 0.8},
        M.VAL_LOSS: {0: 2.1, 10: 0.7},
        M.VAL_ACC: {0: 0.1, 10: 0.75},
        M.TEST_LOSS: {0: 2.2, 10: 0.8},
        M.TEST_ACC: {0: 0.1, 10: 0.7},
        M.EPOCHS_DONE: {0: 0.0, 5: 1.0, 10: 2.0},
        # λ₁ peaks at step 4; the non-finite value at step 12 is not "final".
        M.lambda_key(1): {0: 1.0, 4: 3.0, 8: 2.0, 12: INF},
        M.LAMBDA_MIN: {0: -0.5, 4: -4.0, 8: -1.0},
        M.HESSIAN_FRO: {4: 7.0, 8: 6.0},
        M.HESSIAN_TRACE: {4: 9.0, 8: 8.0},
        M.ALIGNMENT_MEAN5: {4: 0.2, 8: 0.4},
        M.ALIGNMENT_RANDOM: {4: 0.01, 8: 0.03},
        M.GRAD_COSINE: {1: -0.5, 2: -0.1, 3: NAN},
        M.HEIGHT: {1: 0.1, 2: 0.3},
        M.DISTANCE: {0: 0.0, 10: 2.5},
        M.PARAM_NORM: {0: 8.0, 10: 9.0},
    }
    run = load_run(
        _store(
            tmp_path / "r",
            values,
            status="diverged",
            diverged_step=12,
            error="loss became inf at step 12\nsecond line",
        )
    )
    s = summarize_run(run)
    assert list(s) == list(SUMMARY_FIELDS)
    expected = {
        "status": "diverged",
        "diverged": True,
        "error": "loss became inf at step 12",
        "last_step": 12,
        "epochs_done": 2.0,
        "final_train_loss": 0.5,
        "final_train_acc": 0.8,
        "final_val_loss": 0.7,
        "final_val_acc": 0.75,
        "final_test_loss": 0.8,
        "final_test_acc": 0.7,
        "first_lambda_1": 1.0,
        "peak_lambda_1": 3.0,
        "peak_lambda_1_step": 4.0,
        "final_lambda_1": 2.0,
        "peak_spectral_norm": 4.0,  # |λ_min| = 4 at step 4
        "final_spectral_norm": 2.0,
        "final_hessian_fro": 6.0,
        "final_hessian_trace": 8.0,
        "mean_alignment_top5": pytest.approx(0.3),
        "mean_alignment_random": pytest.approx(0.02),
        "mean_grad_cosine": pytest.approx(-0.3),
        "mean_height": pytest.approx(0.2),
        "final_distance": 2.5,
        "final_param_norm": 9.0,
    }
    assert s == expected


def test_unmeasured_fields_are_nan_and_status_plain(tmp_path: Path) -> None:
    run = load_run(_store(tmp_path / "r", {M.BATCH_LOSS: {0: 1.0, 1: 0.9}}))
    s = summarize_run(run)
    assert (s["status"], s["diverged"], s["error"], s["last_step"]) == ("finished", False, "", 1)
    numeric = [k for k in SUMMARY_FIELDS if k not in ("status", "diverged", "error", "last_step")]
    assert all(math.isnan(s[k]) for k in numeric), s


def test_lambda_1_from_the_eigenvalues_array(tmp_path: Path) -> None:
    ev = {t: np.array([v, v / 2]) for t, v in ((0, 1.0), (5, 4.0), (10, 3.0))}
    run = load_run(_store(tmp_path / "r", {M.BATCH_LOSS: {0: 1.0}}, {M.EIGENVALUES: ev}))
    lam = lambda1(run)
    assert lam is not None and lam.to_dict() == {0: 1.0, 5: 4.0, 10: 3.0}
    s = summarize_run(run)
    assert (s["peak_lambda_1"], s["peak_lambda_1_step"], s["final_lambda_1"]) == (4.0, 5.0, 3.0)
    # No λ_min: |λ₁| is only a lower bound of ‖H‖₂, so no spectral norm.
    assert spectral_norm(run) is None and math.isnan(s["final_spectral_norm"])


def test_stored_spectral_norm_is_preferred(tmp_path: Path) -> None:
    values = {
        M.lambda_key(1): {0: 1.0, 4: 2.0},
        M.LAMBDA_MIN: {0: -3.0, 4: -3.0},
        M.SPECTRAL_NORM: {0: 5.0, 4: 6.0},
    }
    run = load_run(_store(tmp_path / "r", values))
    assert spectral_norm(run).to_dict() == {0: 5.0, 4: 6.0}  # type: ignore[union-attr]
    assert summarize_run(run)["final_spectral_norm"] == 6.0


def test_summary_is_a_fresh_dict_each_call(tmp_path: Path) -> None:
    run = load_run(_store(tmp_path / "r", {M.TRAIN_LOSS: {0: 1.0}}))
    a = summarize_run(run)
    a["final_train_loss"] = -1.0
    assert summarize_run(run)["final_train_loss"] == 1.0
