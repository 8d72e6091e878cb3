"""Paper A's findings (Jastrzębski et al. 2019): each check turns a target into tested parts.

The rules' texts and ids are in :mod:`sgdscope.report.findings`; thresholds in ``_thresholds``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import metrics as M
from ..store import Run
from ._data import (
    BATCH_KEY,
    LR_KEY,
    lambda1,
    series,
)
from ._evidence import (
    Excluded,
    not_applicable,
)
from ._judging import (
    Parts,
    Target,
    _has,
    _per_unit,
    _plain,
    _runs_test,
    _sgd_varies,
    _sharpness_column,
    _step_frames,
    _trend_part,
    _two_groups,
)
from ._stats import (
    EQUIVALENT,
    GREATER,
    LESS,
    Criterion,
    _fmt,
)
from ._thresholds import (
    ALIGNMENT_FACTOR,
    ALPHA_TEST_K,
    EARLY_FRACTION,
    EIGEN_OVERSHOOT_SHARE,
    LAMBDA_LATE_GROWTH,
    LAMBDA_RISE,
    MIN_LAMBDA_POINTS,
    MIN_SEEDS,
    NSGD_ACC_TOL,
    NSGD_CONTROL_BAND,
    NSGD_FACTOR,
    PAPER_NSGD,
    PEAK_BATCH_SLOPE,
    PEAK_LR_SLOPE,
    PEAK_STEP_BATCH_SLOPE,
    PEAK_STEP_LR_SLOPE,
    PROJECTED_LOSS_RATIO,
    PROJECTED_MARGIN,
)


def _lambda_peak(t: Target) -> Parts:
    sel = t.sgd
    excluded = t.status_excluded(sel, lambda r: lambda1(r) is not None)
    rises, growths, seen = [], [], bool(excluded)
    for run, (_, row) in zip(sel.runs, sel.frame.iterrows(), strict=True):
        lam = lambda1(run)
        if lam is None:
            continue
        seen = True
        if row["status"] != "finished":
            excluded.append(Excluded(run.name, str(row["status"])))
            continue
        cut = EARLY_FRACTION * max(int(row["last_step"]), int(lam.index.max()))
        first = float(lam.iloc[0])
        early = lam.iloc[1:][lam.index[1:] <= cut]
        late = lam[lam.index > cut]
        if len(lam) < MIN_LAMBDA_POINTS or early.empty or late.empty or first <= 0:
            excluded.append(
                Excluded(
                    run.name,
                    f"λ₁ not measured after the first step within the first {EARLY_FRACTION:.0%} "
                    "of steps and after them (or λ₁ ≤ 0)",
                )
            )
            continue
        # Means over windows, not maxima: a maximum of noisy values is biased upwards, so a
        # ratio of maxima would "rise" on pure noise.
        rises.append(float(early.mean()) / first)
        growths.append(float(late.mean()) / float(early.mean()))
    if not seen:
        return []
    stat = (
        f"per run: mean λ₁ over the rest of the first {EARLY_FRACTION:.0%} of steps / λ₁ at "
        "the first measurement; one-sided t of its log over runs"
    )
    stat2 = (
        "per run: mean λ₁ after the early window / mean λ₁ in it; one-sided t of its log over runs"
    )
    c1 = Criterion(GREATER, LAMBDA_RISE, min_n=t.min_runs)
    c2 = Criterion(LESS, LAMBDA_LATE_GROWTH, min_n=t.min_runs, null_value=LAMBDA_LATE_GROWTH)
    return [
        _runs_test("λ₁ rises fast early", stat, c1, rises, excluded, "ratio early / first"),
        _runs_test(
            "then stabilises or decays", stat2, c2, growths, excluded, "ratio later / early"
        ),
    ]


def _peak_frame(t: Target) -> pd.DataFrame:
    frame = t.sgd.frame.copy()
    if not frame.empty:
        frame["peak_position"] = frame["peak_lambda_1_step"].astype(float) / frame[
            "last_step"
        ].astype(float).clip(lower=1)
    return frame


def _peak_trends(
    t: Target, column: str, y_scale: str, y_name: str, lr: tuple, batch: tuple
) -> Parts:
    """A peak statistic (``column`` of :func:`_peak_frame`) against η and against S, each a
    trend part when the sweep varies it; ``lr`` / ``batch``: (criterion, claim, statistic)."""
    if not _has(t, "peak_lambda_1"):
        return []
    frame = _peak_frame(t)
    parts = []
    for key, (criterion, claim, statistic), x_scale, x_name in (
        (LR_KEY, lr, "log", "η"),
        (BATCH_KEY, batch, "rank", "S"),
    ):
        if _sgd_varies(t, key):
            parts.append(
                _trend_part(
                    t,
                    t.sgd,
                    frame,
                    key,
                    column,
                    criterion,
                    claim=claim,
                    statistic=statistic,
                    x_scale=x_scale,
                    y_scale=y_scale,
                    x_name=x_name,
                    y_name=y_name,
                )
            )
    return parts


def _peak_lower(t: Target) -> Parts:
    return _peak_trends(
        t,
        "peak_lambda_1",
        "log",
        "peak λ₁",
        lr=(
            Criterion(LESS, PEAK_LR_SLOPE, min_n=MIN_SEEDS),
            "peak λ₁ lower for larger η",
            "peak λ₁ per run; per seed the OLS slope of ln peak λ₁ on ln η; one-sided t over seeds",
        ),
        batch=(
            Criterion(GREATER, PEAK_BATCH_SLOPE, min_n=MIN_SEEDS),
            "peak λ₁ lower for smaller S",
            "peak λ₁ per run; per seed the OLS slope of ln peak λ₁ on the rank of S (full batch "
            "last); one-sided t over seeds",
        ),
    )


def _peak_earlier(t: Target) -> Parts:
    return _peak_trends(
        t,
        "peak_position",
        "linear",
        "peak position",
        lr=(
            Criterion(LESS, PEAK_STEP_LR_SLOPE, min_n=MIN_SEEDS),
            "λ₁ peak earlier for larger η",
            "step of the λ₁ peak / the run's steps; per seed the OLS slope on ln η; one-sided t "
            "over seeds",
        ),
        batch=(
            Criterion(GREATER, PEAK_STEP_BATCH_SLOPE, min_n=MIN_SEEDS),
            "λ₁ peak earlier for smaller S",
            "step of the λ₁ peak / the run's steps; per seed the OLS slope on the rank of S; "
            "one-sided t over seeds",
        ),
    )


def _alignment_series(run: Run) -> pd.Series | None:
    m5 = series(run, M.ALIGNMENT_MEAN5)
    if m5 is not None:
        return m5
    cols = [s for i in range(1, 6) if (s := series(run, M.alignment_key(i))) is not None]
    if not cols:
        return None
    return pd.concat(cols, axis=1, join="inner").mean(axis=1)


def _alignment(t: Target) -> Parts:
    sel = t.sgd
    excluded = t.status_excluded(
        sel,
        lambda r: _alignment_series(r) is not None and series(r, M.ALIGNMENT_RANDOM) is not None,
    )
    frames, seen = [], bool(excluded)
    for run, (_, row) in zip(sel.runs, sel.frame.iterrows(), strict=True):
        top, rnd = _alignment_series(run), series(run, M.ALIGNMENT_RANDOM)
        if top is None or rnd is None:
            continue
        seen = True
        if row["status"] != "finished":
            excluded.append(Excluded(run.name, str(row["status"])))
            continue
        df = pd.concat({"top": top, "random": rnd}, axis=1, join="inner").dropna()
        if df.empty:
            excluded.append(Excluded(run.name, "no step with both alignments"))
            continue
        frames.append((run.name, df))
    if not seen:
        return []
    rnd_mean = float(np.mean([df["random"].mean() for _, df in frames])) if frames else math.nan
    n_hat = 2 / (math.pi * rnd_mean**2) if rnd_mean > 0 else math.nan
    base = (
        f"; the random baseline √(2/(πn)) measured as {_fmt(rnd_mean)} (n ≈ {n_hat:.3g} parameters)"
        if math.isfinite(n_hat)
        else ""
    )
    return [
        *_per_unit(
            "gradients far more aligned with the top-5 eigenvectors than a random direction",
            "mean over the top 5 of |cos(g_t, e_i)| against |cos(g_t, r)| for a fresh Gaussian "
            "r at the same steps; per unit the ratio of their means, one-sided t of its log" + base,
            Criterion(GREATER, ALIGNMENT_FACTOR),
            frames,
            lambda df: float(df["top"].mean() / df["random"].mean()),
            t,
            log=True,
            effect_name="ratio top-5 / random",
            excluded=excluded,
        )
    ]


def _alpha_keys(run: Run) -> tuple[str, str, str] | None:
    for k in (ALPHA_TEST_K, 5):
        keys = tuple(M.alpha_test_key(k, a) for a in (0.5, 1.0, 2.0))
        if all(series(run, key) is not None for key in keys):
            return keys  # type: ignore[return-value]
    return None


def _alpha_test(t: Target) -> Parts:
    sel = t.sgd
    excluded = t.status_excluded(sel, lambda r: _alpha_keys(r) is not None)
    frames, seen = [], bool(excluded)
    for run, (_, row) in zip(sel.runs, sel.frame.iterrows(), strict=True):
        keys = _alpha_keys(run)
        if keys is None:
            continue
        seen = True
        if row["status"] != "finished":
            excluded.append(Excluded(run.name, str(row["status"])))
            continue
        df = pd.concat(
            {a: series(run, k) for a, k in zip(("h", "one", "two"), keys, strict=True)},
            axis=1,
            join="inner",
        )
        df = df[np.all(np.isfinite(df.to_numpy(float)), axis=1)]
        if df.empty:
            excluded.append(Excluded(run.name, "no finite α-test step"))
            continue
        frames.append((run.name, df))
    if not seen:
        return []
    common = "ΔL(α) = L(θ_t + α u₁) − L(θ_t), u₁ the SGD step along e₁, on the probe set"
    return [
        *_per_unit(
            "halving the step along e₁ lowers the loss more: ΔL(0.5) < ΔL(1)",
            f"{common}; per unit the mean of ΔL(1) − ΔL(0.5), one-sided t",
            Criterion(GREATER),
            frames,
            lambda df: float((df["one"] - df["h"]).mean()),
            t,
            log=False,
            effect_name="mean ΔL(1) − ΔL(0.5) (nats)",
            excluded=excluded,
        ),
        *_per_unit(
            "doubling the step along e₁ raises the loss: ΔL(2) > 0",
            f"{common}; per unit the mean of ΔL(2), one-sided t",
            Criterion(GREATER),
            frames,
            lambda df: float(df["two"].mean()),
            t,
            log=False,
            effect_name="mean ΔL(2) (nats)",
            excluded=excluded,
        ),
    ]


def _eigen_overshoot(t: Target) -> Parts:
    key = M.eigen_loss_cmin_key(1)
    frames, excluded, seen = _step_frames(t, t.sgd, [key])
    if not seen:
        return []
    return _per_unit(
        "the minimum of the loss along e₁ lies short of SGD's step: 0 < c_min < 1",
        "c_min = argmin over the grid of L(θ_t + c·u₁(t)), u₁ the SGD step along e₁ (c = 1: "
        "where the step lands); per unit the share of measured steps with 0 < c_min < 1, "
        f"one-sided t against {EIGEN_OVERSHOOT_SHARE:g}",
        Criterion(GREATER, EIGEN_OVERSHOOT_SHARE, null_value=EIGEN_OVERSHOOT_SHARE),
        frames,
        lambda df: float(((df[key] > 0) & (df[key] < 1)).mean()),
        t,
        log=False,
        effect_name="share of steps with 0 < c_min < 1",
        excluded=excluded,
    )


def _projected(t: Target) -> Parts:
    f = t.frame
    if f.empty:
        return []
    proj = f[f["optim.name"] == "projected_sgd"]
    top, rem = proj[proj["mode"] == "top_only"], proj[proj["mode"] == "remove_top"]
    base = _plain(f)
    base = base[base["schedule.name"].isin(proj["schedule.name"])] if not proj.empty else base
    if top.empty or rem.empty:
        return []
    lam = "final_lambda_1"
    stat = (
        "final λ₁ per run; ratio of geometric means (paired by seed when the groups share "
        "seeds, else Welch), one-sided"
    )
    if base.empty:
        return [
            _two_groups(
                t,
                top,
                rem,
                lam,
                Criterion(LESS, 1 / PROJECTED_MARGIN),
                claim="top-only ends flatter than remove-top",
                statistic=stat,
                log=True,
                name="top-only / remove-top",
            ),
            not_applicable(
                "remove-top reaches a training loss similar to SGD's",
                "final train loss per run",
                Criterion(EQUIVALENT, (1 / PROJECTED_LOSS_RATIO, PROJECTED_LOSS_RATIO)),
                "plain SGD runs (optim.name=sgd) as the baseline",
            ),
        ]
    return [
        _two_groups(
            t,
            top,
            base,
            lam,
            Criterion(LESS, 1 / PROJECTED_MARGIN),
            claim="top-only SGD ends flatter than SGD",
            statistic=stat,
            log=True,
            name="top-only / SGD",
        ),
        _two_groups(
            t,
            rem,
            base,
            lam,
            Criterion(GREATER, PROJECTED_MARGIN),
            claim="remove-top SGD ends sharper than SGD",
            statistic=stat,
            log=True,
            name="remove-top / SGD",
        ),
        _two_groups(
            t,
            rem,
            base,
            "final_train_loss",
            Criterion(EQUIVALENT, (1 / PROJECTED_LOSS_RATIO, PROJECTED_LOSS_RATIO)),
            claim="remove-top at a training loss similar to SGD's",
            statistic="final train loss per run; ratio of geometric means, TOST",
            log=True,
            name="remove-top / SGD train loss",
        ),
    ]


def _nsgd_groups(t: Target) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """NSGD runs (top subspace), and the γ = 1 baseline (else plain SGD at the NSGD runs' η)."""
    f = t.frame
    nsgd = f[f["optim.name"] == "nsgd"]
    base = nsgd[(nsgd["gamma"] == 1.0) & (nsgd["subspace"] == "top")]
    label = "γ = 1"
    if base.empty:
        plain = _plain(f)
        base = plain[plain[LR_KEY].isin(nsgd[LR_KEY])]
        label = "SGD"
    return nsgd, base, label


def _paper_nsgd_text(gamma: float) -> str:
    ref = PAPER_NSGD.get(gamma)
    if ref is None:
        return ""
    b = PAPER_NSGD[1.0]
    return (
        f"; paper A (ResNet-32): ‖H‖₂ {ref[0]:g} vs {b[0]:g} ({ref[0] / b[0]:.2g}×), ‖H‖_F "
        f"{ref[1]:g} vs {b[1]:g} ({ref[1] / b[1]:.2g}×)"
    )


def _nsgd_norm_parts(
    t: Target, levels: pd.DataFrame, base: pd.DataFrame, label: str, sharper: bool
) -> Parts:
    parts: Parts = []
    norm = _sharpness_column(t.frame)
    norm_name = "‖H‖₂" if norm == "final_spectral_norm" else "λ₁"
    for gamma in sorted(levels["gamma"].unique()):
        runs = levels[levels["gamma"] == gamma]
        word = "sharper" if sharper else "flatter"
        crit = Criterion(GREATER, NSGD_FACTOR) if sharper else Criterion(LESS, 1 / NSGD_FACTOR)
        columns = [(norm, norm_name)]
        if (
            np.isfinite(runs["final_hessian_fro"]).any()
            and np.isfinite(base["final_hessian_fro"]).any()
        ):
            columns.append(("final_hessian_fro", "‖H‖_F"))
        for col, name in columns:
            parts.append(
                _two_groups(
                    t,
                    runs,
                    base,
                    col,
                    crit,
                    claim=f"γ = {gamma:g} ends {word} than {label} ({name})",
                    statistic=f"final {name} per run; ratio of geometric means NSGD / {label}"
                    + _paper_nsgd_text(float(gamma)),
                    log=True,
                    name=f"{name} γ={gamma:g} / {label}",
                )
            )
    return parts


def _nsgd_sharper(t: Target) -> Parts:
    if t.frame.empty:
        return []
    nsgd, base, label = _nsgd_groups(t)
    low = nsgd[(nsgd["gamma"] < 1) & (nsgd["subspace"] == "top")]
    if low.empty or base.empty:
        return []
    parts = _nsgd_norm_parts(t, low, base, label, sharper=True)
    acc = "final_test_acc" if np.isfinite(t.frame["final_test_acc"]).any() else "final_val_acc"
    for gamma in sorted(low["gamma"].unique()):
        parts.append(
            _two_groups(
                t,
                low[low["gamma"] == gamma],
                base,
                acc,
                Criterion(EQUIVALENT, (-NSGD_ACC_TOL, NSGD_ACC_TOL)),
                claim=f"γ = {gamma:g} with test accuracy similar to {label}",
                statistic=f"final {acc.removeprefix('final_').replace('_', ' ')} per run; "
                "difference of means, TOST",
                log=False,
                name=f"accuracy γ={gamma:g} − {label}",
            )
        )
    return parts


def _nsgd_flatter(t: Target) -> Parts:
    if t.frame.empty:
        return []
    nsgd, base, label = _nsgd_groups(t)
    high = nsgd[(nsgd["gamma"] > 1) & (nsgd["subspace"] == "top")]
    if high.empty or base.empty:
        return []
    return _nsgd_norm_parts(t, high, base, label, sharper=False)


def _nsgd_control(t: Target) -> Parts:
    if t.frame.empty:
        return []
    nsgd, base, label = _nsgd_groups(t)
    ctrl = nsgd[(nsgd["subspace"] == "random") & (nsgd["gamma"] != 1)]
    if ctrl.empty or base.empty:
        return []
    norm = _sharpness_column(t.frame)
    name = "‖H‖₂" if norm == "final_spectral_norm" else "λ₁"
    return [
        _two_groups(
            t,
            ctrl[ctrl["gamma"] == g],
            base,
            norm,
            Criterion(EQUIVALENT, (1 / NSGD_CONTROL_BAND, NSGD_CONTROL_BAND)),
            claim=f"random-subspace control γ = {g:g} as sharp as {label} ({name})",
            statistic=f"final {name} per run; ratio of geometric means control / {label}, TOST",
            log=True,
            name=f"{name} control γ={g:g} / {label}",
        )
        for g in sorted(ctrl["gamma"].unique())
    ]
