"""The statistical tests a finding needs, each returning a :class:`StatResult`.

numpy and scipy only. Every test is one-sided in the direction the paper claims (or an
equivalence test for "barely changes" claims) and follows the same conventions:

- **Units of evidence are independent runs** (seeds), never the steps of one run: the steps of a
  run are autocorrelated, and treating them as independent draws makes p-values far too small.
  Per-step quantities are first reduced to one number per run (or, for a single run, to means
  over long contiguous batches of steps).
- **Pre-stated criterion.** A :class:`Criterion` fixes, before the data are seen, the direction,
  the level α (one-sided), the minimum effect and the fewest units. A directional claim is
  supported when ``p ≤ α`` *and* the estimate is at least the minimum effect (statistically and
  practically significant). An equivalence claim is supported when the two one-sided tests
  (TOST) give ``p ≤ α``, i.e. the interval lies inside the stated bounds.
- **Intervals agree with tests.** Intervals are two-sided at level ``1 − 2α`` (90% for
  α = 0.05): the one-sided test at α rejects exactly when the interval excludes the null value,
  and TOST passes exactly when it lies inside the bounds.
- **Calibrated.** Under the null the probability that ``p ≤ α`` is at most α (exactly α for the
  t-tests under normal errors, at most α for the exact binomial and sign-flip tests); the test
  suite checks this on many random draws (``tests/report/test_stats.py``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ..errors import InvalidArgumentError

GREATER = "greater"
LESS = "less"
EQUIVALENT = "equivalent"
ALTERNATIVES = (GREATER, LESS, EQUIVALENT)

#: The default one-sided level of every test.
ALPHA = 0.05
#: ``paired_test(unit="auto")`` uses per-run means from this many runs on (else step batches).
MIN_RUNS_FOR_RUN_MEANS = 3
#: Sign-flip tests enumerate every sign pattern up to this many units (2**16 patterns).
_EXACT_SIGNFLIP_MAX = 16
_MC_DRAWS = 20_000


@dataclass(frozen=True)
class Criterion:
    """A finding's pre-stated threshold: what "reproduced" will mean, fixed before testing.

    Attributes:
        alternative: ``"greater"`` (the effect is above the null value), ``"less"`` or
            ``"equivalent"`` (the effect lies within ``threshold``, a ``(low, high)`` pair).
        threshold: for a directional claim, the minimum effect the estimate must reach (on the
            effect's own scale: a slope, a difference, a ratio, a share); for an equivalence
            claim, the ``(low, high)`` bounds. Defaults to the null value (no minimum).
        alpha: the one-sided level (TOST: each of its two tests).
        min_n: the fewest independent units (seeds, runs, curves) that count as evidence.
        null_value: the effect under the null; ``None`` for the test's natural null (0 for
            slopes and differences, 1 for ratios); proportions need it.
    """

    alternative: str
    threshold: float | tuple[float, float] | None = None
    alpha: float = ALPHA
    min_n: int = 3
    null_value: float | None = None

    def __post_init__(self) -> None:
        if self.alternative not in ALTERNATIVES:
            raise InvalidArgumentError(
                f"Criterion.alternative must be one of {ALTERNATIVES}, got "
                f"{self.alternative!r}: say in which direction the paper's claim points"
            )
        if not 0 < self.alpha < 0.5:
            raise InvalidArgumentError(
                f"Criterion.alpha must be in (0, 0.5), got {self.alpha!r}: use e.g. 0.05"
            )
        if self.min_n < 1:
            raise InvalidArgumentError(f"Criterion.min_n must be ≥ 1, got {self.min_n!r}")
        if self.alternative == EQUIVALENT:
            t = self.threshold
            if not (isinstance(t, Sequence) and len(t) == 2 and t[0] < t[1]):
                raise InvalidArgumentError(
                    "an equivalence Criterion needs threshold=(low, high) with low < high, got "
                    f"{t!r}: give the bounds within which the effect counts as negligible"
                )
        elif isinstance(self.threshold, Sequence):
            raise InvalidArgumentError(
                f"a {self.alternative!r} Criterion takes one minimum effect, got "
                f"{self.threshold!r}: pass a number (or use alternative='equivalent')"
            )

    @property
    def ci_level(self) -> float:
        """The two-sided level of the interval that agrees with the test: ``1 − 2α``."""
        return 1 - 2 * self.alpha

    def resolved(self, natural_null: float) -> Criterion:
        """This criterion with the null value and a missing threshold filled in."""
        null = natural_null if self.null_value is None else self.null_value
        threshold = null if self.threshold is None else self.threshold
        return Criterion(self.alternative, threshold, self.alpha, self.min_n, null)

    def text(self, effect_name: str = "effect", unit: str = "units") -> str:
        """The criterion in words, e.g. ``one-sided p ≤ 0.05 (H0: slope ≥ 0) and slope ≤ −0.25;
        ≥ 3 seeds``."""
        null = _fmt(self.null_value) if self.null_value is not None else "its null value"
        if self.alternative == EQUIVALENT:
            lo, hi = self.threshold  # type: ignore[misc]
            core = (
                f"TOST p ≤ {self.alpha:g}: the {self.ci_level:.0%} interval of {effect_name} "
                f"inside [{_fmt(lo)}, {_fmt(hi)}]"
            )
        else:
            op, nop = ("≥", "≤") if self.alternative == GREATER else ("≤", "≥")
            core = f"one-sided p ≤ {self.alpha:g} (H0: {effect_name} {nop} {null})"
            if self.threshold is not None and self.threshold != self.null_value:
                core += f" and {effect_name} {op} {_fmt(self.threshold)}"  # type: ignore[arg-type]
        return f"{core}; ≥ {self.min_n} valid {unit}"


@dataclass(frozen=True)
class StatResult:
    """What a test found: the statistic, the effect with its interval, the p-value, n.

    ``effect`` and ``ci`` are on the effect's display scale (a ratio for log-scale tests);
    ``statistic`` is the test statistic (t, a count, a mean of signs); ``min_p`` is the smallest
    p-value this design could give at all (a sign-flip test over 3 seeds cannot go below 1/8).
    """

    method: str
    criterion: Criterion
    effect: float
    effect_name: str
    ci: tuple[float, float]
    p_value: float
    statistic: float
    statistic_name: str
    n: int
    unit: str
    min_p: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def null(self) -> str:
        """The null hypothesis in words."""
        c = self.criterion
        if c.alternative == EQUIVALENT:
            lo, hi = c.threshold  # type: ignore[misc]
            return f"{self.effect_name} ≤ {_fmt(lo)} or ≥ {_fmt(hi)}"
        op = "≤" if c.alternative == GREATER else "≥"
        return f"{self.effect_name} {op} {_fmt(c.null_value)}"  # type: ignore[arg-type]

    @property
    def alternative(self) -> str:
        """The alternative hypothesis (the paper's claim) in words."""
        c = self.criterion
        if c.alternative == EQUIVALENT:
            lo, hi = c.threshold  # type: ignore[misc]
            return f"{_fmt(lo)} < {self.effect_name} < {_fmt(hi)}"
        op = ">" if c.alternative == GREATER else "<"
        return f"{self.effect_name} {op} {_fmt(c.null_value)}"  # type: ignore[arg-type]

    @property
    def testable(self) -> bool:
        """A p-value exists and the design can reach α at all."""
        return self.n > 0 and math.isfinite(self.p_value) and self.min_p <= self.criterion.alpha

    @property
    def significant(self) -> bool:
        return self.testable and self.p_value <= self.criterion.alpha

    @property
    def meets_threshold(self) -> bool:
        """The estimate reaches the pre-stated minimum effect (always true for equivalence:
        there the bounds are the test)."""
        c = self.criterion
        if c.alternative == EQUIVALENT:
            return True
        if not math.isfinite(self.effect):
            return False
        t = float(c.threshold)  # type: ignore[arg-type]
        return self.effect >= t if c.alternative == GREATER else self.effect <= t

    @property
    def supports_claim(self) -> bool:
        """Significant and at least the minimum effect: the finding is reproduced."""
        return self.significant and self.meets_threshold

    @property
    def interval_text(self) -> str:
        lo, hi = self.ci
        return f"{self.criterion.ci_level:.0%} CI [{_fmt(lo)}, {_fmt(hi)}]"

    @property
    def text(self) -> str:
        """One line: estimate, interval, statistic, p-value, n and method."""
        sided = "TOST" if self.criterion.alternative == EQUIVALENT else "one-sided"
        return (
            f"{self.effect_name} = {_fmt(self.effect)} ({self.interval_text}), "
            f"{self.statistic_name} = {_fmt(self.statistic)}, {sided} {_fmt_p(self.p_value)}, "
            f"n = {self.n} {self.unit} ({self.method})"
        )


# --------------------------------------------------------------------------- formatting
def _fmt(v: float) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3g}" if v == 0 or 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def _fmt_p(p: float) -> str:
    """``p = 0.012``, ``p < 1e-4`` or ``p = n/a``."""
    if not math.isfinite(p):
        return "p = n/a"
    return "p < 1e-4" if p < 1e-4 else f"p = {p:.2g}"


