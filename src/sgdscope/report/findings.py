"""The papers' findings as statistical rules, judged on a run or a sweep.

Each :class:`Rule` states a finding of a paper (its claim, in the paper's words), the test used
(written in words with every threshold, all module constants named below, so a reader can see and
change what "reproduced" means), and a check that turns a run or a sweep into one or more
:class:`~sgdscope.report._evidence.Evidence` parts. Each part carries the five things the report
prints: the claim it tests, the statistic, the effect size, its uncertainty (interval, p-value,
n) and the pre-stated threshold (a :class:`~sgdscope.report._stats.Criterion`).

Verdicts (one per part, and one per finding):

- ``"reproduced"``: the test supports the claim (one-sided p ≤ α = 0.05 *and* the estimate
  reaches the minimum effect; equivalence: the 90% interval inside its bounds);
- ``"not reproduced"``: enough valid evidence, and it does not support the claim;
- ``"insufficient evidence"``: too few valid runs / seeds / steps remain. Diverged, failed and
  unfinished runs never count: they are excluded and listed with their reason;
- ``"not applicable"``: the data are absent; the finding says what would make it applicable.

A finding with several parts (one per walked epoch, per noise level, per γ, ...) is reproduced
only when every part is (an intersection–union test: its level is at most α whatever the number of
parts); it is "not reproduced" when a part is, else "insufficient evidence" when a part is, else
"not applicable" when a part's data are missing.

Units of evidence are independent runs (seeds), never the steps of one run:

- **trends** (peak λ₁ lower for larger η, ...) are judged across seeds: within each block (one
  seed, other grid values fixed) the OLS slope is one estimate, and the slopes are tested with a
  one-sided t over blocks (:func:`~sgdscope.report._stats.trend_test`), with a minimum slope.
  Fewer than :data:`MIN_SEEDS` seeds with two levels is "insufficient evidence";
- **per-step claims** (alignment, α-test, GD cosine) reduce each run to one number from
  :data:`RUN_UNITS_FROM` valid runs on; with fewer runs, to the means of
  :data:`STEP_BATCHES` contiguous batches of steps per run (the batch-means method, valid when a
  batch spans many autocorrelation times);
- **comparisons of groups** (NSGD γ < 1 against γ = 1, noisy GD against GD, ...) pair runs by
  seed when both groups hold the same seeds, else use Welch's t;
- **shares**: "most curves convex with a minimum inside" tests the pooled share against 0.5 (exact
  binomial and a cluster t over runs, the larger p: calibrated near 0.5). "Almost no barriers
  early" tests each run's own share against 0.1 with an exact binomial test and needs every run to
  pass: the pooled test is anti-conservative for small shares when seeds differ in their share
  (``benchmarks/results/stats-calibration.md``), and Table 1 reports single runs anyway.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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
    FolderSweep,
    RunSelection,
    array_or_none,
    as_sweep,
    grid_keys,
    is_gd,
    is_sweep,
    lambda1,
    open_target,
    series,
    sgd_runs,
    spectral_norm,
    sweep_frame,
)
from ._evidence import (
    INSUFFICIENT,
    NOT_APPLICABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    VERDICTS,
    Evidence,
    Excluded,
    assess,
    insufficient,
    not_applicable,
    split_valid,
)
from ._stats import (
    EQUIVALENT,
    GREATER,
    LESS,
    Criterion,
    StatResult,
    _fmt,
    one_sample_test,
    proportion_test,
    trend_test,
    two_group_test,
)

__all__ = [
    "INSUFFICIENT",
    "NOT_APPLICABLE",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "RULES",
    "VERDICTS",
    "Finding",
    "Rule",
    "combine",
    "findings_text",
    "judge",
    "judge_per_seed",
]

# =========================================================================== thresholds
# How much evidence.
#: Fewest valid seeds (blocks with two levels of the factor) a trend needs.
MIN_SEEDS = 3
#: Fewest valid runs a comparison across runs needs (per group for two groups).
MIN_RUNS = 3
#: From this many valid runs on, per-step claims use one number per run; below, step batches.
RUN_UNITS_FROM = 3
#: Contiguous batches of steps per run when there are fewer than RUN_UNITS_FROM runs.
STEP_BATCHES = 10
#: Fewest step batches a per-step claim on one or two runs needs.
MIN_BATCHES = 5

# Paper A.
#: λ₁ "early": measurements in the first 30% of the run's steps.
EARLY_FRACTION = 0.3
#: λ₁ "rises fast": its mean over the early window at least 1.5× λ₁ at the first measurement.
LAMBDA_RISE = 1.5
#: "then stabilises or decays": its mean after the early window below 1.25× the early mean.
LAMBDA_LATE_GROWTH = 1.25
#: Fewest λ₁ measurements a run needs for the peak rule.
MIN_LAMBDA_POINTS = 3
#: "Peak λ₁ lower for larger η": slope of ln peak λ₁ on ln η at most −0.25 (λ₁ ∝ η^b, b ≤ −0.25).
PEAK_LR_SLOPE = -0.25
#: "... and for smaller S": ln peak λ₁ rises by at least 0.1 per step up the S grid (≈ +10%).
PEAK_BATCH_SLOPE = 0.1
#: "Peak earlier for larger η": the peak's position (fraction of training) falls by ≥ 0.02 per
#: e-fold of η.
PEAK_STEP_LR_SLOPE = -0.02
#: "... and for smaller S": the peak's position rises by ≥ 0.02 per step up the S grid.
PEAK_STEP_BATCH_SLOPE = 0.02
#: "Far more aligned than random": mean top-5 |cos(g, e_i)| ≥ 5× the random direction's
#: (√(2/(πn)) in expectation; paper A, Fig. 5 shows ≈ 100× for ResNet-32).
ALIGNMENT_FACTOR = 5.0
#: The α-test's subspace: the top eigenvector (u₁), as in paper A's figure.
ALPHA_TEST_K = 1
#: "Top-only flatter / remove-top sharper": final λ₁ ratio to SGD beyond 1.1 either way.
PROJECTED_MARGIN = 1.1
#: "... at a similar training loss": remove-top's final train loss within a factor 2 of SGD's.
PROJECTED_LOSS_RATIO = 2.0
#: "NSGD γ < 1 ends sharper": final ‖H‖₂ (and ‖H‖_F) at least 2× the γ = 1 baseline's (the
#: paper's table: 4.1–5.6× in ‖H‖₂, 6.7–12.9× in ‖H‖_F; both shown beside ours); γ > 1 flatter:
#: at most 1 / 2×.
NSGD_FACTOR = 2.0
#: "... with similar test accuracy": the difference within ±3 accuracy points (TOST).
NSGD_ACC_TOL = 0.03
#: "The random-subspace control shows no such effect": its ‖H‖₂ ratio to the baseline inside
#: [1/2, 2] (TOST): no effect as large as the smallest one the γ rules call an effect.
NSGD_CONTROL_BAND = NSGD_FACTOR
#: Paper A's NSGD table (poster, ResNet-32): γ → (‖H‖₂, ‖H‖_F) at the end of training.
PAPER_NSGD: dict[float, tuple[float, float]] = {
    0.01: (672.0, 1559.0),
    0.1: (487.0, 816.0),
    1.0: (119.0, 121.0),
    10.0: (39.0, 19.0),
}

# Paper B.
#: "Most": more than half.
MOST = 0.5
#: A curve is "roughly convex" when every second difference ≥ −5% of the curve's range.
CONVEX_TOL = 0.05
#: Walk groups: per epoch when epochs hold at least this many walked steps (median), else thirds
#: of the walked steps (full-batch GD: one step per epoch).
MIN_CURVES = 10
#: "Almost no barriers early": below 10% of the first walk group's steps, in every run.
EARLY_BARRIER_SHARE = 0.10
#: "Larger η → larger height": slope of ln height on ln η at least 0.5 in every walked epoch (paper
#: B, Table 2: ≈ 2 for VGG-11 and ResNet-56).
HEIGHT_LR_SLOPE = 0.5
#: "The height decreases over training": last walk group's mean height ≤ 0.8× the first's.
HEIGHT_DECAY = 0.8
#: "Larger S → more negative cos(g_t, g_{t+1})": mean cos falls by ≥ 0.05 per step up the S grid.
COS_BATCH_SLOPE = -0.05
#: "Larger S → smaller distance": ln ‖θ − θ₀‖ (at a step every run reached) falls by ≥ 0.1 per
#: step up the S grid.
DISTANCE_BATCH_SLOPE = -0.1
#: "η barely changes the cosine": the slope of mean cos on ln η inside ±0.05 (TOST).
COS_LR_MAX_SLOPE = 0.05
#: "GD's cosine is near −1": mean cos over the second half of a GD run below −0.7.
GD_COSINE_MAX = -0.7
#: Noisy GD against GD at the same η: final train loss ≥ 1.1×, final accuracy lower, distance
#: from initialisation ≥ 1.1×, final ‖θ‖ larger.
NOISY_LOSS_RATIO = 1.1
NOISY_DISTANCE_RATIO = 1.1
#: The spectral-norm windows: the first, the second-to-last and the last 20% of measurements.
SPECTRAL_WINDOW = 0.2
#: Fewest ‖H‖₂ measurements a run needs for the spectral-norm rule.
MIN_SPECTRAL_POINTS = 10
#: "‖H‖₂ reduces as training progresses": the window before the end ≤ 0.8× the first window.
SPECTRAL_DECLINE = 0.8
#: "... but rises towards the end": the last window ≥ 1.1× the window before it.
SPECTRAL_RISE = 1.1
#: Schedules that raise η do "as well or better" than step-wise annealing: final accuracy at most
#: 2 points lower (non-inferiority).
SCHEDULE_MARGIN = 0.02

Parts = list[Evidence]


# =========================================================================== results
@dataclass(frozen=True)
class Finding:
    """The verdict of one rule on one run or sweep.

    Attributes:
        id: the rule's id (``"A.peak_lower"``).
        paper: ``"A"`` or ``"B"``.
        statement: the finding as the paper states it.
        rule: the test in words, with its thresholds.
        verdict: one of :data:`VERDICTS` (the parts combined by :func:`combine`).
        parts: the tested sub-claims, each with claim, statistic, effect, uncertainty,
            threshold and its own verdict.
        needs: what would make the finding applicable (or its evidence sufficient).
    """

    id: str
    paper: str
    statement: str
    rule: str
    verdict: str
    parts: tuple[Evidence, ...] = ()
    needs: str = ""

    @property
    def applicable(self) -> bool:
        return self.verdict != NOT_APPLICABLE

    @property
    def excluded(self) -> tuple[Excluded, ...]:
        """Runs left out of any part, once each."""
        seen: dict[str, Excluded] = {}
        for p in self.parts:
            for e in p.excluded:
                seen.setdefault(e.run, e)
        return tuple(seen.values())

    @property
    def numbers(self) -> dict[str, str]:
        """One line per part: its claim → effect and uncertainty (``needs`` when untested)."""
        out = {}
        for p in self.parts:
            if p.result is not None:
                out[p.claim] = f"{p.effect_text} ({p.uncertainty_text})"
            else:
                out[p.claim] = f"{p.verdict}: {p.needs}"
        if self.needs and not self.parts:
            out["needs"] = self.needs
        return out

    def text(self) -> str:
        """The finding and every part's five fields, as indented lines."""
        lines = [f"{self.id} [{self.verdict}] {self.statement}", f"  rule: {self.rule}"]
        if self.needs:
            lines.append(f"  needs: {self.needs}")
        for p in self.parts:
            lines.append(f"  - {p.claim} [{p.verdict}]")
            for k, v in p.fields().items():
                if k not in ("claim", "verdict"):
                    lines.append(f"      {k}: {v}")
        return "\n".join(lines)


