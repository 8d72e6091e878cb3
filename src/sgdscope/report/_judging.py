"""What every finding's check shares: the judged target read once, the tests over seeds, runs
and step batches with diverged runs excluded and listed, and the walk's per-step frame.

Internal to :mod:`sgdscope.report.findings`; the checks live in ``_rules_a`` and ``_rules_b``.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics as M
from ..store import Run
from ._data import (
    BATCH_KEY,
    LR_KEY,
    SEED_KEY,
    RunSelection,
    as_sweep,
    grid_keys,
    is_sweep,
    open_target,
    run_label,
    series,
    sgd_runs,
    sweep_frame,
)
from ._evidence import (
    Evidence,
    Excluded,
    assess,
    insufficient,
    split_valid,
)
from ._stats import (
    Criterion,
    one_sample_test,
    trend_test,
    two_group_test,
)
from ._thresholds import (
    CONVEX_TOL,
    MIN_BATCHES,
    MIN_CURVES,
    MIN_RUNS,
    RUN_UNITS_FROM,
    STEP_BATCHES,
)

Parts = list[Evidence]


@dataclass
class Target:
    """A run or a sweep, read once for every rule.

    Attributes:
        sweep: a sweep object (a single run is a sweep of one).
        single_run: the target was one run.
        min_runs: fewest valid runs for tests whose units are runs (per-seed views pass 1).
    """

    sweep: Any
    single_run: bool = False
    min_runs: int = MIN_RUNS

    @cached_property
    def runs(self) -> list[Run]:
        return list(self.sweep.runs)

    @cached_property
    def by_name(self) -> dict[str, Run]:
        return {r.name: r for r in self.runs}

    @cached_property
    def keys(self) -> list[str]:
        return grid_keys(self.sweep)

    @cached_property
    def frame(self) -> pd.DataFrame:
        """:func:`sweep_frame` plus ``gamma``, ``subspace``, ``mode``, ``noise_c`` columns."""
        frame = sweep_frame(self.sweep)
        if frame.empty:
            return frame
        opts = [(r.config.get("optim", {}).get("options") or {}) for r in self.runs]
        frame["gamma"] = [_num(o.get("gamma")) for o in opts]
        frame["subspace"] = [str(o.get("subspace", "top")) for o in opts]
        frame["mode"] = [str(o.get("mode", "top_only")) for o in opts]
        frame["noise_c"] = [_num(o.get("c")) for o in opts]
        return frame

    @cached_property
    def sgd(self) -> RunSelection:
        """The plain-SGD runs of the common schedule (the figures' selection)."""
        return sgd_runs(self.sweep, frame=self.frame)

    @cached_property
    def _conditions(self) -> dict[str, str]:
        keys = [k for k in self.keys if k != SEED_KEY]
        return {r.name: run_label(r, keys) if keys else "" for r in self.runs}

    def condition(self, run_name: str) -> str:
        """The run's grid values other than the seed (``"lr=0.05"``; empty without a grid)."""
        return self._conditions.get(run_name, "")

    def status_excluded(
        self, selection: RunSelection, has: Callable[[Run], bool] | None = None
    ) -> list[Excluded]:
        """The selection's runs left out for their status (diverged, failed); with ``has``, only
        those holding the data a rule reads (the others are no evidence either way)."""
        out = []
        for name, why in selection.excluded.items():
            if why.startswith("status ") and (has is None or has(self.by_name[name])):
                out.append(Excluded(name, why.removeprefix("status ")))
        return out


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _as_target(target: Any, min_runs: int = MIN_RUNS) -> Target:
    if isinstance(target, Target):
        return target
    if isinstance(target, (str, Path)):
        target = open_target(target)
    if isinstance(target, Run):
        return Target(as_sweep(target), single_run=True, min_runs=min_runs)
    if is_sweep(target):
        return Target(target, min_runs=min_runs)
    return Target(as_sweep(target), min_runs=min_runs)


def _blocks(frame: pd.DataFrame, keys: Iterable[str], x: str) -> list[tuple[Any, ...]]:
    """One label per row: the seed and every other grid value (the block a slope is taken in)."""
    cols = [k for k in dict.fromkeys([SEED_KEY, *keys]) if k != x and k in frame.columns]
    cols = [c for c in cols if c not in (LR_KEY, BATCH_KEY) or c != x]
    return [tuple(repr(row[c]) for c in cols) for _, row in frame.iterrows()]


def _has(t: Target, column: str) -> bool:
    """Some run of the target (diverged ones included: they were meant as evidence) stored the
    summary field ``column``."""
    f = t.frame
    return column in f and bool(np.isfinite(f[column].astype(float)).any())


def _varies(frame: pd.DataFrame, x: str) -> bool:
    return x in frame and frame[x].astype(float).nunique() >= 2


def _sgd_varies(t: Target, x: str) -> bool:
    """The sweep's plain-SGD runs (diverged ones included) take ≥ 2 values of ``x``."""
    f = t.frame
    return not f.empty and _varies(f[f["optim.name"] == "sgd"], x)


def _trend_part(
    t: Target,
    selection: RunSelection,
    frame: pd.DataFrame,
    x: str,
    y: str,
    criterion: Criterion,
    *,
    claim: str,
    statistic: str,
    x_scale: str,
    y_scale: str,
    x_name: str,
    y_name: str,
) -> Evidence:
    """A trend of column ``y`` across factor ``x`` over seeds (blocks), diverged runs excluded."""
    if frame.empty or y not in frame:
        return insufficient(
            claim,
            statistic,
            criterion,
            f"≥ {criterion.min_n} seeds with finished plain-SGD runs (every run was excluded)",
            excluded=t.status_excluded(selection),
            unit="seeds",
        )
    valid, excluded = split_valid(frame, [y])
    excluded = (*t.status_excluded(selection), *excluded)
    if y_scale == "log":
        pos = valid[y].astype(float) > 0
        excluded = (*excluded, *(Excluded(r, f"{y} ≤ 0") for r in valid.run[~pos]))
        valid = valid[pos]
    if valid.empty:
        return insufficient(
            claim,
            statistic,
            criterion,
            f"finished runs with a finite {y_name} (have none)",
            excluded=excluded,
            unit="seeds",
        )
    res = trend_test(
        valid[x].astype(float).to_numpy(),
        valid[y].astype(float).to_numpy(),
        _blocks(valid, t.keys, x),
        criterion,
        x_scale=x_scale,
        y_scale=y_scale,
        x_name=x_name,
        y_name=y_name,
        unit="seeds",
    )
    return assess(claim, statistic, res, excluded=excluded)


def _per_unit(
    claim: str,
    statistic: str,
    criterion: Criterion,
    steps: Sequence[tuple[str, pd.DataFrame]],
    stat: Callable[[pd.DataFrame], float],
    t: Target,
    *,
    log: bool,
    effect_name: str,
    excluded: Sequence[Excluded] = (),
) -> Parts:
    """A per-step claim, one part per condition (the runs' grid values other than the seed):
    in each, one number per run from :data:`RUN_UNITS_FROM` runs on, else per contiguous step
    batch; then a one-sample t of those numbers under ``criterion``. Judging each condition on
    its own keeps an effect that differs in size across η from inflating the spread."""
    groups: dict[str, tuple[list[tuple[str, pd.DataFrame]], list[Excluded]]] = {}
    for item in steps:
        groups.setdefault(t.condition(item[0]), ([], []))[0].append(item)
    for e in excluded:
        groups.setdefault(t.condition(e.run), ([], []))[1].append(e)
    parts = []
    for label, (items, excl) in groups.items():
        prefix = f"{label}: " if len(groups) > 1 and label else ""
        parts.append(
            _per_unit_one(
                prefix + claim,
                statistic,
                criterion,
                items,
                stat,
                t,
                log=log,
                effect_name=effect_name,
                excluded=excl,
            )
        )
    return parts


def _per_unit_one(
    claim: str,
    statistic: str,
    criterion: Criterion,
    steps: Sequence[tuple[str, pd.DataFrame]],
    stat: Callable[[pd.DataFrame], float],
    t: Target,
    *,
    log: bool,
    effect_name: str,
    excluded: Sequence[Excluded] = (),
) -> Evidence:
    # The unit follows the design (every run that holds the data), not the survivors: when
    # diverged runs leave fewer than RUN_UNITS_FROM valid ones, the evidence is insufficient.
    if len(steps) + len(excluded) >= RUN_UNITS_FROM:
        values = [stat(df) for _, df in steps]
        unit, min_n = "runs", max(t.min_runs, 1)
    else:
        values = []
        for _, df in steps:
            for idx in np.array_split(np.arange(len(df)), min(STEP_BATCHES, len(df))):
                values.append(stat(df.iloc[idx]))
        unit = f"step batches ({STEP_BATCHES} per run, {len(steps)} run{'s' * (len(steps) != 1)})"
        min_n = MIN_BATCHES
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(v) & ((v > 0) if log else True)
    c = Criterion(
        criterion.alternative, criterion.threshold, criterion.alpha, min_n, criterion.null_value
    )
    if not keep.any():
        return insufficient(
            claim, statistic, c, f"≥ {min_n} valid {unit} (have 0)", excluded=excluded, unit=unit
        )
    res = one_sample_test(v[keep], c, effect_name=effect_name, unit=unit, log=log)
    return assess(claim, statistic, res, excluded=excluded)


def _step_frames(
    t: Target, selection: RunSelection, names: Sequence[str], *, need_all: bool = True
) -> tuple[list[tuple[str, pd.DataFrame]], list[Excluded], bool]:
    """Per valid run of ``selection``, its scalars ``names`` by step (rows with every name).

    Returns (frames, excluded, any run has the data at all)."""

    def has(run: Run) -> bool:
        found = [series(run, n) is not None for n in names]
        return all(found) if need_all else any(found)

    excluded = t.status_excluded(selection, has)
    frames, seen = [], bool(excluded)
    for run, (_, row) in zip(selection.runs, selection.frame.iterrows(), strict=True):
        cols = {n: series(run, n) for n in names}
        present = {n: s for n, s in cols.items() if s is not None}
        if not present or (need_all and len(present) < len(names)):
            continue
        seen = True
        if row["status"] != "finished":
            excluded.append(Excluded(run.name, str(row["status"])))
            continue
        df = pd.concat(present, axis=1, join="inner").sort_index()
        df = df[np.all(np.isfinite(df.to_numpy(float)), axis=1)]
        if df.empty:
            excluded.append(Excluded(run.name, f"no step with every one of {', '.join(names)}"))
            continue
        frames.append((run.name, df))
    return frames, excluded, seen


def _two_groups(
    t: Target,
    a: pd.DataFrame,
    b: pd.DataFrame,
    column: str,
    criterion: Criterion,
    *,
    claim: str,
    statistic: str,
    log: bool,
    name: str,
) -> Evidence:
    """Group ``a`` against ``b`` on ``column`` (rows of the target's frame): paired by seed when
    both hold the same seeds once each, else Welch's t; invalid runs excluded and listed."""
    va, ea = split_valid(a, [column])
    vb, eb = split_valid(b, [column])
    excluded = (*ea, *eb)
    if log:
        for grp in ("a", "b"):
            g = va if grp == "a" else vb
            bad = g[column].astype(float) <= 0
            excluded = (*excluded, *(Excluded(r, f"{column} ≤ 0") for r in g.run[bad]))
            if grp == "a":
                va = g[~bad]
            else:
                vb = g[~bad]
    c = Criterion(
        criterion.alternative,
        criterion.threshold,
        criterion.alpha,
        max(t.min_runs, 2),
        criterion.null_value,
    )
    if va.empty or vb.empty:
        return insufficient(
            claim,
            statistic,
            c,
            f"≥ {c.min_n} finished runs in each group (have {len(va)} and {len(vb)})",
            excluded=excluded,
            unit="seeds per group",
        )
    sa, sb = va[SEED_KEY].tolist(), vb[SEED_KEY].tolist()
    paired = len(set(sa)) == len(sa) == len(sb) == len(set(sb)) and set(sa) == set(sb)
    if paired:
        va = va.set_index(SEED_KEY).loc[sorted(sa, key=repr)].reset_index()
        vb = vb.set_index(SEED_KEY).loc[sorted(sb, key=repr)].reset_index()
    res = two_group_test(
        va[column].astype(float).to_numpy(),
        vb[column].astype(float).to_numpy(),
        c,
        log=log,
        paired=paired and len(sa) >= 2,
        name=name,
        unit="seeds",
    )
    return assess(claim, statistic, res, excluded=excluded)


def _runs_test(
    claim: str,
    statistic: str,
    criterion: Criterion,
    values: Sequence[float],
    excluded: Sequence[Excluded],
    effect_name: str,
    *,
    log: bool = True,
) -> Evidence:
    if not values:
        return insufficient(
            claim,
            statistic,
            criterion,
            f"≥ {criterion.min_n} valid runs (have 0)",
            excluded=excluded,
            unit="runs",
        )
    res = one_sample_test(values, criterion, effect_name=effect_name, unit="runs", log=log)
    return assess(claim, statistic, res, excluded=excluded)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["optim.name"] == "sgd"]