# --------------------------------------------------------------------------- one sample
def _as_float(values: Iterable[float], what: str) -> np.ndarray:
    v = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if v.ndim != 1:
        raise InvalidArgumentError(f"{what} must be one-dimensional, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InvalidArgumentError(
            f"{what} has {int(np.sum(~np.isfinite(v)))} non-finite values: exclude diverged or "
            "unmeasured runs first (report._evidence.split_valid lists them)"
        )
    return v


def _t_one_sample(v: np.ndarray, c: Criterion) -> tuple[float, float, tuple[float, float]]:
    """(t statistic against the null, p-value, 1 − 2α interval) of the mean of ``v``."""
    n = len(v)
    if n < 2:
        m = float(v[0]) if n else math.nan
        return math.nan, math.nan, (m if n else math.nan, m if n else math.nan)
    m = float(v.mean())
    se = float(v.std(ddof=1)) / math.sqrt(n)
    df = n - 1
    q = float(stats.t.ppf(1 - c.alpha, df))
    ci = (m - q * se, m + q * se)

    def tail(x0: float, upper: bool) -> float:
        # P(T ≥ t) for H0: μ ≤ x0 (upper) or P(T ≤ t) for H0: μ ≥ x0. se = 0: the data decide.
        if se == 0:
            return 0.0 if (m > x0 if upper else m < x0) else 1.0
        t = (m - x0) / se
        return float(stats.t.sf(t, df) if upper else stats.t.cdf(t, df))

    null = float(c.null_value)  # type: ignore[arg-type]
    t_stat = (m - null) / se if se > 0 else math.copysign(math.inf, m - null) if m != null else 0
    if c.alternative == GREATER:
        p = tail(null, upper=True)
    elif c.alternative == LESS:
        p = tail(null, upper=False)
    else:
        lo, hi = c.threshold  # type: ignore[misc]
        p = max(tail(lo, upper=True), tail(hi, upper=False))
    return float(t_stat), p, ci