def combine(parts: Sequence[Evidence]) -> str:
    """A finding's verdict from its parts (intersection–union): reproduced only when every part
    is; else "not reproduced" when a part is, else "insufficient evidence" when a part is, else
    "not applicable"."""
    verdicts = [p.verdict for p in parts]
    if not verdicts or all(v == NOT_APPLICABLE for v in verdicts):
        return NOT_APPLICABLE
    for v in (NOT_REPRODUCED, INSUFFICIENT, NOT_APPLICABLE):
        if v in verdicts:
            return v
    return REPRODUCED


# =========================================================================== what is judged
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


# =========================================================================== rules
Check = Callable[[Target], Parts]


@dataclass(frozen=True)
class Rule:
    """One finding of a paper and how sgdscope tests it.

    Attributes:
        id: short stable name (``"A.lambda_peak"``).
        paper: ``"A"`` (sharpest directions) or ``"B"`` (walk with SGD).
        statement: the finding, as the paper states it.
        rule: the test, in words, with its thresholds.
        scope: ``"run"`` (testable on a single run) or ``"sweep"`` (compares runs or seeds).
        needs: what data make it applicable (shown when none are there).
        check: target → the tested parts.
    """

    id: str
    paper: str
    statement: str
    rule: str
    scope: str
    needs: str
    check: Check = field(repr=False)

    def evaluate(self, target: Any, *, min_runs: int = MIN_RUNS) -> Finding:
        """Judge ``target`` (a :class:`Run`, a sweep, a path or a :class:`Target`)."""
        t = _as_target(target, min_runs)
        parts = tuple(self.check(t))
        verdict = combine(parts)
        needs = ""
        if not parts:
            needs = self.needs
        elif verdict in (NOT_APPLICABLE, INSUFFICIENT):
            needs = "; ".join(dict.fromkeys(p.needs for p in parts if p.needs))
        return Finding(self.id, self.paper, self.statement, self.rule, verdict, parts, needs)


