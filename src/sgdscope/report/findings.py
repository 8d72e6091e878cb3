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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._data import SEED_KEY, FolderSweep
from ._evidence import (
    INSUFFICIENT,
    NOT_APPLICABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    VERDICTS,
    Evidence,
    Excluded,
)
from ._judging import Parts, Target, _as_target, curve_ok
from ._rules_a import (
    _alignment,
    _alpha_test,
    _eigen_overshoot,
    _lambda_peak,
    _nsgd_control,
    _nsgd_flatter,
    _nsgd_sharper,
    _peak_earlier,
    _peak_lower,
    _projected,
)
from ._rules_b import (
    _barriers_later,
    _convex_inside,
    _cos_vs_batch,
    _cos_vs_lr,
    _distance_vs_batch,
    _early_barriers,
    _gd_cosine,
    _height_decreases,
    _height_vs_lr,
    _noisy_gd,
    _schedules,
    _spectral_norm,
)
from ._thresholds import (
    ALIGNMENT_FACTOR,
    ALPHA_TEST_K,
    CONVEX_TOL,
    COS_BATCH_SLOPE,
    COS_LR_MAX_SLOPE,
    DISTANCE_BATCH_SLOPE,
    EARLY_BARRIER_SHARE,
    EARLY_FRACTION,
    EIGEN_OVERSHOOT_SHARE,
    GD_COSINE_MAX,
    HEIGHT_DECAY,
    HEIGHT_LR_SLOPE,
    LAMBDA_LATE_GROWTH,
    LAMBDA_RISE,
    MIN_BATCHES,
    MIN_CURVES,
    MIN_LAMBDA_POINTS,
    MIN_RUNS,
    MIN_SEEDS,
    MIN_SPECTRAL_POINTS,
    MOST,
    NOISY_DISTANCE_RATIO,
    NOISY_LOSS_RATIO,
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
    RUN_UNITS_FROM,
    SCHEDULE_MARGIN,
    SPECTRAL_DECLINE,
    SPECTRAL_RISE,
    SPECTRAL_WINDOW,
    STEP_BATCHES,
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
    "Target",
    "combine",
    "curve_ok",
    "findings_text",
    "judge",
    "judge_per_seed",
    "MIN_SEEDS",
    "MIN_RUNS",
    "RUN_UNITS_FROM",
    "STEP_BATCHES",
    "MIN_BATCHES",
    "EARLY_FRACTION",
    "LAMBDA_RISE",
    "LAMBDA_LATE_GROWTH",
    "MIN_LAMBDA_POINTS",
    "PEAK_LR_SLOPE",
    "PEAK_BATCH_SLOPE",
    "PEAK_STEP_LR_SLOPE",
    "PEAK_STEP_BATCH_SLOPE",
    "ALIGNMENT_FACTOR",
    "ALPHA_TEST_K",
    "PROJECTED_MARGIN",
    "PROJECTED_LOSS_RATIO",
    "NSGD_FACTOR",
    "NSGD_ACC_TOL",
    "NSGD_CONTROL_BAND",
    "PAPER_NSGD",
    "MOST",
    "CONVEX_TOL",
    "MIN_CURVES",
    "EARLY_BARRIER_SHARE",
    "HEIGHT_LR_SLOPE",
    "HEIGHT_DECAY",
    "COS_BATCH_SLOPE",
    "DISTANCE_BATCH_SLOPE",
    "COS_LR_MAX_SLOPE",
    "GD_COSINE_MAX",
    "NOISY_LOSS_RATIO",
    "NOISY_DISTANCE_RATIO",
    "SPECTRAL_WINDOW",
    "MIN_SPECTRAL_POINTS",
    "SPECTRAL_DECLINE",
    "SPECTRAL_RISE",
    "SCHEDULE_MARGIN",
]


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
        "A.eigen_overshoot",
        "A",
        "SGD's step commonly fails to minimise the loss along the sharpest direction: along e₁ "
        "the loss is a bowl whose minimum the step overshoots.",
        "c_min, the grid point of the lowest L(θ_t + c·u₁(t)) (u₁ the SGD step along e₁; paper "
        "A's grid ±{0.25, …, 16} and 0): per run (step batches below "
        f"{RUN_UNITS_FROM} runs) the share of measured steps with 0 < c_min < 1 > "
        f"{EIGEN_OVERSHOOT_SHARE:g}, one-sided t, p ≤ 0.05.",
        "run",
        "the eigen_loss probe (eigen_loss_cmin_e1) on plain-SGD runs",
        _eigen_overshoot,
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


def judge(target: Any, *, min_runs: int = MIN_RUNS) -> list[Finding]:
    """Every rule's verdict on a run, a sweep, or a run / sweep directory path.

    Args:
        target: a :class:`Run`, a sweep object, a list of runs, or a directory.
        min_runs: fewest valid runs for tests whose units are runs (a per-seed view of a sweep
            passes 1: one seed's runs are then judged on their own, trends need seeds anyway).
    """
    t = _as_target(target, min_runs)
    return [rule.evaluate(t) for rule in RULES] + _beyond(t)


def _beyond(t: Any) -> list[Finding]:
    """The findings after both papers (:mod:`sgdscope.report.findings_beyond`), as findings."""
    from .findings_beyond import BEYOND_RULES

    runs = list(t.runs)
    return [rule.evaluate(runs) for rule in BEYOND_RULES]


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


_TITLES = {
    "A": "Paper A — sharpest directions (Jastrzębski et al. 2019)",
    "B": "Paper B — a walk with SGD (Xing et al. 2018)",
    "beyond": "After both papers — edge of stability and the dominant subspace",
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
        shown = [f for f in findings if f.paper == paper and (include_na or f.applicable)]
        if not shown:  # no heading over nothing
            continue
        lines.append(_TITLES.get(paper, f"Paper {paper}"))
        for f in shown:
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