def _sharpness_column(frame: pd.DataFrame) -> str:
    """‖H‖₂ when stored (with λ_min), else λ₁."""
    if "final_spectral_norm" in frame and np.isfinite(frame["final_spectral_norm"]).any():
        return "final_spectral_norm"
    return "final_lambda_1"


_WALK: weakref.WeakKeyDictionary[Run, pd.DataFrame | None] = weakref.WeakKeyDictionary()


def _walk_frame(run: Run) -> pd.DataFrame | None:
    """One row per walked step: step, epoch, height, barrier (NaN where not stored); read once
    per Run."""
    if run in _WALK:
        return _WALK[run]
    df = run.scalars
    names = df.name.to_numpy()
    rows = df[(names == M.HEIGHT) | (names == M.BARRIER)]
    w = None
    if len(rows):
        steps = np.unique(rows.step.to_numpy())
        epoch = rows.drop_duplicates("step").set_index("step").epoch.reindex(steps)
        w = pd.DataFrame({"step": steps, "epoch": epoch.to_numpy()})
        for n in (M.HEIGHT, M.BARRIER):
            r = rows[rows.name == n]
            w[n] = (
                pd.Series(r.value.to_numpy(float), index=r.step.to_numpy())
                .reindex(steps)
                .to_numpy()
            )
    _WALK[run] = w
    return w