# --------------------------------------------------------------------------- shared helpers
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
) -> Evidence:
    """A per-step claim: one number per run from :data:`RUN_UNITS_FROM` runs on, else per
    contiguous step batch; then a one-sample t of those numbers under ``criterion``."""
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


def _factor_names(x: str) -> str:
    return {LR_KEY: "η", BATCH_KEY: "S"}.get(x, x)


# =========================================================================== paper A
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


def _peak_frame(t: Target) -> pd.DataFrame:
    frame = t.sgd.frame.copy()
    if not frame.empty:
        frame["peak_position"] = frame["peak_lambda_1_step"].astype(float) / frame[
            "last_step"
        ].astype(float).clip(lower=1)
    return frame


def _peak_lower(t: Target) -> Parts:
    if not _has(t, "peak_lambda_1"):
        return []
    frame = _peak_frame(t)
    parts = []
    if _sgd_varies(t, LR_KEY):
        parts.append(
            _trend_part(
                t,
                t.sgd,
                frame,
                LR_KEY,
                "peak_lambda_1",
                Criterion(LESS, PEAK_LR_SLOPE, min_n=MIN_SEEDS),
                claim="peak λ₁ lower for larger η",
                statistic="peak λ₁ per run; per seed the OLS slope of ln peak λ₁ on ln η; "
                "one-sided t over seeds",
                x_scale="log",
                y_scale="log",
                x_name="η",
                y_name="peak λ₁",
            )
        )
    if _sgd_varies(t, BATCH_KEY):
        parts.append(
            _trend_part(
                t,
                t.sgd,
                frame,
                BATCH_KEY,
                "peak_lambda_1",
                Criterion(GREATER, PEAK_BATCH_SLOPE, min_n=MIN_SEEDS),
                claim="peak λ₁ lower for smaller S",
                statistic="peak λ₁ per run; per seed the OLS slope of ln peak λ₁ on the rank of S "
                "(full batch last); one-sided t over seeds",
                x_scale="rank",
                y_scale="log",
                x_name="S",
                y_name="peak λ₁",
            )
        )
    return parts


