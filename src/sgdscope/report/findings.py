"""The papers' findings as explicit, testable rules, judged on a run or a sweep.

Each :class:`Rule` holds the paper, the finding as the paper states it, the rule used written in
words, and a check from a run or sweep to ``(numbers, verdict)``. The verdict is
``"reproduced"``, ``"not reproduced"`` or ``"not applicable"`` (the needed metrics or runs are
absent). Thresholds are module constants, named and documented here, so a reader can see — and
change — exactly what "reproduced" means.

Rules of scope ``"run"`` judged on a sweep are applied to each run; the sweep reproduces the
finding when at least half of the runs where it applies do. Rules of scope ``"sweep"`` compare
runs, so they are not applicable to a single run.

Trends across a sweep are Spearman rank correlations computed within groups of runs that share
every other grid value (seeds averaged first), then averaged over groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics as M
from ..store import Run, summarize_run
from ._data import (
    BATCH_KEY,
    LR_KEY,
    array_or_none,
    is_gd,
    is_sweep,
    lambda1,
    open_target,
    optim_name,
    optim_option,
    series,
    sgd_runs,
    total_steps,
    trend,
)

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_APPLICABLE = "not applicable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_APPLICABLE)

# ---- thresholds (the "sensible choices"; each appears in its rule's text)
#: λ₁ "early": measurements in the first 30% of the run's steps.
EARLY_FRACTION = 0.3
#: λ₁ "rises": the early maximum is at least 1.5× the first measurement.
LAMBDA_RISE = 1.5
#: λ₁ "then stabilises or decays": later values never exceed 1.25× the early maximum.
LAMBDA_LATE_GROWTH = 1.25
#: Fewest λ₁ measurements for the peak rule.
MIN_LAMBDA_POINTS = 3
#: "Far more aligned than random": mean top-1 alignment ≥ 3× the random direction's.
ALIGNMENT_FACTOR = 3.0
#: "Most of training": at least half of the interpolation curves.
MOST = 0.5
#: A curve is "roughly convex" when every second difference ≥ −5% of the curve's range.
CONVEX_TOL = 0.05
#: "Almost no barriers early": at most 10% of the first walk epoch's steps cross one.
EARLY_BARRIER_SHARE = 0.10
#: "η barely changes the cosine": mean cos varies by at most 0.1 across η (S fixed).
COS_LR_MAX_SPREAD = 0.1
#: "GD's cosine is near −1": median cos(g_t, g_{t+1}) over the second half ≤ −0.7.
GD_COSINE_MAX = -0.7
#: "Top-only flatter / remove-top sharper": final λ₁ ratios beyond 10% either way.
PROJECTED_MARGIN = 1.1
#: "NSGD γ < 1 an order of magnitude sharper": final λ₁ ≥ 5× the γ = 1 / SGD baseline...
NSGD_SHARPER = 5.0
#: ... "with similar test accuracy": within 3 percentage points.
NSGD_ACC_TOL = 0.03

Numbers = dict[str, Any]
Check = Callable[[Any], tuple[Numbers, str]]


@dataclass(frozen=True)
class Finding:
    """The verdict of one rule on one run or sweep."""

    id: str
    paper: str
    statement: str
    rule: str
    numbers: Numbers
    verdict: str

    @property
    def applicable(self) -> bool:
        return self.verdict != NOT_APPLICABLE


@dataclass(frozen=True)
class Rule:
    """One finding of a paper and how sgdscope tests it.

    Attributes:
        id: short stable name (``"A.lambda_peak"``).
        paper: ``"A"`` (sharpest directions) or ``"B"`` (walk with SGD).
        statement: the finding, as the paper states it.
        rule: the test, in words, with its thresholds.
        scope: ``"run"`` (judged per run) or ``"sweep"`` (compares runs).
        check: target → (numbers, verdict).
    """

    id: str
    paper: str
    statement: str
    rule: str
    scope: str
    check: Check = field(repr=False)

    def evaluate(self, target: Any) -> Finding:
        """Judge ``target`` (a :class:`Run` or a sweep)."""
        if is_sweep(target):
            if self.scope == "sweep":
                numbers, verdict = self.check(target)
            else:
                numbers, verdict = _per_run(self.check, list(target.runs))
        elif self.scope == "sweep":
            numbers, verdict = {"needs": "a sweep (several runs)"}, NOT_APPLICABLE
        else:
            numbers, verdict = self.check(target)
        assert verdict in VERDICTS, verdict
        return Finding(self.id, self.paper, self.statement, self.rule, numbers, verdict)


def _per_run(check: Check, runs: list[Run]) -> tuple[Numbers, str]:
    verdicts = [check(r)[1] for r in runs]
    applicable = [v for v in verdicts if v != NOT_APPLICABLE]
    if not applicable:
        return {"runs": len(runs), "runs applicable": 0}, NOT_APPLICABLE
    ok = sum(v == REPRODUCED for v in applicable)
    numbers = {"runs applicable": len(applicable), "runs reproduced": ok}
    return numbers, REPRODUCED if ok >= MOST * len(applicable) else NOT_REPRODUCED


def _verdict(ok: bool) -> str:
    return REPRODUCED if ok else NOT_REPRODUCED


def _na(needs: str) -> tuple[Numbers, str]:
    return {"needs": needs}, NOT_APPLICABLE


# --------------------------------------------------------------------------- paper A
def _lambda_peak(run: Run) -> tuple[Numbers, str]:
    lam = lambda1(run)
    if lam is None or len(lam) < MIN_LAMBDA_POINTS:
        return _na(f"λ₁ measured at ≥ {MIN_LAMBDA_POINTS} steps (sharpness probe)")
    cut = EARLY_FRACTION * max(total_steps(run), int(lam.index.max()))
    early, late = lam[lam.index <= cut], lam[lam.index > cut]
    if len(early) < 2 or late.empty:
        return _na(f"λ₁ measured both in the first {EARLY_FRACTION:.0%} of steps and after")
    first = float(lam.iloc[0])
    early_max = float(early.max())
    late_max = float(late.max())
    numbers = {
        "λ₁ at first measurement": first,
        "early max λ₁": early_max,
        "early max step": int(early.idxmax()),
        "later max λ₁": late_max,
        "final λ₁": float(lam.iloc[-1]),
        "rise (early max / first)": early_max / first if first > 0 else math.inf,
    }
    ok = early_max >= LAMBDA_RISE * first and late_max <= LAMBDA_LATE_GROWTH * early_max
    return numbers, _verdict(ok)


def _trend_rule(
    frame: pd.DataFrame, keys: list[str], y: str, want: dict[str, int]
) -> tuple[Numbers, str]:
    """Each varied key in ``want`` must give ρ with the wanted sign (+1 / −1)."""
    numbers: Numbers = {}
    oks = []
    for x, sign in want.items():
        tr = trend(frame, x, y, keys)
        if tr is None:
            continue
        name = "η" if x == LR_KEY else "S" if x == BATCH_KEY else x
        numbers[f"ρ({name}, {_Y_LABELS.get(y, y)})"] = round(tr.rho, 3)
        numbers[f"groups over {name}"] = tr.groups
        oks.append(tr.rho * sign > 0)
    if not oks:
        measured = _Y_LABELS.get(y, y)
        return _na(f"a sweep over {' or '.join(_key_names(want))} with {measured} measured")
    return numbers, _verdict(all(oks))


_Y_LABELS = {
    "peak_lambda_1": "peak λ₁",
    "peak_lambda_1_step": "peak step",
    "mean_height": "mean height",
    "mean_grad_cosine": "mean cos",
    "final_distance": "final ‖θ − θ₀‖",
}


def _key_names(want: dict[str, int]) -> list[str]:
    return ["η" if x == LR_KEY else "S" if x == BATCH_KEY else x for x in want]


def _sgd_frame(sweep: Any) -> tuple[pd.DataFrame, list[str]]:
    """The sweep's SGD runs (:func:`~sgdscope.report._data.sgd_runs`, the same runs as the
    figures): η / S trends are about SGD, not its variants."""
    selection = sgd_runs(sweep)
    return selection.frame, selection.keys


def _peak_lower(sweep: Any) -> tuple[Numbers, str]:
    frame, keys = _sgd_frame(sweep)
    return _trend_rule(frame, keys, "peak_lambda_1", {LR_KEY: -1, BATCH_KEY: +1})


def _peak_earlier(sweep: Any) -> tuple[Numbers, str]:
    frame, keys = _sgd_frame(sweep)
    return _trend_rule(frame, keys, "peak_lambda_1_step", {LR_KEY: -1, BATCH_KEY: +1})


def _alignment(run: Run) -> tuple[Numbers, str]:
    top = series(run, M.alignment_key(1))
    rnd = series(run, M.ALIGNMENT_RANDOM)
    if top is None or rnd is None:
        return _na("alignment probe with random_baseline (alignment_1, alignment_random)")
    a, r = float(top.mean()), float(rnd.mean())
    numbers = {
        "mean |cos(g, e₁)|": a,
        "mean |cos(g, random)|": r,
        "ratio": a / r if r > 0 else math.inf,
    }
    m5 = series(run, M.ALIGNMENT_MEAN5)
    if m5 is not None:
        numbers["mean |cos(g, e_i)| over top 5"] = float(m5.mean())
    return numbers, _verdict(a >= ALIGNMENT_FACTOR * r)


def _alpha_mean(run: Run, subspace: str | int, alpha: float) -> float | None:
    s = series(run, M.alpha_test_key(subspace, alpha))
    return None if s is None else float(s.mean())


def _alpha_test(run: Run) -> tuple[Numbers, str]:
    d = {a: _alpha_mean(run, 1, a) for a in (0.5, 1.0, 2.0)}
    if any(v is None for v in d.values()):
        return _na("step_scale probe with k=1 and α ∈ {0.5, 1, 2}")
    numbers: Numbers = {f"ΔL({a:g}) k=1": v for a, v in d.items()}
    for a in (0.5, 1.0, 2.0):
        for k in (5, "random"):
            v = _alpha_mean(run, k, a)
            if v is not None:
                numbers[f"ΔL({a:g}) {'k=5' if k == 5 else k}"] = v
    ok = d[0.5] < d[1.0] and d[2.0] > 0  # type: ignore[operator]
    return numbers, _verdict(ok)


def _mean_final_lambda(runs: list[Run]) -> float:
    vals = [summarize_run(r)["final_lambda_1"] for r in runs]
    vals = [v for v in vals if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def _projected(sweep: Any) -> tuple[Numbers, str]:
    runs = list(sweep.runs)
    top = [
        r
        for r in runs
        if optim_name(r) == "projected_sgd"
        and (optim_option(r, "mode") or "top_only") == "top_only"
    ]
    rem = [
        r
        for r in runs
        if optim_name(r) == "projected_sgd" and optim_option(r, "mode") == "remove_top"
    ]
    base = [r for r in runs if optim_name(r) == "sgd"]
    lt, lr_, lb = _mean_final_lambda(top), _mean_final_lambda(rem), _mean_final_lambda(base)
    if not (math.isfinite(lt) and math.isfinite(lr_)):
        return _na("top-only and remove-top runs (optim.name=projected_sgd) with λ₁ measured")
    numbers: Numbers = {"final λ₁ top-only": lt, "final λ₁ remove-top": lr_}
    if math.isfinite(lb):
        numbers["final λ₁ SGD"] = lb
        ok = lt * PROJECTED_MARGIN <= lb <= lr_ / PROJECTED_MARGIN
    else:
        ok = lt * PROJECTED_MARGIN <= lr_
    return numbers, _verdict(ok)


def _acc(run: Run) -> float:
    m = summarize_run(run)
    return m["final_test_acc"] if math.isfinite(m["final_test_acc"]) else m["final_val_acc"]


def _nsgd(sweep: Any) -> tuple[Numbers, str]:
    runs = list(sweep.runs)

    def gamma(r: Run) -> float:
        g = optim_option(r, "gamma")
        return float(g) if g is not None else math.nan

    nudged = [r for r in runs if optim_name(r) == "nsgd" and gamma(r) < 1]
    base = [
        r for r in runs if optim_name(r) == "sgd" or (optim_name(r) == "nsgd" and gamma(r) == 1)
    ]
    if not nudged or not base:
        return _na("NSGD runs with γ < 1 and a γ = 1 or SGD baseline")
    g_min = min(gamma(r) for r in nudged)
    sharp = [r for r in nudged if gamma(r) == g_min]
    ln, lb = _mean_final_lambda(sharp), _mean_final_lambda(base)
    an = float(np.nanmean([_acc(r) for r in sharp]))
    ab = float(np.nanmean([_acc(r) for r in base]))
    if not (math.isfinite(ln) and math.isfinite(lb) and lb > 0):
        return _na("λ₁ measured in the NSGD and baseline runs")
    numbers = {
        "γ": g_min,
        f"final λ₁ NSGD γ={g_min:g}": ln,
        "final λ₁ baseline": lb,
        "ratio": ln / lb,
        "test acc NSGD": an,
        "test acc baseline": ab,
    }
    ok = ln >= NSGD_SHARPER * lb and abs(an - ab) <= NSGD_ACC_TOL
    return numbers, _verdict(ok)


# --------------------------------------------------------------------------- paper B
def _convex_share(curves: np.ndarray) -> float:
    ok = 0
    for y in curves:
        y = np.asarray(y, dtype=float)
        rng = float(np.ptp(y)) if np.all(np.isfinite(y)) else math.nan
        if not math.isfinite(rng):
            continue
        ok += bool(np.all(np.diff(y, 2) >= -CONVEX_TOL * max(rng, 1e-12)))
    return ok / len(curves) if len(curves) else math.nan


def _convex_inside(run: Run) -> tuple[Numbers, str]:
    inside = series(run, M.MINIMUM_INSIDE)
    arr = array_or_none(run, M.INTERP_LOSS)
    if inside is None or arr is None:
        return _na("walk probe (interp_loss, minimum_inside)")
    share_inside = float(inside.mean())
    share_convex = _convex_share(arr[1])
    numbers = {
        "curves": len(inside),
        "share with a minimum inside": share_inside,
        "share roughly convex": share_convex,
    }
    return numbers, _verdict(share_inside >= MOST and share_convex >= MOST)


def _early_barriers(run: Run) -> tuple[Numbers, str]:
    df = run.scalars[run.scalars.name == M.BARRIER]
    if df.empty:
        return _na("walk probe (barrier)")
    first = int(df.epoch.min())
    ep = df[df.epoch == first]
    barriers, steps = int(ep.value.sum()), len(ep)
    numbers = {
        "epoch (first walked)": first + 1,
        "barriers": barriers,
        "walk steps": steps,
        "share": barriers / steps,
    }
    return numbers, _verdict(barriers <= EARLY_BARRIER_SHARE * steps)


def _height_vs_lr(sweep: Any) -> tuple[Numbers, str]:
    frame, keys = _sgd_frame(sweep)
    return _trend_rule(frame, keys, "mean_height", {LR_KEY: +1})


def _cos_vs_s(sweep: Any) -> tuple[Numbers, str]:
    frame, keys = _sgd_frame(sweep)
    return _trend_rule(frame, keys, "mean_grad_cosine", {BATCH_KEY: -1})


def _distance_vs_s(sweep: Any) -> tuple[Numbers, str]:
    frame, keys = _sgd_frame(sweep)
    return _trend_rule(frame, keys, "final_distance", {BATCH_KEY: -1})


def _cos_vs_lr(sweep: Any) -> tuple[Numbers, str]:
    frame, keys = _sgd_frame(sweep)
    tr = trend(frame, LR_KEY, "mean_grad_cosine", keys)
    if tr is None:
        return _na("a sweep over η with grad_cosine measured")
    numbers = {
        "mean range of mean cos across η": round(tr.spread, 4),
        "ρ(η, cos)": tr.rho,
        "groups over η": tr.groups,
    }
    return numbers, _verdict(tr.spread <= COS_LR_MAX_SPREAD)


def _gd_cosine(run: Run) -> tuple[Numbers, str]:
    if not is_gd(run):
        return _na("a full-batch GD run (train.batch_size=full, optim.name=sgd)")
    cos = series(run, M.GRAD_COSINE)
    if cos is None:
        return _na("grad_cosine probe")
    half = cos[cos.index >= cos.index.max() / 2]
    med = float(half.median())
    return {"median cos, second half": med, "steps": len(half)}, _verdict(med <= GD_COSINE_MAX)


def _noisy_gd(sweep: Any) -> tuple[Numbers, str]:
    runs = list(sweep.runs)
    gd = [summarize_run(r) for r in runs if is_gd(r)]
    noisy = [summarize_run(r) for r in runs if optim_name(r) == "noisy_gd"]
    if not gd or not noisy:
        return _na("a GD run and a GD + isotropic noise run (optim.name=noisy_gd)")

    def avg(ms: list[dict[str, float]], key: str) -> float:
        v = [m[key] for m in ms if math.isfinite(m[key])]
        return float(np.mean(v)) if v else math.nan

    acc_key = "final_test_acc" if math.isfinite(avg(gd, "final_test_acc")) else "final_val_acc"
    numbers = {}
    for label, key in (
        ("train loss", "final_train_loss"),
        ("accuracy", acc_key),
        ("‖θ‖", "final_param_norm"),
    ):
        numbers[f"GD {label}"] = avg(gd, key)
        numbers[f"noisy {label}"] = avg(noisy, key)
    if any(not math.isfinite(v) for v in numbers.values()):
        return _na("final train_loss, accuracy and param_norm in both runs")
    ok = (
        numbers["noisy train loss"] > numbers["GD train loss"]
        and numbers["noisy accuracy"] < numbers["GD accuracy"]
        and numbers["noisy ‖θ‖"] > numbers["GD ‖θ‖"]
    )
    numbers["accuracy split"] = acc_key.removeprefix("final_").removesuffix("_acc")
    return numbers, _verdict(ok)


# --------------------------------------------------------------------------- the rules
RULES: tuple[Rule, ...] = (
    Rule(
        "A.lambda_peak",
        "A",
        "λ₁ rises fast early in training, peaks, then stabilises or decays.",
        f"max λ₁ over the measurements in the first {EARLY_FRACTION:.0%} of steps ≥ "
        f"{LAMBDA_RISE}× λ₁ at the first measurement, and no later λ₁ exceeds "
        f"{LAMBDA_LATE_GROWTH}× that early maximum.",
        "run",
        _lambda_peak,
    ),
    Rule(
        "A.peak_lower",
        "A",
        "The λ₁ peak is lower for larger η and for smaller S.",
        "Across plain-SGD runs (seeds averaged, other grid values fixed): Spearman ρ(η, peak "
        "λ₁) < 0 when η varies and ρ(S, peak λ₁) > 0 when S varies (full batch ranks largest).",
        "sweep",
        _peak_lower,
    ),
    Rule(
        "A.peak_earlier",
        "A",
        "The λ₁ peak comes earlier for larger η and for smaller S.",
        "As A.peak_lower with the step of the peak: ρ(η, peak step) < 0 and ρ(S, peak step) > 0.",
        "sweep",
        _peak_earlier,
    ),
    Rule(
        "A.alignment",
        "A",
        "Mini-batch gradients are far more aligned with the top Hessian eigenvectors than a "
        "random vector.",
        f"mean over steps of |cos(g_t, e₁)| ≥ {ALIGNMENT_FACTOR:g}× the mean |cos(g_t, r)| for "
        "a random Gaussian direction r.",
        "run",
        _alignment,
    ),
    Rule(
        "A.alpha_test",
        "A",
        "SGD's step is too large along the sharpest directions: ΔL(0.5) < ΔL(1) and ΔL(2) > 0.",
        "With u₁ the SGD step projected on e₁ and ΔL(α) = L(θ_t + α u₁) − L(θ_t) averaged over "
        "steps: ΔL(0.5) < ΔL(1) and ΔL(2) > 0 (k = 5 and random shown for reference).",
        "run",
        _alpha_test,
    ),
    Rule(
        "A.projected",
        "A",
        "Top-only SGD finds flatter regions, remove-top SGD sharper ones.",
        f"final λ₁ (mean over runs): top-only × {PROJECTED_MARGIN} ≤ SGD ≤ remove-top / "
        f"{PROJECTED_MARGIN} (without SGD runs: top-only × {PROJECTED_MARGIN} ≤ remove-top).",
        "sweep",
        _projected,
    ),
    Rule(
        "A.nsgd",
        "A",
        "Nudged-SGD with γ < 1 ends an order of magnitude sharper, with similar test accuracy.",
        f"for the smallest γ < 1: final λ₁ ≥ {NSGD_SHARPER:g}× the mean final λ₁ of the γ = 1 / "
        f"SGD runs, and test accuracy (else val) within {NSGD_ACC_TOL:.0%} (absolute).",
        "sweep",
        _nsgd,
    ),
    Rule(
        "B.convex_inside",
        "B",
        "The loss interpolated between consecutive iterates is roughly convex, with a minimum "
        "in between, for most of training.",
        f"≥ {MOST:.0%} of interpolation curves have their minimum strictly inside (0 < α* < 1), "
        f"and ≥ {MOST:.0%} are roughly convex (every second difference ≥ −{CONVEX_TOL:.0%} of "
        "the curve's range).",
        "run",
        _convex_inside,
    ),
    Rule(
        "B.early_barriers",
        "B",
        "Almost no barriers are crossed early in training.",
        f"in the first epoch with walk measurements, barriers ≤ {EARLY_BARRIER_SHARE:.0%} of "
        "the walk steps.",
        "run",
        _early_barriers,
    ),
    Rule(
        "B.height_vs_lr",
        "B",
        "A larger learning rate keeps SGD higher above the valley floor.",
        "Across plain-SGD runs: Spearman ρ(η, mean height) > 0 (other grid values fixed, seeds "
        "averaged).",
        "sweep",
        _height_vs_lr,
    ),
    Rule(
        "B.cos_vs_batch",
        "B",
        "A larger batch size makes cos(g_t, g_{t+1}) more negative.",
        "Across plain-SGD runs: Spearman ρ(S, mean cos(g_t, g_{t+1})) < 0 (full batch ranks "
        "largest).",
        "sweep",
        _cos_vs_s,
    ),
    Rule(
        "B.distance_vs_batch",
        "B",
        "A larger batch size gives a smaller distance from initialisation.",
        "Across plain-SGD runs: Spearman ρ(S, final ‖θ − θ₀‖) < 0.",
        "sweep",
        _distance_vs_s,
    ),
    Rule(
        "B.cos_vs_lr",
        "B",
        "The learning rate barely changes cos(g_t, g_{t+1}).",
        f"Across plain-SGD runs with S fixed: the mean cos varies by ≤ {COS_LR_MAX_SPREAD:g} "
        "(max − min) across η.",
        "sweep",
        _cos_vs_lr,
    ),
    Rule(
        "B.gd_cosine",
        "B",
        "For full-batch GD, cos(g_t, g_{t+1}) is near −1.",
        f"median cos(g_t, g_{{t+1}}) over the second half of a GD run ≤ {GD_COSINE_MAX:g}.",
        "run",
        _gd_cosine,
    ),
    Rule(
        "B.noisy_gd",
        "B",
        "GD plus isotropic noise optimises and generalises worse than GD, with a larger "
        "parameter norm.",
        "final train loss of the noisy runs > GD's, final test (else val) accuracy < GD's, and "
        "final ‖θ‖ > GD's (means over runs).",
        "sweep",
        _noisy_gd,
    ),
)


def judge(target: Any) -> list[Finding]:
    """Every rule's verdict on a run, a sweep, or a run / sweep directory path."""
    if isinstance(target, (str, Path)):
        target = open_target(target)
    return [rule.evaluate(target) for rule in RULES]


def format_number(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (float, np.floating)):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"


def numbers_text(numbers: Numbers) -> str:
    return ", ".join(f"{k} = {format_number(v)}" for k, v in numbers.items())


def findings_text(findings: list[Finding], *, include_na: bool = True) -> str:
    """A short plain-text summary of the verdicts, grouped by paper."""
    titles = {
        "A": "Paper A — sharpest directions (Jastrzębski et al. 2019)",
        "B": "Paper B — a walk with SGD (Xing et al. 2018)",
    }
    marks = {REPRODUCED: "✓", NOT_REPRODUCED: "✗", NOT_APPLICABLE: "·"}
    lines = []
    counts = {v: sum(f.verdict == v for f in findings) for v in VERDICTS}
    for paper in sorted({f.paper for f in findings}):
        lines.append(titles.get(paper, f"Paper {paper}"))
        for f in findings:
            if f.paper != paper or (not include_na and not f.applicable):
                continue
            lines.append(f"  {marks[f.verdict]} {f.verdict:<15} {f.statement}")
            if f.applicable:
                lines.append(f"      {numbers_text(f.numbers)}")
    lines.append(
        f"{counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
        f"{counts[NOT_APPLICABLE]} not applicable"
    )
    return "\n".join(lines)