def _sign_patterns(n: int) -> np.ndarray:
    if n <= _EXACT_SIGNFLIP_MAX:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        return 1.0 - 2.0 * bits  # row 0 is the observed sign pattern (all +1)
    rng = np.random.default_rng(0)
    draws = rng.choice([-1.0, 1.0], size=(_MC_DRAWS, n))
    return np.vstack([np.ones((1, n)), draws])


def _signflip_p(d: np.ndarray, upper: bool) -> float:
    """P(mean of randomly signed d ≥ observed mean) (``upper``) or ≤; exact up to 16 units,
    else Monte Carlo counting the observed pattern (valid, slightly conservative)."""
    signs = _sign_patterns(len(d))
    means = signs @ d / len(d)
    obs = float(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    hits = means >= obs - tol if upper else means <= obs + tol
    return float(hits.mean())


def _one_sample(
    values: np.ndarray,
    c: Criterion,
    *,
    method: str,
    effect_name: str,
    unit: str,
    log: bool = False,
    details: Mapping[str, Any] | None = None,
) -> StatResult:
    """Test the mean of independent unit-level values ``values`` (log scale when ``log``: the
    effect shown is then ``exp(mean)``, a ratio, and the criterion is on that ratio scale)."""
    if method not in ("t", "signflip"):
        raise InvalidArgumentError(f"method must be 't' or 'signflip', got {method!r}")
    c = c.resolved(1.0 if log else 0.0)
    to_test = _log_criterion(c) if log else c
    t_stat, p, ci = _t_one_sample(values, to_test)
    n = len(values)
    min_p = 0.0
    stat_name = "t"
    if method == "signflip" and n >= 1:
        null = float(to_test.null_value)  # type: ignore[arg-type]
        if to_test.alternative == GREATER:
            p = _signflip_p(values - null, upper=True)
        elif to_test.alternative == LESS:
            p = _signflip_p(values - null, upper=False)
        else:
            lo, hi = to_test.threshold  # type: ignore[misc]
            p = max(_signflip_p(values - lo, True), _signflip_p(values - hi, False))
        min_p = 0.5**n if n <= _EXACT_SIGNFLIP_MAX else 1 / (_MC_DRAWS + 1)
        t_stat = float(np.mean(np.sign(values - null))) if n else math.nan
        stat_name = "mean sign"
    m = float(values.mean()) if n else math.nan
    effect = math.exp(m) if log and n else m
    if log:
        ci = (math.exp(ci[0]), math.exp(ci[1])) if n else ci
    label = {"t": f"one-sample t over {unit}", "signflip": f"exact sign-flip over {unit}"}[method]
    if method == "signflip":
        label += f"; {c.ci_level:.0%} t interval"
    return StatResult(
        method=label,
        criterion=c,
        effect=effect,
        effect_name=effect_name,
        ci=(float(ci[0]), float(ci[1])),
        p_value=float(p),
        statistic=float(t_stat),
        statistic_name=stat_name,
        n=n,
        unit=unit,
        min_p=min_p,
        details=dict(details or {}),
    )


def _log_criterion(c: Criterion) -> Criterion:
    """A ratio-scale criterion moved to the log scale the test runs on."""

    def ln(v: float) -> float:
        if v <= 0:
            raise InvalidArgumentError(
                f"a ratio criterion needs positive values, got {v!r}: state ratios (e.g. 5.0 "
                "for 'five times larger')"
            )
        return math.log(v)

    if c.alternative == EQUIVALENT:
        lo, hi = c.threshold  # type: ignore[misc]
        threshold: float | tuple[float, float] = (ln(lo), ln(hi))
    else:
        threshold = ln(float(c.threshold))  # type: ignore[arg-type]
    return Criterion(c.alternative, threshold, c.alpha, c.min_n, ln(float(c.null_value)))  # type: ignore[arg-type]


def one_sample_test(
    values: Iterable[float],
    criterion: Criterion,
    *,
    method: str = "t",
    effect_name: str = "mean",
    unit: str = "seeds",
    log: bool = False,
) -> StatResult:
    """The mean of independent per-unit values (one per seed or run) against the null.

    Null / alternative: ``mean ≤ null`` vs ``mean > null`` (``greater``), the mirror image
    (``less``), or ``|mean − centre|`` outside vs inside the bounds (``equivalent``, TOST).

    Args:
        values: one finite number per independent unit, shape (n,).
        criterion: the pre-stated criterion (null 0, or 1 on the ratio scale when ``log``).
        method: ``"t"`` (Student t; exact under normal errors, df = n − 1) or ``"signflip"``
            (exact randomisation test, assumes only symmetry; cannot reach α = 0.05 below 5
            units, which :attr:`StatResult.min_p` reports).
        effect_name: what the mean is, for the text.
        unit: what one value is (``"seeds"``, ``"runs"``).
        log: test ``ln(values)`` and report the geometric mean as a ratio.
    """
    v = _as_float(values, "values")
    if log:
        v = _log(v, "values")
    return _one_sample(v, criterion, method=method, effect_name=effect_name, unit=unit, log=log)


def _log(v: np.ndarray, what: str) -> np.ndarray:
    if np.any(v <= 0):
        raise InvalidArgumentError(
            f"{what} must be positive on a log scale, got min {float(v.min()):.3g}: use a linear "
            "scale (log=False / y_scale='linear') for signed quantities"
        )
    return np.log(v)


# --------------------------------------------------------------------------- grouping helpers
def _codes(labels: Iterable[Hashable]) -> tuple[np.ndarray, list[Hashable]]:
    """Integer codes of arbitrary hashable labels, in first-seen order."""
    index: dict[Hashable, int] = {}
    codes = [index.setdefault(_key(b), len(index)) for b in labels]
    return np.asarray(codes, dtype=np.int64), list(index)


def _key(v: Any) -> Hashable:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, dict)):
        return repr(v)
    return v


