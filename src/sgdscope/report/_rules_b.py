"""Paper B's findings (Xing et al. 2018): each check turns a target into tested parts.

The rules' texts and ids are in :mod:`sgdscope.report.findings`; thresholds in ``_thresholds``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics as M
from ._data import (
    BATCH_KEY,
    LR_KEY,
    RunSelection,
    array_or_none,
    is_gd,
    series,
    spectral_norm,
)
from ._evidence import (
    Excluded,
    assess,
    insufficient,
    not_applicable,
)
from ._judging import (
    Parts,
    Target,
    _barrier_groups,
    _blocks,
    _has,
    _height_by_group,
    _per_unit,
    _plain,
    _runs_test,
    _sgd_varies,
    _step_frames,
    _trend_part,
    _two_groups,
    _walk_groups,
    _walk_runs,
    curve_ok,
)
from ._stats import (
    EQUIVALENT,
    GREATER,
    LESS,
    Criterion,
    StatResult,
    proportion_test,
)
from ._thresholds import (
    CONVEX_TOL,
    COS_BATCH_SLOPE,
    COS_LR_MAX_SLOPE,
    DISTANCE_BATCH_SLOPE,
    EARLY_BARRIER_SHARE,
    GD_COSINE_MAX,
    HEIGHT_DECAY,
    HEIGHT_LR_SLOPE,
    MIN_CURVES,
    MIN_SEEDS,
    MIN_SPECTRAL_POINTS,
    MOST,
    NOISY_DISTANCE_RATIO,
    NOISY_LOSS_RATIO,
    SCHEDULE_MARGIN,
    SPECTRAL_DECLINE,
    SPECTRAL_RISE,
    SPECTRAL_WINDOW,
)


def _convex_inside(t: Target) -> Parts:
    runs, excluded, seen = _walk_runs(t)
    if not seen:
        return []
    counts: dict[str, list[tuple[int, int]]] = {}
    order: list[str] = []
    for run, w in runs:
        arr = array_or_none(run, M.INTERP_LOSS)
        if arr is None:
            excluded.append(Excluded(run.name, "no interp_loss curves"))
            continue
        ok = {int(s): curve_ok(y) for s, y in zip(arr[0], arr[1], strict=True)}
        w = w[w.step.isin(list(ok))].reset_index(drop=True)
        for label, mask in _walk_groups(w):
            flags = [ok[int(s)] for s in w.step[mask]]
            counts.setdefault(label, []).append((sum(flags), len(flags)))
            if label not in order:
                order.append(label)
    stat = (
        "per curve: minimum strictly inside and every second difference ≥ "
        f"−{CONVEX_TOL:.0%} of the curve's range; the share of such curves, pooled over runs"
    )
    crit = Criterion(GREATER, MOST, null_value=MOST, min_n=MIN_CURVES)
    if not order:
        return [
            insufficient(
                "most curves convex with a minimum inside",
                stat,
                crit,
                "finished runs with interpolation curves",
                excluded=excluded,
                unit="curves",
            )
        ]
    parts = []
    for label in order:
        k, n = zip(*counts[label], strict=True)
        res = proportion_test(list(k), list(n), crit, name="share convex with a minimum inside")
        parts.append(
            assess(
                f"{label}: most curves convex with a minimum inside", stat, res, excluded=excluded
            )
        )
    return parts


def _early_barriers(t: Target) -> Parts:
    runs, excluded, seen = _barrier_groups(t)
    if not seen:
        return []
    claim = "almost no barriers in the first walked epoch, in every run"
    stat = (
        "per run: barriers crossed / walked steps in its first walk group (first walked epoch, "
        "or first third of walked steps); exact one-sided binomial test per run (steps taken as "
        "independent within a run), every run must pass (intersection–union: p = the largest)"
    )
    crit = Criterion(
        LESS, EARLY_BARRIER_SHARE, null_value=EARLY_BARRIER_SHARE, min_n=max(t.min_runs, 1)
    )
    if not runs:
        return [
            insufficient(
                claim,
                stat,
                crit,
                f"≥ {crit.min_n} finished runs with barriers",
                excluded=excluded,
                unit="runs",
            )
        ]
    results, kept = [], []
    excluded = list(excluded)
    for name, groups in runs:
        _, k, n = groups[0]
        r = proportion_test(k, n, Criterion(LESS, null_value=EARLY_BARRIER_SHARE))
        if r.min_p > crit.alpha:
            # Too few walked steps to show a share below the threshold even with no barrier
            # (0.9^n > α below 29 steps): no evidence either way, so not a failing run.
            excluded.append(Excluded(name, f"first walk group of {n} steps, too few to test"))
            continue
        results.append(r)
        kept.append((name, groups))
    runs = kept
    if not runs:
        return [
            insufficient(
                claim,
                stat,
                crit,
                "≥ 29 walked steps in the first walked epoch",
                excluded=excluded,
                unit="runs",
            )
        ]
    shares = [r.effect for r in results]
    worst = int(np.argmax(shares))
    labels = sorted({g[0][0] for _, g in runs})
    res = StatResult(
        method="exact binomial per run, Clopper–Pearson; intersection–union over runs",
        criterion=crit,
        effect=float(max(shares)),
        effect_name="largest per-run share of barrier steps",
        ci=(float(results[worst].ci[0]), float(max(r.ci[1] for r in results))),
        p_value=float(max(r.p_value for r in results)),
        statistic=float(sum(r.statistic for r in results)),
        statistic_name="barriers",
        n=len(results),
        unit="runs",
        min_p=float(max(r.min_p for r in results)),
        details={
            "per run": {n: r.effect for (n, _), r in zip(runs, results, strict=True)},
            "groups": labels,
        },
    )
    return [assess(claim, stat, res, excluded=excluded)]


def _barriers_later(t: Target) -> Parts:
    runs, excluded, seen = _barrier_groups(t)
    if not seen:
        return []
    claim = "more barriers later in training than early"
    stat = (
        "per run: share of barrier steps in its last walk group − in its first; one-sided t "
        "over runs"
    )
    crit = Criterion(GREATER, min_n=max(t.min_runs, 2))
    diffs = []
    for name, groups in runs:
        if len(groups) < 2:
            excluded.append(Excluded(name, "walked in one epoch only"))
            continue
        (_, k0, n0), (_, k1, n1) = groups[0], groups[-1]
        diffs.append(k1 / n1 - k0 / n0)
    if not diffs and not runs and excluded:
        return [_runs_test(claim, stat, crit, [], excluded, "mean share later − early")]
    if not diffs:
        return [
            not_applicable(
                claim,
                stat,
                crit,
                "the walk probe in ≥ 2 epochs (e.g. epochs: [0, 3, 7])",
                effect_name="mean difference",
                unit="runs",
            )
        ]
    return [_runs_test(claim, stat, crit, diffs, excluded, "mean share later − early", log=False)]


def _height_vs_lr(t: Target) -> Parts:
    sel = t.sgd
    frame = sel.frame
    if not _sgd_varies(t, LR_KEY):
        return []
    runs, excluded, seen = _walk_runs(t)
    if seen and frame.empty:
        crit = Criterion(GREATER, HEIGHT_LR_SLOPE, min_n=MIN_SEEDS)
        return [
            insufficient(
                "larger η, larger height above the valley floor",
                "",
                crit,
                f"≥ {MIN_SEEDS} seeds with finished runs",
                excluded=excluded,
            )
        ]
    names = set(frame.run)
    heights = _height_by_group(t, [(r, w) for r, w in runs if r.name in names])
    if not seen or not heights:
        return []
    labels = list(dict.fromkeys(lab for h in heights.values() for lab in h))
    parts = []
    for label in labels:
        f = frame.copy()
        f["height"] = [heights.get(r, {}).get(label, math.nan) for r in f.run]
        parts.append(
            _trend_part(
                t,
                sel,
                f,
                LR_KEY,
                "height",
                Criterion(GREATER, HEIGHT_LR_SLOPE, min_n=MIN_SEEDS),
                claim=f"{label}: larger η, larger height above the valley floor",
                statistic="mean height L(θ_t) − floor over the walk group's steps, per run; per "
                "seed the OLS slope of ln height on ln η; one-sided t over seeds",
                x_scale="log",
                y_scale="log",
                x_name="η",
                y_name="height",
            )
        )
    return parts


def _height_decreases(t: Target) -> Parts:
    runs, excluded, seen = _walk_runs(t)
    if not seen:
        return []
    claim = "the height above the valley floor decreases over training"
    stat = (
        "per run: mean height in its last walk group / in its first; one-sided t of its log "
        "over runs"
    )
    crit = Criterion(LESS, HEIGHT_DECAY, min_n=t.min_runs)
    ratios = []
    for name, h in _height_by_group(t, runs).items():
        if len(h) < 2:
            excluded.append(Excluded(name, "walked in one epoch only"))
            continue
        first, last = next(iter(h.values())), list(h.values())[-1]
        if first > 0 and last > 0:
            ratios.append(last / first)
        else:
            excluded.append(Excluded(name, "zero height"))
    if not ratios and not any(e.reason != "walked in one epoch only" for e in excluded):
        return [
            not_applicable(
                claim, stat, crit, "the walk probe in ≥ 2 epochs", effect_name="ratio", unit="runs"
            )
        ]
    return [_runs_test(claim, stat, crit, ratios, excluded, "ratio last / first")]


def _cos_vs_batch(t: Target) -> Parts:
    frame = t.sgd.frame
    if not _sgd_varies(t, BATCH_KEY) or not _has(t, "mean_grad_cosine"):
        return []
    return [
        _trend_part(
            t,
            t.sgd,
            frame,
            BATCH_KEY,
            "mean_grad_cosine",
            Criterion(LESS, COS_BATCH_SLOPE, min_n=MIN_SEEDS),
            claim="larger S, more negative cos(g_t, g_{t+1})",
            statistic="mean cos(g_t, g_{t+1}) per run; per seed the OLS slope on the rank of S "
            "(full batch last); one-sided t over seeds",
            x_scale="rank",
            y_scale="linear",
            x_name="S",
            y_name="mean cos",
        )
    ]


def _distance_at_common_step(t: Target, frame: pd.DataFrame, x: str) -> pd.Series:
    """‖θ − θ₀‖ of each run at the last step every run of its block reached (so that runs with
    more updates per epoch do not travel further merely by taking more steps)."""
    dist = {r: series(t.by_name[r], M.DISTANCE) for r in frame.run}
    last = {r: (float(s.index.max()) if s is not None else math.nan) for r, s in dist.items()}
    blocks = _blocks(frame, t.keys, x)
    common: dict[Any, float] = {}
    for r, b in zip(frame.run, blocks, strict=True):
        common[b] = min(common.get(b, math.inf), last[r])
    out = []
    for r, b in zip(frame.run, blocks, strict=True):
        s = dist[r]
        if s is None or not math.isfinite(common[b]):
            out.append(math.nan)
            continue
        out.append(float(np.interp(common[b], s.index.to_numpy(float), s.to_numpy(float))))
    return pd.Series(out, index=frame.index)


def _distance_vs_batch(t: Target) -> Parts:
    frame = t.sgd.frame.copy()
    if not _sgd_varies(t, BATCH_KEY) or not _has(t, "final_distance"):
        return []
    frame["distance"] = _distance_at_common_step(t, frame, BATCH_KEY)
    return [
        _trend_part(
            t,
            t.sgd,
            frame,
            BATCH_KEY,
            "distance",
            Criterion(LESS, DISTANCE_BATCH_SLOPE, min_n=MIN_SEEDS),
            claim="larger S, smaller distance from initialisation",
            statistic="‖θ_t − θ₀‖ per run at the last step every run of its block reached; per "
            "seed the OLS slope of its log on the rank of S; one-sided t over seeds",
            x_scale="rank",
            y_scale="log",
            x_name="S",
            y_name="distance",
        )
    ]


def _cos_vs_lr(t: Target) -> Parts:
    frame = t.sgd.frame
    if not _sgd_varies(t, LR_KEY) or not _has(t, "mean_grad_cosine"):
        return []
    return [
        _trend_part(
            t,
            t.sgd,
            frame,
            LR_KEY,
            "mean_grad_cosine",
            Criterion(EQUIVALENT, (-COS_LR_MAX_SLOPE, COS_LR_MAX_SLOPE), min_n=MIN_SEEDS),
            claim="η barely changes cos(g_t, g_{t+1})",
            statistic="mean cos(g_t, g_{t+1}) per run; per seed the OLS slope on ln η; TOST over "
            "seeds",
            x_scale="log",
            y_scale="linear",
            x_name="η",
            y_name="mean cos",
        )
    ]


def _gd_cosine(t: Target) -> Parts:
    gd_names = {r.name for r in t.runs if is_gd(r)}
    sel = t.sgd
    keep = [i for i, r in enumerate(sel.runs) if r.name in gd_names]
    gd = RunSelection(
        [sel.runs[i] for i in keep],
        sel.frame.iloc[keep].reset_index(drop=True),
        sel.keys,
        {n: why for n, why in sel.excluded.items() if n in gd_names},
    )
    frames, excluded, seen = _step_frames(t, gd, [M.GRAD_COSINE])
    if not seen:
        return []
    halves = [(n, df[df.index >= df.index.max() / 2]) for n, df in frames]
    return [
        *_per_unit(
            "GD's consecutive gradients nearly opposite: cos(g_t, g_{t+1}) near −1",
            "cos(g_t, g_{t+1}) of full-batch gradients over the second half of each GD run; per "
            "unit its mean, one-sided t",
            Criterion(LESS, GD_COSINE_MAX, null_value=GD_COSINE_MAX),
            halves,
            lambda df: float(df[M.GRAD_COSINE].mean()),
            t,
            log=False,
            effect_name="mean cos, second half",
            excluded=excluded,
        )
    ]


def _noisy_gd(t: Target) -> Parts:
    f = t.frame
    if f.empty:
        return []
    gd_names = {r.name for r in t.runs if is_gd(r)}
    gd = f[f.run.isin(gd_names)]
    noisy = f[(f["optim.name"] == "noisy_gd")]
    if gd.empty or noisy.empty:
        return []
    gd = gd[gd[LR_KEY].isin(noisy[LR_KEY])] if gd[LR_KEY].isin(noisy[LR_KEY]).any() else gd
    acc = "final_test_acc" if np.isfinite(f["final_test_acc"]).any() else "final_val_acc"
    parts = []
    for c in sorted(noisy["noise_c"].unique(), key=lambda v: (math.isnan(v), v)):
        grp = noisy[noisy["noise_c"] == c] if math.isfinite(c) else noisy[noisy["noise_c"].isna()]
        lab = f"noise c = {c:g}"
        specs = [
            (
                "final_train_loss",
                Criterion(GREATER, NOISY_LOSS_RATIO),
                True,
                "optimises worse: higher final train loss",
                "train loss",
            ),
            (
                acc,
                Criterion(LESS),
                False,
                "generalises worse: lower final accuracy",
                acc.removeprefix("final_").replace("_", " "),
            ),
            (
                "final_distance",
                Criterion(GREATER, NOISY_DISTANCE_RATIO),
                True,
                "travels further from initialisation",
                "‖θ − θ₀‖",
            ),
            ("final_param_norm", Criterion(GREATER), True, "ends with a larger ‖θ‖", "‖θ‖"),
        ]
        for col, crit, log, what, name in specs:
            claim = f"{lab}: {what} than GD"
            kind = "ratio of geometric means" if log else "difference of means"
            stat = f"final {name} per run, noisy GD against GD at the same η; {kind}, one-sided"
            if not np.isfinite(grp[col]).any() and not np.isfinite(gd[col]).any():
                parts.append(
                    not_applicable(
                        claim,
                        stat,
                        crit,
                        f"{name} measured (summary field {col})",
                        unit="seeds per group",
                    )
                )
                continue
            parts.append(
                _two_groups(
                    t,
                    grp,
                    gd,
                    col,
                    crit,
                    claim=claim,
                    statistic=stat,
                    log=log,
                    name=f"{name} noisy {'/' if log else '−'} GD",
                )
            )
    return parts


def _spectral_norm(t: Target) -> Parts:
    sel = t.sgd
    excluded = t.status_excluded(sel, lambda r: spectral_norm(r) is not None)
    declines, rises, seen = [], [], bool(excluded)
    for run, (_, row) in zip(sel.runs, sel.frame.iterrows(), strict=True):
        s = spectral_norm(run)
        if s is None:
            continue
        seen = True
        if row["status"] != "finished":
            excluded.append(Excluded(run.name, str(row["status"])))
            continue
        v = s.to_numpy(float)
        if len(v) < MIN_SPECTRAL_POINTS or np.any(v <= 0):
            excluded.append(Excluded(run.name, f"fewer than {MIN_SPECTRAL_POINTS} ‖H‖₂ values"))
            continue
        w = max(2, round(SPECTRAL_WINDOW * len(v)))
        first, before, last = v[:w].mean(), v[-2 * w : -w].mean(), v[-w:].mean()
        declines.append(before / first)
        rises.append(last / before)
    if not seen:
        return []
    win = f"{SPECTRAL_WINDOW:.0%} of the measurements"
    return [
        _runs_test(
            "‖H‖₂ reduces as training progresses",
            f"‖H‖₂ = max(|λ₁|, |λ_min|) per run: mean over the window before the last {win} / "
            f"mean over the first {win}; one-sided t of its log over runs",
            Criterion(LESS, SPECTRAL_DECLINE, min_n=t.min_runs),
            declines,
            excluded,
            "ratio before-end / first window",
        ),
        _runs_test(
            "‖H‖₂ rises again towards the end of training",
            f"‖H‖₂ per run: mean over the last {win} / mean over the window before it; one-sided "
            "t of its log over runs",
            Criterion(GREATER, SPECTRAL_RISE, min_n=t.min_runs),
            rises,
            excluded,
            "ratio last / before-end window",
        ),
    ]


def _schedules(t: Target) -> Parts:
    f = t.frame
    if f.empty:
        return []
    plain = _plain(f)
    step = plain[plain["schedule.name"] == "step_decay"]
    if step.empty:
        return []
    acc = "final_test_acc" if np.isfinite(f["final_test_acc"]).any() else "final_val_acc"
    name = acc.removeprefix("final_").replace("_", " ")
    crit = Criterion(GREATER, null_value=-SCHEDULE_MARGIN)
    pairs = [("trapezoid", step, "step-wise annealing"), ("cyclical", step, "step-wise annealing")]
    cyc = plain[plain["schedule.name"] == "cyclical"]
    if not cyc.empty:
        pairs.append(("trapezoid", cyc, "cyclical (CLR)"))
    parts = []
    for sched, ref, ref_name in pairs:
        grp = plain[plain["schedule.name"] == sched]
        if grp.empty:
            continue
        parts.append(
            _two_groups(
                t,
                grp,
                ref,
                acc,
                crit,
                claim=f"{sched} does as well as or better than {ref_name}",
                statistic=f"final {name} per run; difference of means (paired by seed), "
                f"non-inferiority margin {SCHEDULE_MARGIN:g}",
                log=False,
                name=f"{name} {sched} − {ref_name}",
            )
        )
    return parts
