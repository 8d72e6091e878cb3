"""The findings after both papers as statistical rules: edge of stability (GD, SGD, Adam) and
SGD in the dominant subspace against the bulk.

Each rule turns a run or a sweep (a recipe's small or paper variant over its seeds) into
:class:`~sgdscope.report._evidence.Evidence` parts, tested with :mod:`~sgdscope.report._stats`
under pre-stated criteria; thresholds are the module constants below, each written into its
rule's text. Units of evidence are runs (independent seeds, and runs at different grid values,
are independent trajectories); per-step series are first reduced to one number per run:

- **the edge** of a run is its first measurement with ratio ≥ :data:`EDGE_REACHED`, after the
  ratio was first below it (an initial transient above it is skipped), (the ratio of
  the sharpness the optimizer's threshold bounds to that threshold: ``stability``, η λ₁/2 for GD,
  η λ₁(P⁻¹ᐟ²HP⁻¹ᐟ²)/38 for Adam); the *hover window* is the :data:`HOVER_FRACTION` of the run's
  measurements from there (at least :data:`MIN_WINDOW`). A run that never reaches the edge gets
  its largest ratio as its hover value (so it counts against the claim) and no window. The loss
  is judged from the edge to the end of the run (every step's loss).
- **batch sharpness** is noisy per measurement: a run's late value is the median of
  ``batch_sharpness_stability`` (η·BS/2) over the last :data:`LATE_FRACTION` of its
  measurements; its λ_max against 2/η is the peak of the 3-point running median of η λ₁/2.

Verdicts per part, combined per finding (intersection–union), as in
:mod:`sgdscope.report.findings`: ``reproduced``, ``not reproduced``, ``insufficient evidence``
(fewer valid runs than a criterion's ``min_n``; diverged and failed runs are excluded and listed)
and ``not applicable`` (the metrics are absent).

Sources: Cohen, Kaur, Li, Kolter & Talwalkar, "Gradient descent on neural networks typically
occurs at the edge of stability" (ICLR 2021); Cohen et al., "Adaptive gradient methods at the edge
of stability" (2022); Andreyev & Beneventano, "Edge of stochastic stability: revisiting the edge
of stability for SGD" (2024); Song, Ahn & Yun, "Does SGD really happen in tiny subspaces?"
(2024), compared with paper A's top-only / remove-top SGD (Jastrzębski et al. 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics as M
from ..store import Run
from ._data import as_sweep, batch_value, optim_name, optim_option, series
from ._evidence import (
    INSUFFICIENT,
    NOT_APPLICABLE,
    Evidence,
    Excluded,
    assess,
    insufficient,
    not_applicable,
    split_valid_runs,
)
from ._stats import EQUIVALENT, GREATER, LESS, Criterion, one_sample_test, trend_test
from .findings import Finding, combine

__all__ = [
    "BEYOND_RULES",
    "BeyondFinding",
    "BeyondRule",
    "judge_beyond",
]

PAPER = "beyond"

# =========================================================================== thresholds
#: A run is at the edge once its stability ratio first reaches 0.9.
EDGE_REACHED = 0.9
#: The hover window: this share of the run's measurements from the edge on ...
HOVER_FRACTION = 0.25
#: ... and at least this many measurements.
MIN_WINDOW = 3
#: "Hovers at the threshold": the window's median ratio lies in [0.8, 1.25] (TOST on ln ratio).
HOVER_BOUNDS = (0.8, 1.25)
#: "Progressive sharpening": λ₁ at the edge is at least 2× λ₁ at the first measurement.
SHARPENING_FACTOR = 2.0
#: "The loss keeps falling" at the edge: from the edge to the end of the run, its mean over the
#: last fifth is at most 0.9× its mean over the first fifth.
LOSS_FALL_RATIO = 0.9
#: ... "non-monotonically": at least 2% of those steps raise the loss.
LOSS_RISE_SHARE = 0.02
#: Batch sharpness "hovers at 2/η": its late median η·BS/2 lies in [0.5, 1.5] (a looser band than
#: GD's: one measurement averages 16 batches, with a standard error of 10–30%).
BS_BOUNDS = (0.5, 1.5)
#: The late part of a run for batch sharpness: its last 50% of measurements.
LATE_FRACTION = 0.5
#: "λ_max stays below 2/η" for the smallest batch: its peak η λ₁/2 is at most 0.8.
LAMBDA_BELOW = 0.8
#: "More so for smaller batches": the slope of ln(peak η λ₁/2) on ln S is positive, at least 0.05.
BATCH_SLOPE = 0.05
#: "Dom-SGD fails to decrease the loss": its loss decrease is at most 25% of SGD's.
DOM_SHARE = 0.25
#: "Bulk-SGD decreases it as well as SGD": its loss decrease is 0.8–1.25× SGD's.
BULK_BOUNDS = (0.8, 1.25)
#: Fewest valid runs (or seeds) per test.
MIN_UNITS = 3

Parts = list[Evidence]


# =========================================================================== rules and results
@dataclass(frozen=True)
class BeyondRule:
    """One finding after both papers and how sgdscope tests it (the fields of
    :class:`sgdscope.report.findings.Rule`, with ``paper = "beyond"`` and its recipe).

    Attributes:
        id: stable name (``"beyond.eos_gd.hovers"``).
        paper: ``"beyond"``.
        recipe: the recipe whose runs it judges.
        statement: the finding as its source states it (with the source).
        rule: the test in words, with its thresholds.
        scope: ``"sweep"`` (judged over runs / seeds).
        needs: the data that make it applicable.
        check: runs → tested parts.
    """

    id: str
    paper: str
    recipe: str
    statement: str
    rule: str
    scope: str
    needs: str
    check: Callable[[list[Run]], Parts] = field(repr=False)

    def evaluate(self, target: Any) -> BeyondFinding:
        """Judge a run, a sweep, a sweep / run directory or a list of runs."""
        runs = list(as_sweep(target).runs)
        parts = tuple(self.check(runs))
        verdict = combine(parts)
        needs = ""
        if not parts:
            needs = self.needs
        elif verdict in (NOT_APPLICABLE, INSUFFICIENT):
            needs = "; ".join(dict.fromkeys(p.needs for p in parts if p.needs))
        return BeyondFinding(self.id, self.paper, self.statement, self.rule, verdict, parts, needs)


#: The findings after both papers are :class:`~sgdscope.report.findings.Finding` objects, with
#: ``paper = "beyond"`` (the name is kept for code that imported it).
BeyondFinding = Finding


# =========================================================================== per-run statistics
@dataclass(frozen=True)
class Edge:
    """Where a run's stability ratio first reaches the edge, and its hover window.

    Attributes:
        reached: the ratio reached :data:`EDGE_REACHED`.
        step: the step of the edge (or of the largest ratio when not reached).
        hover: the window's median ratio (the largest ratio when not reached).
        window: (first, last) step of the hover window, or None.
    """

    reached: bool
    step: int
    hover: float
    window: tuple[int, int] | None


def edge_of(ratios: pd.Series) -> Edge | None:
    """The edge and hover window of a run's stability ratios (None: fewer than 2 finite)."""
    r = ratios[np.isfinite(ratios.to_numpy(float))]
    if len(r) < 2:
        return None
    values = r.to_numpy(float)
    steps = r.index.to_numpy(np.int64)
    # Skip an initial stretch above the edge (Adam at θ₀: v̂ from one gradient makes P tiny and
    # the preconditioned sharpness huge) — the edge is reached by rising to it.
    below = np.flatnonzero(values < EDGE_REACHED)
    start = int(below[0]) if len(below) else len(values)
    hits = start + np.flatnonzero(values[start:] >= EDGE_REACHED)
    if len(hits) == 0:
        i = start + int(np.argmax(values[start:])) if start < len(values) else 0
        return Edge(False, int(steps[i]), float(values[i]), None)
    i = int(hits[0])
    width = max(MIN_WINDOW, math.ceil(HOVER_FRACTION * len(values)))
    j = min(len(values), i + width)
    return Edge(
        True, int(steps[i]), float(np.median(values[i:j])), (int(steps[i]), int(steps[j - 1]))
    )