# --------------------------------------------------------------------------- trend
_SCALES = ("linear", "log", "rank")


def _scale(v: np.ndarray, scale: str, what: str) -> np.ndarray:
    if scale == "linear":
        if not np.all(np.isfinite(v)):
            raise InvalidArgumentError(
                f"{what} has infinite values on a linear scale: use scale 'rank' (e.g. full "
                "batch as the largest batch size)"
            )
        return v
    if scale == "log":
        if not np.all(np.isfinite(v)):
            raise InvalidArgumentError(
                f"{what} has infinite values on a log scale: use scale 'rank' (e.g. full "
                "batch as the largest batch size)"
            )
        return _log(v, what)
    if scale == "rank":
        return np.unique(v, return_inverse=True)[1].astype(float)
    raise InvalidArgumentError(f"scale must be one of {_SCALES}, got {scale!r}")


def trend_test(
    x: Iterable[float],
    y: Iterable[float],
    block: Iterable[Hashable],
    criterion: Criterion,
    *,
    x_scale: str = "log",
    y_scale: str = "linear",
    method: str = "t",
    x_name: str = "x",
    y_name: str = "y",
    unit: str = "seeds",
) -> StatResult:
    """A monotone trend of ``y`` across an ordered factor ``x``, judged over independent blocks.

    Within each block (one seed, with the other grid values fixed) the ordinary least-squares
    slope of ``f(y)`` on ``g(x)`` is one independent estimate of the trend; the slopes are then
    tested with :func:`one_sample_test` (one-sided t over blocks by default). This is the
    summary-statistics approach to a random-slope model: it stays calibrated when seeds differ
    in their own slope, which pooled or within-seed permutation tests do not.

    Null / alternative (``less`` shown): mean slope ≥ 0 vs mean slope < 0. Effect: the mean
    slope, e.g. with ``x_scale = y_scale = "log"`` the exponent b of ``y ∝ x^b``.
    Reported besides: the mean within-block Spearman ρ and how many blocks agree in sign.

    Args:
        x, y: one value per run, shape (n,); ``y`` finite (exclude diverged runs first).
        block: one label per run; runs with the same label form one block.
        criterion: direction, minimum |slope| (as a signed threshold: e.g. −0.25 for ``less``),
            α and the fewest blocks.
        x_scale, y_scale: ``"linear"``, ``"log"`` (natural log) or ``"rank"`` (0, 1, 2, ... over
            the distinct values; full batch = ``inf`` ranks last).
        method: ``"t"`` or ``"signflip"`` (see :func:`one_sample_test`).
        x_name, y_name: names for the text.
        unit: what one block is (``"seeds"``).
    """
    xv = np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=float)
    yv = _as_float(y, y_name)
    codes, _ = _codes(block)
    if not (len(xv) == len(yv) == len(codes)):
        raise InvalidArgumentError(
            f"x, y and block must have one entry per run, got {len(xv)}, {len(yv)}, {len(codes)}"
        )
    if np.any(np.isnan(xv)):
        raise InvalidArgumentError(f"{x_name} has NaN values: every run needs its factor value")
    tx = _scale(xv, x_scale, x_name)
    ty = _scale(yv, y_scale, y_name)
    slopes, rhos, dropped = [], [], 0
    for b in range(int(codes.max()) + 1 if len(codes) else 0):
        m = codes == b
        bx, by = tx[m], ty[m]
        if len(np.unique(bx)) < 2:
            dropped += 1
            continue
        dx = bx - bx.mean()
        slopes.append(float(dx @ (by - by.mean()) / (dx @ dx)))
        rhos.append(_spearman(bx, by))
    s = np.asarray(slopes)
    names = {"linear": "{}", "log": "ln {}", "rank": "rank of {}"}
    effect_name = f"slope of {names[y_scale].format(y_name)} on {names[x_scale].format(x_name)}"
    agree = _agreeing(s, criterion)
    details = {
        "slopes": s.tolist(),
        "mean Spearman ρ": float(np.mean(rhos)) if rhos else math.nan,
        f"{unit} agreeing in sign": agree,
        f"{unit} without two levels": dropped,
    }
    res = _one_sample(
        s, criterion, method=method, effect_name=effect_name, unit=unit, details=details
    )
    return res