def _walk_groups(w: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """The walked steps in training order, grouped per epoch (1-based, as the papers count)
    when epochs hold ≥ MIN_CURVES walked steps (median), else in thirds of the walked steps."""
    counts = w.groupby("epoch").size()
    if len(counts) and float(counts.median()) >= MIN_CURVES:
        return [(f"epoch {int(e) + 1}", (w.epoch == e).to_numpy()) for e in sorted(counts.index)]
    if len(w) < 3:
        return [("all walked steps", np.ones(len(w), dtype=bool))]
    idx = np.array_split(np.arange(len(w)), 3)
    names = ("first third of walked steps", "middle third", "last third")
    out = []
    for name, i in zip(names, idx, strict=True):
        mask = np.zeros(len(w), dtype=bool)
        mask[i] = True
        out.append((name, mask))
    return out


def curve_ok(y: np.ndarray) -> bool:
    """One interpolation curve passes the joint test: finite, its minimum at an interior point
    (0 < α* < 1), and roughly convex (every second difference ≥ −CONVEX_TOL × its range)."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or len(y) < 3 or not np.all(np.isfinite(y)):
        return False
    span = float(np.ptp(y))
    if span <= 0:
        return False
    j = int(np.argmin(y))
    return 0 < j < len(y) - 1 and bool(np.all(np.diff(y, 2) >= -CONVEX_TOL * span))


def _walk_runs(t: Target) -> tuple[list[tuple[Run, pd.DataFrame]], list[Excluded], bool]:
    """Valid plain-SGD / GD runs with walk scalars, each with its walk frame."""
    f = t.frame
    if f.empty:
        return [], [], False
    out, excluded, seen = [], [], False
    for run, (_, row) in zip(t.runs, f.iterrows(), strict=True):
        if row["optim.name"] != "sgd":
            continue
        w = _walk_frame(run)
        if w is None:
            continue
        seen = True
        if row["status"] != "finished":
            excluded.append(Excluded(run.name, str(row["status"])))
            continue
        out.append((run, w))
    return out, excluded, seen


def _barrier_groups(
    t: Target,
) -> tuple[list[tuple[str, list[tuple[str, int, int]]]], list[Excluded], bool]:
    """Per valid run: (name, [(group label, barriers, walked steps), ...])."""
    runs, excluded, seen = _walk_runs(t)
    out = []
    for run, w in runs:
        w = w[np.isfinite(w[M.BARRIER].to_numpy(float))].reset_index(drop=True)
        if w.empty:
            excluded.append(Excluded(run.name, "no barrier measured"))
            continue
        groups = [(lab, int(w[M.BARRIER][m].sum()), int(m.sum())) for lab, m in _walk_groups(w)]
        out.append((run.name, groups))
    return out, excluded, seen  # type: ignore[return-value]


def _height_by_group(
    t: Target, runs: list[tuple[Run, pd.DataFrame]]
) -> dict[str, dict[str, float]]:
    """run name → {walk group label → mean height}."""
    out: dict[str, dict[str, float]] = {}
    for run, w in runs:
        w = w[np.isfinite(w[M.HEIGHT].to_numpy(float))].reset_index(drop=True)
        if w.empty:
            continue
        out[run.name] = {lab: float(w[M.HEIGHT][m].mean()) for lab, m in _walk_groups(w)}
    return out