def _loss_after(run: Run, step: int) -> np.ndarray | None:
    """The mini-batch loss (GD: the full-batch loss) from ``step`` to the end of the run."""
    loss = series(run, M.BATCH_LOSS)
    if loss is None:
        return None
    w = loss[loss.index >= step].to_numpy(float)
    w = w[np.isfinite(w)]
    return w if len(w) >= 5 else None


def _late_median(s: pd.Series) -> float:
    v = s.to_numpy(float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan
    k = max(1, math.ceil(LATE_FRACTION * len(v)))
    return float(np.median(v[-k:]))


def _peak_running_median(s: pd.Series) -> float:
    v = s[np.isfinite(s.to_numpy(float))]
    if len(v) < 3:
        return math.nan
    return float(v.rolling(3, center=True).median().max())


def _valid(runs: list[Run], has: Callable[[Run], bool]) -> tuple[list[Run], list[Excluded]]:
    """Runs holding the data (``has``) that count as evidence, and those excluded for status."""
    with_data = [r for r in runs if has(r)]
    valid, excluded = split_valid_runs(with_data)
    return valid, list(excluded)


def _has(*names: str) -> Callable[[Run], bool]:
    def check(run: Run) -> bool:
        return all(series(run, n) is not None for n in names)

    return check


def _one_sample(
    claim: str,
    statistic: str,
    values: list[float],
    criterion: Criterion,
    excluded: list[Excluded],
    *,
    effect_name: str,
    log: bool,
    unit: str = "runs",
) -> Evidence:
    v = [x for x in values if math.isfinite(x) and (x > 0 or not log)]
    if not v:
        return insufficient(
            claim,
            statistic,
            criterion,
            f"≥ {criterion.min_n} runs with a finite {effect_name}",
            excluded=excluded,
            effect_name=effect_name,
            unit=unit,
        )
    res = one_sample_test(v, criterion, effect_name=effect_name, unit=unit, log=log)
    return assess(claim, statistic, res, excluded=excluded)


# =========================================================================== eos-gd / eos-adam
def _edges(runs: list[Run], ratio_name: str) -> tuple[list[tuple[Run, Edge]], list[Excluded]]:
    valid, excluded = _valid(runs, _has(ratio_name))
    out = []
    for r in valid:
        e = edge_of(series(r, ratio_name))  # type: ignore[arg-type]
        if e is None:
            excluded.append(Excluded(r.name, f"fewer than 2 finite {ratio_name}"))
        else:
            out.append((r, e))
    return out, excluded


def _hover_part(runs: list[Run], what: str, threshold: str) -> Parts:
    claim = f"{what} rises to {threshold} and hovers there"
    statistic = (
        f"per run, the median of {what} / ({threshold}) over the {HOVER_FRACTION:.0%} of its "
        f"measurements from the first reaching {EDGE_REACHED:g} (the largest ratio when never "
        "reached); TOST on the log ratio over runs"
    )
    crit = Criterion(EQUIVALENT, HOVER_BOUNDS, min_n=MIN_UNITS)
    edges, excluded = _edges(runs, M.STABILITY)
    if not edges:
        return [
            not_applicable(
                claim, statistic, crit, "runs with the sharpness probe (stability)", unit="runs"
            )
        ]
    values = [e.hover for _, e in edges]
    return [
        _one_sample(claim, statistic, values, crit, excluded, effect_name="hover ratio", log=True)
    ]


def _sharpening(runs: list[Run]) -> Parts:
    claim = "progressive sharpening: λ₁ rises before reaching the edge"
    statistic = (
        "per run, λ₁ at the edge (first stability ≥ "
        f"{EDGE_REACHED:g}; the peak when never reached) / λ₁ at the first measurement; "
        "one-sided t on the log ratio over runs"
    )
    crit = Criterion(GREATER, SHARPENING_FACTOR, min_n=MIN_UNITS, null_value=1.0)
    valid, excluded = _valid(runs, _has(M.STABILITY, M.lambda_key(1)))
    if not valid:
        return [not_applicable(claim, statistic, crit, "runs with λ₁ and stability", unit="runs")]
    values = []
    for r in valid:
        lam = series(r, M.lambda_key(1))
        e = edge_of(series(r, M.STABILITY))  # type: ignore[arg-type]
        if lam is None or e is None or len(lam) < 2 or not lam.iloc[0] > 0:
            excluded.append(Excluded(r.name, "no positive λ₁ at the start"))
            continue
        at = lam[lam.index <= e.step]
        values.append(float(at.iloc[-1] / lam.iloc[0]))
    return [
        _one_sample(
            claim, statistic, values, crit, excluded, effect_name="sharpening ratio", log=True
        )
    ]


def _loss_parts(runs: list[Run]) -> Parts:
    fall_claim = "the loss keeps falling at the edge of stability"
    fall_stat = (
        "per run, from the edge to the end: mean loss over the last fifth / over the first fifth "
        "(the full-batch loss under GD); one-sided t on the log ratio over runs"
    )
    rise_claim = "... non-monotonically (the loss rises at some steps)"
    rise_stat = (
        "per run, the share of the steps from the edge to the end with L(θ_{t+1}) > L(θ_t); "
        "one-sided t over runs"
    )
    fall_crit = Criterion(LESS, LOSS_FALL_RATIO, min_n=MIN_UNITS, null_value=1.0)
    rise_crit = Criterion(GREATER, LOSS_RISE_SHARE, min_n=MIN_UNITS, null_value=0.0)
    edges, excluded = _edges(runs, M.STABILITY)
    falls, rises = [], []
    for r, e in edges:
        w = _loss_after(r, e.step) if e.reached else None
        if w is None:
            excluded.append(Excluded(r.name, "never at the edge, or < 5 losses after it"))
            continue
        k = max(1, len(w) // 5)
        falls.append(float(w[-k:].mean() / w[:k].mean()))
        rises.append(float(np.mean(np.diff(w) > 0)))
    if not edges:
        needs = "runs with the sharpness probe (stability) and batch_loss"
        return [
            not_applicable(fall_claim, fall_stat, fall_crit, needs, unit="runs"),
            not_applicable(rise_claim, rise_stat, rise_crit, needs, unit="runs"),
        ]
    return [
        _one_sample(
            fall_claim, fall_stat, falls, fall_crit, excluded, effect_name="loss ratio", log=True
        ),
        _one_sample(
            rise_claim, rise_stat, rises, rise_crit, excluded, effect_name="rising share", log=False
        ),
    ]


def _gd_runs(runs: list[Run]) -> list[Run]:
    return [r for r in runs if optim_name(r) == "sgd" and batch_value(r) == math.inf]


def _adam_runs(runs: list[Run]) -> list[Run]:
    return [r for r in runs if optim_name(r) in ("adam", "adamw")]


def _eos_gd_sharpening(runs: list[Run]) -> Parts:
    return _sharpening(_gd_runs(runs))


def _eos_gd_hovers(runs: list[Run]) -> Parts:
    return _hover_part(_gd_runs(runs), "η λ₁ / 2", "2/η")


def _eos_gd_loss(runs: list[Run]) -> Parts:
    return _loss_parts(_gd_runs(runs))


def _eos_adam_hovers(runs: list[Run]) -> Parts:
    return _hover_part(
        _adam_runs(runs), "the preconditioned sharpness λ₁(P⁻¹ᐟ²HP⁻¹ᐟ²)", "(2 + 2β₁)/((1 − β₁)η)"
    )


# =========================================================================== eoss-sgd
def _sgd_minibatch(runs: list[Run]) -> list[Run]:
    return [r for r in runs if optim_name(r) == "sgd" and batch_value(r) < math.inf]


def _eoss_bs(runs: list[Run]) -> Parts:
    claim = "batch sharpness hovers at 2/η under SGD (smallest batch size)"
    statistic = (
        f"per run of the smallest S, the median of η·BS/2 over its last {LATE_FRACTION:.0%} of "
        "measurements; TOST on the log ratio over runs"
    )
    crit = Criterion(EQUIVALENT, BS_BOUNDS, min_n=MIN_UNITS)
    sgd = _sgd_minibatch(runs)
    valid, excluded = _valid(sgd, _has(M.BATCH_SHARPNESS_STABILITY))
    if not valid:
        return [
            not_applicable(claim, statistic, crit, "SGD runs with batch_sharpness", unit="runs")
        ]
    smallest = min(batch_value(r) for r in valid)
    values = [
        _late_median(series(r, M.BATCH_SHARPNESS_STABILITY))  # type: ignore[arg-type]
        for r in valid
        if batch_value(r) == smallest
    ]
    return [_one_sample(claim, statistic, values, crit, excluded, effect_name="η·BS/2", log=True)]


def _lambda_peaks(runs: list[Run]) -> tuple[list[tuple[Run, float]], list[Excluded]]:
    valid, excluded = _valid(_sgd_minibatch(runs), _has(M.STABILITY))
    out = []
    for r in valid:
        p = _peak_running_median(series(r, M.STABILITY))  # type: ignore[arg-type]
        if math.isfinite(p) and p > 0:
            out.append((r, p))
        else:
            excluded.append(Excluded(r.name, "fewer than 3 finite stability values"))
    return out, excluded


def _eoss_lambda_below(runs: list[Run]) -> Parts:
    claim = "λ_max stays below 2/η (smallest batch size)"
    statistic = (
        "per run of the smallest S, the peak of the 3-point running median of η λ₁/2; "
        "one-sided t on the log ratio over runs"
    )
    crit = Criterion(LESS, LAMBDA_BELOW, min_n=MIN_UNITS, null_value=1.0)
    peaks, excluded = _lambda_peaks(runs)
    if not peaks:
        return [not_applicable(claim, statistic, crit, "SGD runs with the sharpness probe")]
    smallest = min(batch_value(r) for r, _ in peaks)
    values = [p for r, p in peaks if batch_value(r) == smallest]
    return [
        _one_sample(claim, statistic, values, crit, excluded, effect_name="peak η λ₁/2", log=True)
    ]


def _eoss_batch_trend(runs: list[Run]) -> Parts:
    claim = "λ_max is further below 2/η for smaller batches"
    statistic = (
        "per seed, the OLS slope of ln(peak η λ₁/2) on ln S over the batch sizes; one-sided t "
        "over seeds"
    )
    crit = Criterion(GREATER, BATCH_SLOPE, min_n=MIN_UNITS)
    peaks, excluded = _lambda_peaks(runs)
    if len({batch_value(r) for r, _ in peaks}) < 2:
        return [
            not_applicable(
                claim, statistic, crit, "SGD runs at ≥ 2 batch sizes with the sharpness probe"
            )
        ]
    x = [batch_value(r) for r, _ in peaks]
    y = [p for _, p in peaks]
    block = [r.config.get("seed") for r, _ in peaks]
    res = trend_test(
        x, y, block, crit, x_scale="log", y_scale="log", x_name="S", y_name="peak η λ₁/2"
    )
    return [assess(claim, statistic, res, excluded=excluded)]


# =========================================================================== dom-bulk
def _final(run: Run, name: str) -> float:
    s = series(run, name)
    if s is None or len(s) == 0:
        return math.nan
    return float(s.iloc[-1])


def _first(run: Run, name: str) -> float:
    s = series(run, name)
    if s is None or len(s) == 0:
        return math.nan
    return float(s.iloc[0])


def _projected_groups(
    runs: list[Run],
) -> tuple[dict[Any, dict[str, Run]], list[Excluded]]:
    """Per seed: the plain SGD run and the top-only (Dom) / remove-top (Bulk) runs."""
    valid, excluded = _valid(runs, _has(M.TRAIN_LOSS))
    groups: dict[Any, dict[str, Run]] = {}
    for r in valid:
        name = optim_name(r)
        if name == "sgd":
            kind = "sgd"
        elif name == "projected_sgd":
            kind = {"top_only": "dom", "remove_top": "bulk"}.get(
                str(optim_option(r, "mode") or "top_only"), ""
            )
            if optim_option(r, "subspace") == "random":
                kind = ""
        else:
            kind = ""
        if kind:
            groups.setdefault(r.config.get("seed"), {})[kind] = r
    return groups, excluded


def _decrease_shares(runs: list[Run], kind: str) -> tuple[list[float], list[Excluded]]:
    """Per seed: (L₀ − L_end) of the ``kind`` run / (L₀ − L_end) of the SGD run (train loss at
    the first and last evaluation)."""
    groups, excluded = _projected_groups(runs)
    values = []
    for g in groups.values():
        if "sgd" in g and kind in g:
            drop_sgd = _first(g["sgd"], M.TRAIN_LOSS) - _final(g["sgd"], M.TRAIN_LOSS)
            drop = _first(g[kind], M.TRAIN_LOSS) - _final(g[kind], M.TRAIN_LOSS)
            if drop_sgd > 0:
                values.append(drop / drop_sgd)
    return values, excluded


_SHARE_STAT = (
    "per seed, (L₀ − L_end) of {who} / (L₀ − L_end) of SGD, train loss at the first and last "
    "evaluation; {test} over seeds"
)


def _dom_stalls(runs: list[Run]) -> Parts:
    claim = "SGD restricted to the dominant (top-k) subspace barely decreases the loss"
    statistic = _SHARE_STAT.format(who="Dom-SGD", test="one-sided t")
    crit = Criterion(LESS, DOM_SHARE, min_n=MIN_UNITS, null_value=1.0)
    values, excluded = _decrease_shares(runs, "dom")
    if not values:
        return [
            not_applicable(
                claim, statistic, crit, "seeds with an SGD and a projected_sgd top_only run"
            )
        ]
    name = "share of SGD's decrease"
    return [
        _one_sample(
            claim, statistic, values, crit, excluded, effect_name=name, log=False, unit="seeds"
        )
    ]


def _bulk_matches(runs: list[Run]) -> Parts:
    claim = "SGD restricted to the bulk (the complement) decreases the loss as well as SGD"
    statistic = _SHARE_STAT.format(who="Bulk-SGD", test="TOST on the log share")
    crit = Criterion(EQUIVALENT, BULK_BOUNDS, min_n=MIN_UNITS)
    values, excluded = _decrease_shares(runs, "bulk")
    if not values:
        return [
            not_applicable(
                claim, statistic, crit, "seeds with an SGD and a projected_sgd remove_top run"
            )
        ]
    name = "share of SGD's decrease"
    return [
        _one_sample(
            claim, statistic, values, crit, excluded, effect_name=name, log=True, unit="seeds"
        )
    ]


# =========================================================================== the rules
BEYOND_RULES: tuple[BeyondRule, ...] = (
    BeyondRule(
        "beyond.eos_gd.sharpening",
        PAPER,
        "eos-gd",
        "Under full-batch GD, λ_max rises (progressive sharpening) until it reaches 2/η "
        "(Cohen et al. 2021).",
        f"λ₁ where η λ₁/2 first reaches {EDGE_REACHED:g} is ≥ {SHARPENING_FACTOR:g}× λ₁ at the "
        "first measurement, over runs (one-sided t, α = 0.05, ≥ 3 runs)",
        "sweep",
        "GD runs (batch_size: full, optim sgd) with the sharpness probe",
        _eos_gd_sharpening,
    ),
    BeyondRule(
        "beyond.eos_gd.hovers",
        PAPER,
        "eos-gd",
        "... then λ_max hovers at 2/η (the edge of stability; Cohen et al. 2021).",
        f"median η λ₁/2 over the {HOVER_FRACTION:.0%} of measurements from the edge within "
        f"[{HOVER_BOUNDS[0]:g}, {HOVER_BOUNDS[1]:g}] (TOST over runs, α = 0.05, ≥ 3 runs)",
        "sweep",
        "GD runs with the sharpness probe",
        _eos_gd_hovers,
    ),
    BeyondRule(
        "beyond.eos_gd.loss",
        PAPER,
        "eos-gd",
        "... while the loss keeps decreasing, non-monotonically (Cohen et al. 2021).",
        f"from the edge to the end, late / early mean loss ≤ {LOSS_FALL_RATIO:g} and at least "
        f"{LOSS_RISE_SHARE:.0%} of the steps raise the loss (one-sided t over runs each)",
        "sweep",
        "GD runs with the sharpness probe (the Trainer stores batch_loss at every step)",
        _eos_gd_loss,
    ),
    BeyondRule(
        "beyond.eoss_sgd.batch_sharpness",
        PAPER,
        "eoss-sgd",
        "Under mini-batch SGD, batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] hovers at 2/η "
        "(Andreyev & Beneventano 2024).",
        f"late median η·BS/2 of the smallest-batch runs within [{BS_BOUNDS[0]:g}, "
        f"{BS_BOUNDS[1]:g}] (TOST over runs, α = 0.05, ≥ 3 runs)",
        "sweep",
        "SGD runs with the batch_sharpness probe",
        _eoss_bs,
    ),
    BeyondRule(
        "beyond.eoss_sgd.lambda_below",
        PAPER,
        "eoss-sgd",
        "... while λ_max stays below 2/η (Andreyev & Beneventano 2024).",
        f"peak running-median η λ₁/2 of the smallest-batch runs ≤ {LAMBDA_BELOW:g} (one-sided "
        "t over runs, α = 0.05, ≥ 3 runs)",
        "sweep",
        "SGD runs with the sharpness probe",
        _eoss_lambda_below,
    ),
    BeyondRule(
        "beyond.eoss_sgd.smaller_batches",
        PAPER,
        "eoss-sgd",
        "... the more so, the smaller the batch (Andreyev & Beneventano 2024).",
        f"slope of ln(peak η λ₁/2) on ln S ≥ {BATCH_SLOPE:g} (one-sided t over seeds, α = 0.05, "
        "≥ 3 seeds)",
        "sweep",
        "SGD runs at ≥ 2 batch sizes and ≥ 3 seeds with the sharpness probe",
        _eoss_batch_trend,
    ),
    BeyondRule(
        "beyond.eos_adam.hovers",
        PAPER,
        "eos-adam",
        "Under full-batch Adam, the preconditioned sharpness λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) rises to and "
        "hovers at (2 + 2β₁)/((1 − β₁)η) = 38/η (Cohen et al. 2022).",
        f"median preconditioned stability ratio over the {HOVER_FRACTION:.0%} of measurements "
        f"from the edge within [{HOVER_BOUNDS[0]:g}, {HOVER_BOUNDS[1]:g}] (TOST over runs)",
        "sweep",
        "Adam runs with the sharpness probe (preconditioned sharpness)",
        _eos_adam_hovers,
    ),
    BeyondRule(
        "beyond.dom_bulk.dom_stalls",
        PAPER,
        "dom-bulk",
        "SGD projected on the dominant top-k Hessian subspace (Dom-SGD; paper A's top-only SGD) "
        "fails to decrease the training loss (Song, Ahn & Yun 2024).",
        f"Dom-SGD's train-loss decrease ≤ {DOM_SHARE:.0%} of SGD's, paired by seed (one-sided t "
        "over seeds, α = 0.05, ≥ 3 seeds)",
        "sweep",
        "seeds with sgd and projected_sgd (mode top_only) runs",
        _dom_stalls,
    ),
    BeyondRule(
        "beyond.dom_bulk.bulk_matches",
        PAPER,
        "dom-bulk",
        "SGD projected on the bulk, the complement of the top-k subspace (Bulk-SGD; paper A's "
        "remove-top SGD), decreases the loss as well as SGD (Song, Ahn & Yun 2024).",
        f"Bulk-SGD's train-loss decrease within [{BULK_BOUNDS[0]:g}, {BULK_BOUNDS[1]:g}]× SGD's, "
        "paired by seed (TOST over seeds, α = 0.05, ≥ 3 seeds)",
        "sweep",
        "seeds with sgd and projected_sgd (mode remove_top) runs",
        _bulk_matches,
    ),
)


def judge_beyond(target: Any, *, recipe: str | None = None) -> list[BeyondFinding]:
    """Every rule (or those of one recipe) judged on a run, a sweep or a directory."""
    runs = list(as_sweep(target).runs)
    return [r.evaluate(runs) for r in BEYOND_RULES if recipe is None or r.recipe == recipe]