def _agreeing(values: np.ndarray, c: Criterion) -> int:
    if c.alternative == GREATER:
        return int(np.sum(values > 0))
    if c.alternative == LESS:
        return int(np.sum(values < 0))
    return len(values)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


# --------------------------------------------------------------------------- paired
def paired_test(
    a: Iterable[float],
    b: Iterable[float] | float,
    run: Iterable[Hashable],
    criterion: Criterion,
    *,
    step: Iterable[float] | None = None,
    unit: str = "auto",
    n_batches: int = 10,
    log: bool = False,
    method: str = "t",
    name: str = "a − b",
) -> StatResult:
    """Per-step paired differences ``a − b`` over the steps of one or several runs.

    The steps of one run are dependent, so they are never the units. ``unit="run"`` reduces
    each run to its mean difference and tests those (independent runs: calibrated whatever the
    autocorrelation within a run). ``unit="batch"`` splits each run's steps, in step order, into
    ``n_batches`` contiguous batches and tests the batch means (the batch-means method; valid
    when a batch spans many autocorrelation times — use it for a single run, and say so).
    ``"auto"``: per-run means from :data:`MIN_RUNS_FOR_RUN_MEANS` runs on, else batches.

    Null / alternative (``greater``): mean difference ≤ 0 vs > 0.

    Args:
        a, b: per-step values, shape (n,); ``b`` may be a constant (a baseline such as
            √(2/(πn)) for the alignment of a random direction).
        run: the run of each step (seed or run name), shape (n,).
        criterion: direction, minimum difference, α, fewest units.
        step: the step of each value (sorts each run for batching); default: given order.
        unit: ``"run"``, ``"batch"`` or ``"auto"``.
        n_batches: batches per run for ``unit="batch"``.
        log: compare ``ln a − ln b`` and report the geometric-mean ratio a / b.
        method: ``"t"`` or ``"signflip"``.
        name: the difference's name for the text (``"alignment − random"``).
    """
    av = _as_float(a, "a")
    bv = np.full_like(av, float(b)) if np.isscalar(b) else _as_float(b, "b")  # type: ignore[arg-type]
    codes, labels = _codes(run)
    if not (len(av) == len(bv) == len(codes)):
        raise InvalidArgumentError(
            f"a, b and run must have one entry per step, got {len(av)}, {len(bv)}, {len(codes)}"
        )
    d = _log(av, "a") - _log(bv, "b") if log else av - bv
    order = (
        np.arange(len(d)) if step is None else np.lexsort((np.asarray(list(step), float), codes))
    )
    d, codes = d[order], codes[order]
    runs = len(labels)
    if unit == "auto":
        unit = "run" if runs >= MIN_RUNS_FOR_RUN_MEANS else "batch"
    if unit == "run":
        units = np.asarray([d[codes == r].mean() for r in range(runs)])
        unit_name = "runs"
    elif unit == "batch":
        if n_batches < 2:
            raise InvalidArgumentError(f"n_batches must be ≥ 2, got {n_batches!r}")
        units = np.asarray(
            [
                piece.mean()
                for r in range(runs)
                for piece in np.array_split(d[codes == r], min(n_batches, int(np.sum(codes == r))))
            ]
        )
        unit_name = f"step batches ({n_batches} per run, {runs} run{'s' if runs != 1 else ''})"
    else:
        raise InvalidArgumentError(f"unit must be 'run', 'batch' or 'auto', got {unit!r}")
    effect_name = f"ratio {name}" if log else f"mean {name}"
    details = {"runs": runs, "steps": len(d), "unit means": units.tolist()}
    return _one_sample(
        units,
        criterion,
        method=method,
        effect_name=effect_name,
        unit=unit_name,
        log=log,
        details=details,
    )