def _peak_earlier(t: Target) -> Parts:
    if not _has(t, "peak_lambda_1"):
        return []
    frame = _peak_frame(t)
    parts = []
    if _sgd_varies(t, LR_KEY):
        parts.append(
            _trend_part(
                t,
                t.sgd,
                frame,
                LR_KEY,
                "peak_position",
                Criterion(LESS, PEAK_STEP_LR_SLOPE, min_n=MIN_SEEDS),
                claim="λ₁ peak earlier for larger η",
                statistic="step of the λ₁ peak / the run's steps; per seed the OLS slope on ln η; "
                "one-sided t over seeds",
                x_scale="log",
                y_scale="linear",
                x_name="η",
                y_name="peak position",
            )
        )
    if _sgd_varies(t, BATCH_KEY):
        parts.append(
            _trend_part(
                t,
                t.sgd,
                frame,
                BATCH_KEY,
                "peak_position",
                Criterion(GREATER, PEAK_STEP_BATCH_SLOPE, min_n=MIN_SEEDS),
                claim="λ₁ peak earlier for smaller S",
                statistic="step of the λ₁ peak / the run's steps; per seed the OLS slope on the "
                "rank of S; one-sided t over seeds",
                x_scale="rank",
                y_scale="linear",
                x_name="S",
                y_name="peak position",
            )
        )
    return parts


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
        _per_unit(
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
        _per_unit(
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
        _per_unit(
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


def _sharpness_column(frame: pd.DataFrame) -> str:
    """‖H‖₂ when stored (with λ_min), else λ₁."""
    if "final_spectral_norm" in frame and np.isfinite(frame["final_spectral_norm"]).any():
        return "final_spectral_norm"
    return "final_lambda_1"


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["optim.name"] == "sgd"]


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


# =========================================================================== paper B: the walk
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
    results = []
    for _name, groups in runs:
        _, k, n = groups[0]
        results.append(proportion_test(k, n, Criterion(LESS, null_value=EARLY_BARRIER_SHARE)))
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
        _per_unit(
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


# =========================================================================== the rules
_SEEDS = f"≥ {MIN_SEEDS} seeds"
RULES: tuple[Rule, ...] = (
    Rule(
        "A.lambda_peak",
        "A",
        "λ₁ rises fast early in training, peaks, then stabilises or decays.",
        f"Per plain-SGD run: (1) mean λ₁ over the first {EARLY_FRACTION:.0%} of steps (after the "
        f"first measurement) / λ₁ at the first measurement ≥ {LAMBDA_RISE:g} (geometric mean over "
        f"runs, one-sided t of the log, p ≤ 0.05); (2) mean λ₁ later / mean early < "
        f"{LAMBDA_LATE_GROWTH:g} "
        f"(one-sided t, H0: ≥ {LAMBDA_LATE_GROWTH:g}); ≥ {MIN_RUNS} runs.",
        "sweep",
        f"plain-SGD runs with the sharpness probe (≥ {MIN_LAMBDA_POINTS} λ₁ values), ≥ "
        f"{MIN_RUNS} runs",
        _lambda_peak,
    ),
    Rule(
        "A.peak_lower",
        "A",
        "The λ₁ peak is lower for larger η and for smaller S.",
        "Across plain-SGD runs, per seed (other grid values fixed) the OLS slope of ln peak λ₁ "
        f"on ln η ≤ {PEAK_LR_SLOPE:g}, and on the rank of S (full batch last) ≥ "
        f"{PEAK_BATCH_SLOPE:g}; one-sided t over seeds, p ≤ 0.05, {_SEEDS}.",
        "sweep",
        "a sweep of plain SGD over optim.lr or train.batch_size with the sharpness probe, "
        f"{_SEEDS}",
        _peak_lower,
    ),
    Rule(
        "A.peak_earlier",
        "A",
        "The λ₁ peak comes earlier for larger η and for smaller S.",
        "As A.peak_lower with the peak's position (its step / the run's steps): slope on ln η ≤ "
        f"{PEAK_STEP_LR_SLOPE:g}, on the rank of S ≥ {PEAK_STEP_BATCH_SLOPE:g}; {_SEEDS}.",
        "sweep",
        "a sweep of plain SGD over optim.lr or train.batch_size with the sharpness probe, "
        f"{_SEEDS}",
        _peak_earlier,
    ),
    Rule(
        "A.alignment",
        "A",
        "Mini-batch gradients are far more aligned with the top Hessian eigenvectors than a "
        "random vector.",
        "The mean over the top 5 of |cos(g_t, e_i)| (paper A, Fig. 5) against |cos(g_t, r)| for a "
        "fresh Gaussian r (≈ √(2/(πn))) at the same steps: the ratio of their means per run "
        f"(per step batch below {RUN_UNITS_FROM} runs) ≥ {ALIGNMENT_FACTOR:g}, one-sided t of "
        "its log, p ≤ 0.05, with its 90% interval.",
        "run",
        "the alignment probe with random_baseline (alignment_mean5, alignment_random)",
        _alignment,
    ),
    Rule(
        "A.alpha_test",
        "A",
        "SGD's step is too large along the sharpest direction: ΔL(0.5) < ΔL(1) and ΔL(2) > 0.",
        f"ΔL(α) = L(θ_t + α u₁) − L(θ_t) (top-{ALPHA_TEST_K} subspace): the mean of ΔL(1) − "
        "ΔL(0.5) > 0 and the mean of ΔL(2) > 0, each one-sided t over runs (step batches below "
        f"{RUN_UNITS_FROM} runs), p ≤ 0.05.",
        "run",
        "the step_scale probe with k=1 and α ∈ {0.5, 1, 2}",
        _alpha_test,
    ),
    Rule(
        "A.projected",
        "A",
        "Top-only SGD finds flatter regions; remove-top SGD finds sharper ones at a similar "
        "training loss.",
        f"Final λ₁: top-only / SGD ≤ 1/{PROJECTED_MARGIN:g} and remove-top / SGD ≥ "
        f"{PROJECTED_MARGIN:g} (ratios of geometric means, one-sided, p ≤ 0.05), and remove-top's "
        f"final train loss / SGD's inside [1/{PROJECTED_LOSS_RATIO:g}, {PROJECTED_LOSS_RATIO:g}] "
        f"(TOST); paired by seed; ≥ {MIN_RUNS} runs per group.",
        "sweep",
        "top-only and remove-top runs (optim.name=projected_sgd) and plain SGD, ≥ 3 seeds each",
        _projected,
    ),
    Rule(
        "A.nsgd_sharper",
        "A",
        "Nudged-SGD with γ < 1 ends an order of magnitude sharper, with similar test accuracy.",
        f"For each γ < 1: final ‖H‖₂ (and ‖H‖_F when measured) / the γ = 1 (else SGD) baseline ≥ "
        f"{NSGD_FACTOR:g} (ratio of geometric means, one-sided, p ≤ 0.05; the paper's factor "
        f"shown beside), and final test accuracy (else val) within ±{NSGD_ACC_TOL:g} of the "
        f"baseline (TOST); paired by seed; ≥ {MIN_RUNS} runs per group.",
        "sweep",
        "NSGD runs with γ < 1 and a γ = 1 or plain-SGD baseline, ≥ 3 seeds each",
        _nsgd_sharper,
    ),
    Rule(
        "A.nsgd_flatter",
        "A",
        "Nudged-SGD with γ > 1 ends flatter.",
        f"For each γ > 1: final ‖H‖₂ (and ‖H‖_F) / the baseline ≤ 1/{NSGD_FACTOR:g}, one-sided, "
        "p ≤ 0.05; paired by seed.",
        "sweep",
        "NSGD runs with γ > 1 and a γ = 1 or plain-SGD baseline, ≥ 3 seeds each",
        _nsgd_flatter,
    ),
    Rule(
        "A.nsgd_control",
        "A",
        "Rescaling a random subspace instead of the top one has no such effect.",
        "For each random-subspace γ: final ‖H‖₂ / the baseline inside "
        f"[1/{NSGD_CONTROL_BAND:g}, {NSGD_CONTROL_BAND:g}] (TOST, p ≤ 0.05); paired by seed.",
        "sweep",
        "NSGD runs with optim.options.subspace=random and a baseline, ≥ 3 seeds each",
        _nsgd_control,
    ),
    Rule(
        "B.convex_inside",
        "B",
        "The loss interpolated between consecutive iterates is roughly convex, with a minimum "
        "in between, for most of training.",
        "Per curve one joint test: the minimum strictly inside (0 < α* < 1) and every second "
        f"difference ≥ −{CONVEX_TOL:.0%} of the curve's range. In every walked epoch (thirds of "
        f"the walked steps when epochs hold < {MIN_CURVES}), the share of such curves > "
        f"{MOST:g} (exact binomial and cluster t over runs, the larger p ≤ 0.05).",
        "run",
        "the walk probe (interp_loss)",
        _convex_inside,
    ),
    Rule(
        "B.early_barriers",
        "B",
        "Almost no barriers are crossed early in training.",
        "In the first walked epoch of every run, the share of steps crossing a barrier < "
        f"{EARLY_BARRIER_SHARE:.0%} (exact one-sided binomial per run, p ≤ 0.05, every run must "
        f"pass); ≥ {MIN_RUNS} runs.",
        "run",
        "the walk probe (barrier)",
        _early_barriers,
    ),
    Rule(
        "B.barriers_later",
        "B",
        "More barriers are crossed later in training (paper B, Table 1: 0, 0, 5, 13 for VGG-11).",
        "Per run, share of barrier steps in the last walked epoch − in the first > 0, one-sided "
        f"t over runs, p ≤ 0.05; ≥ {MIN_RUNS} runs.",
        "sweep",
        "the walk probe in ≥ 2 epochs",
        _barriers_later,
    ),
    Rule(
        "B.height_vs_lr",
        "B",
        "A larger learning rate keeps SGD higher above the valley floor.",
        "At each walked epoch (not pooled): per seed the OLS slope of ln mean height on ln η ≥ "
        f"{HEIGHT_LR_SLOPE:g}, one-sided t over seeds, p ≤ 0.05, {_SEEDS}; every epoch must pass.",
        "sweep",
        f"a sweep of plain SGD over optim.lr with the walk probe, {_SEEDS}",
        _height_vs_lr,
    ),
    Rule(
        "B.height_decreases",
        "B",
        "The height above the valley floor decreases as training progresses (Table 2).",
        "Per run, mean height in the last walked epoch / in the first ≤ "
        f"{HEIGHT_DECAY:g} (one-sided t of the log over runs, p ≤ 0.05); ≥ {MIN_RUNS} runs.",
        "sweep",
        "the walk probe in ≥ 2 epochs, ≥ 3 runs",
        _height_decreases,
    ),
    Rule(
        "B.cos_vs_batch",
        "B",
        "A larger batch size makes cos(g_t, g_{t+1}) more negative.",
        "Across plain-SGD runs, per seed the OLS slope of the mean cos on the rank of S (full "
        f"batch last) ≤ {COS_BATCH_SLOPE:g}, one-sided t over seeds, p ≤ 0.05, {_SEEDS}.",
        "sweep",
        f"a sweep of plain SGD over train.batch_size with grad_cosine, {_SEEDS}",
        _cos_vs_batch,
    ),
    Rule(
        "B.distance_vs_batch",
        "B",
        "A larger batch size gives a smaller distance from initialisation.",
        "Across plain-SGD runs, ‖θ − θ₀‖ at the last step every run of the seed reached: per "
        f"seed the OLS slope of its log on the rank of S ≤ {DISTANCE_BATCH_SLOPE:g}, one-sided t "
        f"over seeds, p ≤ 0.05, {_SEEDS}.",
        "sweep",
        f"a sweep of plain SGD over train.batch_size with the distance probe, {_SEEDS}",
        _distance_vs_batch,
    ),
    Rule(
        "B.cos_vs_lr",
        "B",
        "The learning rate barely changes cos(g_t, g_{t+1}).",
        "Across plain-SGD runs, per seed the OLS slope of the mean cos on ln η inside "
        f"±{COS_LR_MAX_SLOPE:g} (TOST over seeds, p ≤ 0.05), {_SEEDS}.",
        "sweep",
        f"a sweep of plain SGD over optim.lr with grad_cosine, {_SEEDS}",
        _cos_vs_lr,
    ),
    Rule(
        "B.gd_cosine",
        "B",
        "For full-batch GD, cos(g_t, g_{t+1}) is near −1.",
        f"Mean cos(g_t, g_{{t+1}}) over the second half of each GD run < {GD_COSINE_MAX:g} "
        f"(one-sided t over runs, or over step batches below {RUN_UNITS_FROM} runs, p ≤ 0.05).",
        "run",
        "a full-batch GD run (train.batch_size=full, optim.name=sgd) with grad_cosine",
        _gd_cosine,
    ),
    Rule(
        "B.noisy_gd",
        "B",
        "GD plus isotropic noise optimises and generalises worse than GD, travels further and "
        "ends with a larger parameter norm.",
        "For each noise level c, against GD at the same η (paired by seed): final train loss "
        f"ratio ≥ {NOISY_LOSS_RATIO:g}, final accuracy lower, ‖θ − θ₀‖ ratio ≥ "
        f"{NOISY_DISTANCE_RATIO:g}, ‖θ‖ ratio > 1; each one-sided, p ≤ 0.05; ≥ {MIN_RUNS} runs "
        "per group; every level must pass.",
        "sweep",
        "GD runs and GD + isotropic noise runs (optim.name=noisy_gd), ≥ 3 seeds each",
        _noisy_gd,
    ),
    Rule(
        "B.spectral_norm",
        "B",
        "The spectral norm of the Hessian reduces as training progresses, but rises again "
        "towards the end.",
        "‖H‖₂ = max(|λ₁|, |λ_min|) per run (at least "
        f"{MIN_SPECTRAL_POINTS} measurements), means over windows of {SPECTRAL_WINDOW:.0%} of "
        f"the measurements: (window before the last) / (first) ≤ {SPECTRAL_DECLINE:g} and (last) "
        f"/ (window before it) ≥ {SPECTRAL_RISE:g}; one-sided t of the logs over runs, p ≤ 0.05, "
        f"≥ {MIN_RUNS} runs.",
        "sweep",
        "plain-SGD runs with the sharpness probe's spectral_norm (option lambda_min)",
        _spectral_norm,
    ),
    Rule(
        "B.schedules",
        "B",
        "Schedules that raise the learning rate during training (cyclical, trapezoid) do as "
        "well as or better than step-wise annealing, and one cycle does as well as many "
        "(Appendix C).",
        "Final test (else val) accuracy, paired by seed: trapezoid − step-wise, cyclical − "
        f"step-wise and trapezoid − cyclical each > −{SCHEDULE_MARGIN:g} (non-inferiority, "
        f"one-sided t, p ≤ 0.05); ≥ {MIN_RUNS} seeds per schedule.",
        "sweep",
        "plain-SGD runs with schedule.name step_decay and cyclical or trapezoid, ≥ 3 seeds each",
        _schedules,
    ),
)


# =========================================================================== judging
def judge(target: Any, *, min_runs: int = MIN_RUNS) -> list[Finding]:
    """Every rule's verdict on a run, a sweep, or a run / sweep directory path.

    Args:
        target: a :class:`Run`, a sweep object, a list of runs, or a directory.
        min_runs: fewest valid runs for tests whose units are runs (a per-seed view of a sweep
            passes 1: one seed's runs are then judged on their own, trends need seeds anyway).
    """
    t = _as_target(target, min_runs)
    return [rule.evaluate(t) for rule in RULES]


def judge_per_seed(target: Any) -> dict[Any, list[Finding]]:
    """The verdicts on each seed's runs alone (seed → findings), for a sweep over seeds.

    One seed cannot show a trend across seeds: those findings say "insufficient evidence" here,
    with the seed's own estimate as the effect; per-run claims are judged on the seed's runs
    (step batches below three runs)."""
    t = _as_target(target)
    frame = t.frame
    if frame.empty or SEED_KEY not in frame:
        return {}
    out: dict[Any, list[Finding]] = {}
    for seed in sorted(frame[SEED_KEY].dropna().unique(), key=repr):
        runs = [r for r, s in zip(t.runs, frame[SEED_KEY], strict=True) if s == seed]
        sub = FolderSweep(Path(getattr(t.sweep, "path", ".")), runs, list(t.keys))
        out[seed] = judge(sub, min_runs=1)
    return out


# =========================================================================== text
_TITLES = {
    "A": "Paper A — sharpest directions (Jastrzębski et al. 2019)",
    "B": "Paper B — a walk with SGD (Xing et al. 2018)",
}
_MARKS = {REPRODUCED: "✓", NOT_REPRODUCED: "✗", INSUFFICIENT: "?", NOT_APPLICABLE: "·"}


def format_number(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (float, np.floating)):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"


def numbers_text(numbers: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {format_number(v)}" for k, v in numbers.items())


def verdict_counts(findings: Sequence[Finding]) -> str:
    counts = {v: sum(f.verdict == v for f in findings) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def findings_text(findings: list[Finding], *, include_na: bool = True, detail: bool = True) -> str:
    """A plain-text summary of the verdicts grouped by paper: per finding its verdict and
    statement, and (``detail``) each part's claim, statistic, effect, uncertainty, threshold."""
    lines = []
    for paper in sorted({f.paper for f in findings}):
        lines.append(_TITLES.get(paper, f"Paper {paper}"))
        for f in findings:
            if f.paper != paper or (not include_na and not f.applicable):
                continue
            lines.append(f"  {_MARKS[f.verdict]} {f.verdict:<21} {f.id}: {f.statement}")
            if f.needs:
                lines.append(f"      needs: {f.needs}")
            if not detail:
                continue
            for p in f.parts:
                lines.append(f"      {_MARKS[p.verdict]} {p.claim} — {p.verdict}")
                fields = p.fields()
                for k in ("statistic", "effect", "uncertainty", "threshold", "needs", "excluded"):
                    if k in fields:
                        lines.append(f"          {k}: {fields[k]}")
    lines.append(verdict_counts(findings))
    return "\n".join(lines)
