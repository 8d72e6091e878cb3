"""One summary of a run: the numbers a sweep table, a report and the demo compare across runs.

:func:`summarize_run` is the only place these numbers are computed; the sweep's ``summary.csv``,
the report's sweep frame and findings, and the demo's tables all read it. Its fields are listed,
with their meaning, in :data:`SUMMARY_FIELDS`.

Conventions: "final" is the last finite value stored (for a diverged run: the last one before it
diverged; check ``diverged``), "peak" the largest finite value and the step it was stored at,
"mean" the mean over every finite stored value. A field whose metric was never stored is NaN.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics as M
from .run import Run

#: Every field of :func:`summarize_run`, in order, with its meaning.
SUMMARY_FIELDS: dict[str, str] = {
    "status": "running | finished | diverged | failed | interrupted",
    "diverged": "True when training produced a non-finite loss",
    "error": "first line of the run's error, if any",
    "last_step": "the largest step stored",
    "epochs_done": "epochs completed at the last evaluation",
    "final_train_loss": "last train loss (whole train set, eval mode), nats",
    "final_train_acc": "last train accuracy, 0–1",
    "final_val_loss": "last validation loss, nats",
    "final_val_acc": "last validation accuracy, 0–1",
    "final_test_loss": "last test loss, nats",
    "final_test_acc": "last test accuracy, 0–1",
    "first_lambda_1": "λ₁ at its first measurement, nats / param²",
    "peak_lambda_1": "largest λ₁ measured, nats / param²",
    "peak_lambda_1_step": "step of the largest λ₁",
    "final_lambda_1": "λ₁ at its last measurement, nats / param²",
    "peak_spectral_norm": "largest ‖H‖₂ = max(|λ₁|, |λ_min|) measured, nats / param²",
    "final_spectral_norm": "‖H‖₂ at its last measurement, nats / param²",
    "final_hessian_fro": "‖H‖_F at its last measurement, nats / param²",
    "final_hessian_trace": "tr H at its last measurement, nats / param²",
    "mean_alignment_top5": "mean over measurements of the mean |cos(g_t, e_i)| over the top 5",
    "mean_alignment_random": "mean over measurements of |cos(g_t, r)| for a random direction r",
    "mean_grad_cosine": "mean of cos(g_{t−1}, g_t) over the measured steps",
    "mean_height": "mean height above the valley floor over the walked steps, nats",
    "final_distance": "last ‖θ_t − θ₀‖₂, param",
    "final_param_norm": "last ‖θ_t‖₂, param",
}

# A Run's scalars are read once (``Run.scalars`` is cached), so everything derived from them is
# cached per Run object too. Weak keys: the caches go with the Run.
_SERIES: weakref.WeakKeyDictionary[Run, dict[str, pd.Series]] = weakref.WeakKeyDictionary()
_SUMMARIES: weakref.WeakKeyDictionary[Run, dict[str, Any]] = weakref.WeakKeyDictionary()


def scalar_series(run: Run) -> dict[str, pd.Series]:
    """Every scalar of ``run`` as a Series indexed by step, finite values only; names without a
    finite value are left out."""
    cached = _SERIES.get(run)
    if cached is None:
        df = run.scalars
        cached = {}
        for name, g in df.groupby("name", sort=False):
            v = g.value.to_numpy(dtype=float)
            ok = np.isfinite(v)
            if ok.any():
                cached[str(name)] = pd.Series(v[ok], index=g.step.to_numpy()[ok], name=str(name))
        _SERIES[run] = cached
    return cached


def series(run: Run, name: str) -> pd.Series | None:
    """One scalar by step, finite values only; None when never stored (or never finite)."""
    return scalar_series(run).get(name)


def lambda1(run: Run) -> pd.Series | None:
    """λ₁ by step: the ``lambda_1`` scalar, else the first column of the ``eigenvalues`` array."""
    s = series(run, M.lambda_key(1))
    if s is not None:
        return s
    if M.EIGENVALUES not in run.array_names():
        return None
    steps, vals = run.array(M.EIGENVALUES)
    if vals.dtype == object or vals.ndim != 2:
        return None
    s = pd.Series(vals[:, 0].astype(float), index=steps, name=M.lambda_key(1))
    s = s[np.isfinite(s.to_numpy())]
    return s if len(s) else None


def spectral_norm(run: Run) -> pd.Series | None:
    """‖H‖₂ by step: the ``spectral_norm`` scalar, else max(|λ₁|, |λ_min|) at the steps where
    both were stored. None without λ_min: |λ₁| alone is only a lower bound."""
    s = series(run, M.SPECTRAL_NORM)
    if s is not None:
        return s
    top, bottom = lambda1(run), series(run, M.LAMBDA_MIN)
    if top is None or bottom is None:
        return None
    both = pd.concat([top.abs(), bottom.abs()], axis=1, join="inner")
    if both.empty:
        return None
    return both.max(axis=1).rename(M.SPECTRAL_NORM)


def _final(s: pd.Series | None) -> float:
    return float(s.iloc[-1]) if s is not None else math.nan


def _mean(s: pd.Series | None) -> float:
    return float(s.mean()) if s is not None else math.nan


def _first_line(text: str | None) -> str:
    return text.splitlines()[0] if text else ""


def summarize_run(run: Run) -> dict[str, Any]:
    """The run's summary: one value per field of :data:`SUMMARY_FIELDS`, in that order.

    Computed once per :class:`Run` object (a Run is a snapshot of its store; reopen the run
    directory to see later rows). Returns a new dict on each call.
    """
    cached = _SUMMARIES.get(run)
    if cached is None:
        cached = _SUMMARIES[run] = _summarize(run)
    return dict(cached)


def _summarize(run: Run) -> dict[str, Any]:
    info = run.info
    status = str(info.get("status", "unknown"))
    steps = run.scalars.step
    out: dict[str, Any] = {
        "status": status,
        "diverged": status == "diverged",
        "error": _first_line(info.get("error")),
        "last_step": int(steps.max()) if len(steps) else 0,
        "epochs_done": _final(series(run, M.EPOCHS_DONE)),
    }
    for split in ("train", "val", "test"):
        out[f"final_{split}_loss"] = _final(series(run, M.loss_key(split)))
        out[f"final_{split}_acc"] = _final(series(run, M.acc_key(split)))
    lam = lambda1(run)
    out["first_lambda_1"] = float(lam.iloc[0]) if lam is not None else math.nan
    out["peak_lambda_1"] = float(lam.max()) if lam is not None else math.nan
    out["peak_lambda_1_step"] = float(lam.idxmax()) if lam is not None else math.nan
    out["final_lambda_1"] = _final(lam)
    norm = spectral_norm(run)
    out["peak_spectral_norm"] = float(norm.max()) if norm is not None else math.nan
    out["final_spectral_norm"] = _final(norm)
    out["final_hessian_fro"] = _final(series(run, M.HESSIAN_FRO))
    out["final_hessian_trace"] = _final(series(run, M.HESSIAN_TRACE))
    out["mean_alignment_top5"] = _mean(series(run, M.ALIGNMENT_MEAN5))
    out["mean_alignment_random"] = _mean(series(run, M.ALIGNMENT_RANDOM))
    out["mean_grad_cosine"] = _mean(series(run, M.GRAD_COSINE))
    out["mean_height"] = _mean(series(run, M.HEIGHT))
    out["final_distance"] = _final(series(run, M.DISTANCE))
    out["final_param_norm"] = _final(series(run, M.PARAM_NORM))
    return out


__all__ = [
    "SUMMARY_FIELDS",
    "lambda1",
    "scalar_series",
    "series",
    "spectral_norm",
    "summarize_run",
]