# --------------------------------------------------------------------------- two groups
def two_group_test(
    a: Iterable[float],
    b: Iterable[float],
    criterion: Criterion,
    *,
    log: bool = False,
    paired: bool = False,
    name: str = "a vs b",
    unit: str = "seeds",
) -> StatResult:
    """Group ``a`` against group ``b`` over independent runs (e.g. NSGD γ < 1 vs SGD).

    Effect: the difference of means, or with ``log`` the ratio of geometric means (the factor
    "γ < 1 ends 10× sharper"). Unpaired: Welch's t (unequal variances, Welch–Satterthwaite df).
    ``paired``: ``a[i]`` and ``b[i]`` share a seed, and the per-seed differences are tested with
    :func:`one_sample_test` (more power when seeds share initialisations).

    Null / alternative (``greater``): effect ≤ null (0, or ratio 1) vs effect > null.

    Args:
        a, b: one finite value per run of each group (same length when ``paired``).
        criterion: direction, minimum effect (a ratio when ``log``), α, fewest runs per group.
        log: compare on the log scale and report a ratio.
        paired: pair a[i] with b[i].
        name: the comparison's name for the text.
        unit: what one value is.
    """
    av, bv = _as_float(a, "a"), _as_float(b, "b")
    if log:
        av, bv = _log(av, "a"), _log(bv, "b")
    effect_name = f"ratio {name}" if log else f"difference {name}"
    if paired:
        if len(av) != len(bv):
            raise InvalidArgumentError(
                f"paired groups need equal lengths, got {len(av)} and {len(bv)}: pair runs by seed"
            )
        return _one_sample(
            av - bv, criterion, method="t", effect_name=effect_name, unit=f"paired {unit}", log=log
        )
    c = criterion.resolved(1.0 if log else 0.0)
    tc = _log_criterion(c) if log else c
    na, nb = len(av), len(bv)
    n = min(na, nb)
    details = {"n a": na, "n b": nb}
    if na < 2 or nb < 2:
        d = float(av.mean() - bv.mean()) if na and nb else math.nan
        eff = math.exp(d) if log and math.isfinite(d) else d
        return StatResult(
            "Welch t", c, eff, effect_name, (math.nan, math.nan), math.nan, math.nan, "t", n,
            f"{unit} per group", details=details,
        )  # fmt: skip
    d = float(av.mean() - bv.mean())
    va, vb = float(av.var(ddof=1)) / na, float(bv.var(ddof=1)) / nb
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1)) if se > 0 else na + nb - 2
    q = float(stats.t.ppf(1 - tc.alpha, df))
    ci = (d - q * se, d + q * se)

    def tail(x0: float, upper: bool) -> float:
        if se == 0:
            return 0.0 if (d > x0 if upper else d < x0) else 1.0
        t = (d - x0) / se
        return float(stats.t.sf(t, df) if upper else stats.t.cdf(t, df))

    null = float(tc.null_value)  # type: ignore[arg-type]
    if tc.alternative == GREATER:
        p = tail(null, True)
    elif tc.alternative == LESS:
        p = tail(null, False)
    else:
        lo, hi = tc.threshold  # type: ignore[misc]
        p = max(tail(lo, True), tail(hi, False))
    t_stat = (d - null) / se if se > 0 else math.nan
    if log:
        d, ci = math.exp(d), (math.exp(ci[0]), math.exp(ci[1]))
    details["df"] = df
    return StatResult(
        method="Welch t",
        criterion=c,
        effect=d,
        effect_name=effect_name,
        ci=(float(ci[0]), float(ci[1])),
        p_value=p,
        statistic=float(t_stat),
        statistic_name="t",
        n=n,
        unit=f"{unit} per group",
        details=details,
    )


# --------------------------------------------------------------------------- proportions
def proportion_test(
    successes: int | Sequence[int] | np.ndarray,
    trials: int | Sequence[int] | np.ndarray,
    criterion: Criterion,
    *,
    name: str = "share",
    unit: str = "curves",
) -> StatResult:
    """A share (of curves with an interior minimum, of steps crossing a barrier) against a
    threshold share π0, with an exact (Clopper–Pearson) interval.

    Null / alternative (``greater``): share ≤ π0 vs share > π0 (``less`` mirrors it: "almost no
    barriers" is share < 0.1). One run (scalar counts): the exact one-sided binomial test,
    trials assumed independent. Several runs (one count per run): the pooled share is tested
    twice — by the exact binomial test on the pooled counts and by a cluster-robust t over runs
    (ratio estimator, df = runs − 1), which allows for runs that differ in their share — and the
    larger p-value and the union of the two intervals are reported. Each test is valid in its
    own model, so the combination is valid in both; a design-effect correction alone (Rao–Scott)
    rejects 9% of the time at α = 5% with three runs.

    Args:
        successes, trials: counts, scalars or one per run.
        criterion: ``null_value`` is π0 (required); ``threshold`` defaults to it; ``min_n``
            counts trials.
        name: the share's name for the text.
        unit: what one trial is.
    """
    k = np.atleast_1d(np.asarray(successes, dtype=float))
    n = np.atleast_1d(np.asarray(trials, dtype=float))
    if k.shape != n.shape or k.ndim != 1 or np.any(k < 0) or np.any(k > n):
        raise InvalidArgumentError(
            f"successes and trials must be counts with 0 ≤ k ≤ n per run, got {k} and {n}"
        )
    if criterion.null_value is None or not 0 < criterion.null_value < 1:
        raise InvalidArgumentError(
            f"proportion_test needs Criterion(null_value=π0) with 0 < π0 < 1, got "
            f"{criterion.null_value!r}: state the threshold share (e.g. 0.5 for 'most')"
        )
    if criterion.alternative == EQUIVALENT:
        raise InvalidArgumentError(
            "proportion_test is one-sided: use alternative 'greater' or 'less'"
        )
    c = criterion.resolved(criterion.null_value)
    K, N = float(k.sum()), float(n.sum())
    pi0 = float(c.null_value)  # type: ignore[arg-type]
    if N == 0:
        return StatResult(
            "exact binomial", c, math.nan, name, (math.nan, math.nan), math.nan, 0.0, "k", 0,
            unit,
        )  # fmt: skip
    share = K / N
    upper = c.alternative == GREATER
    # Exact binomial on the pooled counts, and its dual Clopper–Pearson interval.
    if upper:
        p = float(stats.binom.sf(K - 1, N, pi0))
        min_p = pi0**N
    else:
        p = float(stats.binom.cdf(K, N, pi0))
        min_p = (1 - pi0) ** N
    lo = float(stats.beta.ppf(c.alpha, K, N - K + 1)) if K > 0 else 0.0
    hi = float(stats.beta.ppf(1 - c.alpha, K + 1, N - K)) if K < N else 1.0
    method = "exact binomial, Clopper–Pearson"
    details: dict[str, Any] = {"binomial p": p, "per run": (k / np.maximum(n, 1)).tolist()}
    runs = int(np.sum(n > 0))
    if runs >= 2:
        m = n > 0
        se = math.sqrt(runs / (runs - 1) * float(np.sum((k[m] - share * n[m]) ** 2))) / N
        df = runs - 1
        if se > 0:
            t = (share - pi0) / se
            p_t = float(stats.t.sf(t, df) if upper else stats.t.cdf(t, df))
            q = float(stats.t.ppf(1 - c.alpha, df))
            lo, hi = min(lo, share - q * se), max(hi, share + q * se)
        else:  # every run has the same share: the spread across runs adds nothing
            p_t = 0.0 if (share > pi0 if upper else share < pi0) else 1.0
        details["cluster t p"] = p_t
        p = max(p, p_t)
        method += f" and cluster t over {runs} runs (larger p)"
    return StatResult(
        method=method,
        criterion=c,
        effect=share,
        effect_name=name,
        ci=(max(lo, 0.0), min(hi, 1.0)),
        p_value=p,
        statistic=K,
        statistic_name="k",
        n=int(N),
        unit=unit,
        min_p=float(min_p),
        details=details,
    )
