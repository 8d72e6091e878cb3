"""Calibration of the findings' tests (issue 12): no effect → "reproduced" in ≤ 5% of draws;
the effect at its stated size → "reproduced" in ≥ 95% of draws.

Each case draws constructed data (a fixed seed) many times and counts how often the test
supports the claim. Tolerance: with a true rate of exactly 5%, the count in N draws exceeds
``binom.ppf(0.999, N, 0.05)`` (34 of 400, i.e. 8.5%) with probability 0.001; with a true rate of
exactly 95%, it falls below ``binom.ppf(0.001, N, 0.95)`` (366 of 400, 91.5%) with probability
0.001. The fast suite uses N = 400; the slow one N = 4000 (tolerances 5.6% and 94.4%). A negative
control (steps of one autocorrelated run taken as independent) shows the harness does flag a
miscalibrated test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from sgdscope.errors import InvalidArgumentError
from sgdscope.report._stats import (
    ALPHA,
    EQUIVALENT,
    GREATER,
    LESS,
    Criterion,
    StatResult,
    one_sample_test,
    paired_test,
    proportion_test,
    trend_test,
    two_group_test,
)

FAST, SLOW = 400, 4000
LR = np.array([0.05, 0.2, 0.4])  # the small variants' η grid
BATCH = np.array([32.0, 128.0, math.inf])  # S with full batch (GD) as inf


def max_false(n: int) -> int:
    return int(stats.binom.ppf(0.999, n, ALPHA))


def min_true(n: int, rate: float = 0.95) -> int:
    return int(stats.binom.ppf(0.001, n, rate))


def count(case: Callable[[np.random.Generator], StatResult], n: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    return sum(case(rng).supports_claim for _ in range(n))


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], phi: float) -> np.ndarray:
    """Stationary AR(1) noise with unit marginal variance along the last axis."""
    e = rng.normal(size=shape) * math.sqrt(1 - phi**2)
    out = np.empty(shape)
    out[..., 0] = rng.normal(size=shape[:-1])
    for t in range(1, shape[-1]):
        out[..., t] = phi * out[..., t - 1] + e[..., t]
    return out


# --------------------------------------------------------------------------- trend
def _trend(
    rng: np.random.Generator,
    *,
    seeds: int,
    slope: float,
    slope_sd: float = 0.0,
    noise: float = 0.1,
    criterion: Criterion,
    method: str = "t",
) -> StatResult:
    """ln y = seed intercept + seed slope · ln η + noise (peak λ₁ against η)."""
    block = np.repeat(np.arange(seeds), len(LR))
    x = np.tile(LR, seeds)
    b = slope + slope_sd * rng.normal(size=seeds)
    ln_y = rng.normal(size=seeds)[block] + b[block] * np.log(x) + noise * rng.normal(size=len(x))
    return trend_test(
        x, np.exp(ln_y), block, criterion, x_scale="log", y_scale="log", method=method
    )


#: "peak λ₁ lower for larger η": slope of ln λ₁ on ln η at most −0.25, 3 seeds.
TREND_LESS = Criterion(LESS, threshold=-0.25, min_n=3)
TREND_P = Criterion(LESS)  # the p-value alone, without a minimum effect


def _cos_vs_batch(rng: np.random.Generator, slope: float) -> StatResult:
    """cos(g_t, g_{t+1}) against the rank of S (full batch last), 3 seeds, sd 0.03."""
    block = np.repeat(np.arange(3), 3)
    x = np.tile(BATCH, 3)
    rank = np.tile(np.arange(3.0), 3)
    y = -0.2 + rng.normal(0, 0.05, 3)[block] + slope * rank + rng.normal(0, 0.03, 9)
    return trend_test(x, y, block, Criterion(LESS, -0.05), x_scale="rank", y_scale="linear")


NULL_CASES: dict[str, Callable[[np.random.Generator], StatResult]] = {
    "trend, pure noise, 3 seeds": lambda r: _trend(r, seeds=3, slope=0, criterion=TREND_P),
    "trend, pure noise, 3 seeds, min effect": lambda r: _trend(
        r, seeds=3, slope=0, criterion=TREND_LESS
    ),
    "trend, seeds with their own slopes (mean 0), 5 seeds": lambda r: _trend(
        r, seeds=5, slope=0, slope_sd=0.3, criterion=TREND_P
    ),
    "trend, sign-flip, 6 seeds": lambda r: _trend(
        r, seeds=6, slope=0, slope_sd=0.3, criterion=TREND_P, method="signflip"
    ),
    "trend, cos vs rank of S": lambda r: _cos_vs_batch(r, 0.0),
    # Per-step differences, AR(1) within runs (φ = 0.7) plus a run effect of mean 0.
    "paired, 3 runs, per-run means": lambda r: paired_test(
        (0.3 * r.normal(size=(3, 1)) + _ar1(r, (3, 100), 0.7)).ravel(),
        0.0,
        np.repeat(np.arange(3), 100),
        Criterion(GREATER),
    ),
    "paired, 1 run, batch means (φ = 0.5, 200 steps)": lambda r: paired_test(
        _ar1(r, (1, 200), 0.5).ravel(), 0.0, np.zeros(200), Criterion(GREATER, min_n=5)
    ),
    "paired, log ratio, 4 runs": lambda r: paired_test(
        np.exp(0.2 * r.normal(size=(4, 1)) + 0.5 * _ar1(r, (4, 50), 0.5)).ravel(),
        1.0,
        np.repeat(np.arange(4), 50),
        Criterion(GREATER, threshold=1.5),
        log=True,
    ),
    "two groups, Welch, equal spread": lambda r: two_group_test(
        np.exp(r.normal(0, 0.3, 3)), np.exp(r.normal(0, 0.3, 3)), Criterion(GREATER), log=True
    ),
    "two groups, Welch, unequal spread": lambda r: two_group_test(
        r.normal(0, 0.1, 3), r.normal(0, 0.5, 4), Criterion(GREATER)
    ),
    "two groups, paired by seed": lambda r: two_group_test(
        *(r.normal(size=(1, 4)) + r.normal(0, 0.2, (2, 4))), Criterion(LESS), paired=True
    ),
    # Equivalence: the true difference sits on the bound (the claim "similar" is false).
    "equivalence, difference on the bound": lambda r: two_group_test(
        r.normal(0.03, 0.01, 3), r.normal(0.0, 0.01, 3), Criterion(EQUIVALENT, (-0.03, 0.03))
    ),
    "equivalence, one sample on the bound": lambda r: one_sample_test(
        r.normal(-0.1, 0.05, 5), Criterion(EQUIVALENT, (-0.1, 0.1))
    ),
    "share = 0.5, 200 curves, most": lambda r: proportion_test(
        r.binomial(200, 0.5), 200, Criterion(GREATER, null_value=0.5, min_n=20)
    ),
    "share = 0.1, 3 runs × 100 steps, almost none": lambda r: proportion_test(
        r.binomial(100, 0.1, 3), [100] * 3, Criterion(LESS, null_value=0.1, min_n=20)
    ),
    # Runs that differ in their share (beta-distributed, intra-run correlation 0.1).
    "share = 0.5, 3 runs differing in share": lambda r: proportion_test(
        r.binomial(100, r.beta(4.5, 4.5, 3)), [100] * 3, Criterion(GREATER, null_value=0.5)
    ),
}

POWER_CASES: dict[str, Callable[[np.random.Generator], StatResult]] = {
    # Stated size: slope −0.5 (twice the minimum), 10% noise on λ₁, seeds' slopes sd 0.05.
    "trend, slope −0.5, 3 seeds": lambda r: _trend(
        r, seeds=3, slope=-0.5, slope_sd=0.05, criterion=TREND_LESS
    ),
    # cos falls 0.1 per step of S (twice the minimum 0.05), noise sd 0.03 per run.
    "trend, cos vs rank of S": lambda r: _cos_vs_batch(r, -0.1),
    "trend, sign-flip, 6 seeds": lambda r: _trend(
        r, seeds=6, slope=-0.5, slope_sd=0.05, criterion=TREND_LESS, method="signflip"
    ),
    # Alignment − baseline: mean 0.04 (min 0.01), run effect sd 0.005, AR(1) step noise sd 0.02.
    "paired, 3 runs, per-run means": lambda r: paired_test(
        (0.04 + 0.005 * r.normal(size=(3, 1)) + 0.02 * _ar1(r, (3, 100), 0.7)).ravel(),
        0.0,
        np.repeat(np.arange(3), 100),
        Criterion(GREATER, threshold=0.01),
    ),
    "paired, 1 run, batch means": lambda r: paired_test(
        (0.5 + _ar1(r, (1, 200), 0.5)).ravel(),
        0.0,
        np.zeros(200),
        Criterion(GREATER, threshold=0.1, min_n=5),
    ),
    # ‖H‖₂ ratio NSGD / SGD of 10 (minimum 5), log-normal spread 0.3 per run, 3 runs each.
    "two groups, ratio 10 vs minimum 5": lambda r: two_group_test(
        np.exp(np.log(10) + r.normal(0, 0.3, 3)),
        np.exp(r.normal(0, 0.3, 3)),
        Criterion(GREATER, threshold=5.0),
        log=True,
    ),
    # Accuracy equal in truth, run spread 0.5 points, bounds ±3 points.
    "equivalence, accuracy equal": lambda r: two_group_test(
        r.normal(0.9, 0.005, 3), r.normal(0.9, 0.005, 3), Criterion(EQUIVALENT, (-0.03, 0.03))
    ),
    "share = 0.65 vs 0.5, 200 curves": lambda r: proportion_test(
        r.binomial(200, 0.65), 200, Criterion(GREATER, null_value=0.5, min_n=20)
    ),
    "share = 0.02 vs 0.1, 3 runs × 100 steps": lambda r: proportion_test(
        r.binomial(100, 0.02, 3), [100] * 3, Criterion(LESS, null_value=0.1, min_n=20)
    ),
}


@pytest.mark.parametrize("name", list(NULL_CASES))
def test_no_effect_rarely_reproduced(name):
    hits = count(NULL_CASES[name], FAST)
    assert hits <= max_false(FAST), f"{name}: {hits}/{FAST} reproduced without an effect"


@pytest.mark.parametrize("name", list(POWER_CASES))
def test_effect_at_stated_size_reproduced(name):
    hits = count(POWER_CASES[name], FAST)
    assert hits >= min_true(FAST), f"{name}: {hits}/{FAST} reproduced with the effect present"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NULL_CASES))
def test_no_effect_rarely_reproduced_long(name):
    hits = count(NULL_CASES[name], SLOW, seed=1)
    assert hits <= max_false(SLOW), f"{name}: {hits}/{SLOW}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(POWER_CASES))
def test_effect_at_stated_size_reproduced_long(name):
    hits = count(POWER_CASES[name], SLOW, seed=1)
    assert hits >= min_true(SLOW), f"{name}: {hits}/{SLOW}"


def test_harness_flags_steps_taken_as_independent():
    """Negative control: one AR(1) run (φ = 0.8) with every step its own unit is the naive
    per-step t-test; it says "reproduced" far more often than 5% (the harness can fail)."""

    def naive(rng: np.random.Generator) -> StatResult:
        d = _ar1(rng, (1, 200), 0.8).ravel()
        return paired_test(d, 0.0, np.zeros(200), Criterion(GREATER), unit="batch", n_batches=200)

    assert count(naive, FAST) > 2 * max_false(FAST)


@pytest.mark.parametrize(
    "case",
    [
        lambda r: (_trend(r, seeds=3, slope=-0.5, slope_sd=0.05, criterion=TREND_LESS), -0.5),
        lambda r: (
            two_group_test(
                np.exp(1.0 + r.normal(0, 0.3, 3)),
                np.exp(r.normal(0, 0.6, 4)),
                Criterion(GREATER),
                log=True,
            ),
            math.e,
        ),
        lambda r: (
            proportion_test(r.binomial(300, 0.3), 300, Criterion(GREATER, 0.2, null_value=0.2)),
            0.3,
        ),
    ],
    ids=["trend slope", "Welch ratio", "Clopper–Pearson"],
)
def test_interval_covers_truth(case):
    """The 1 − 2α (90%) interval covers the true effect in ≥ 90% of draws (binomial tolerance)."""
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(FAST):
        res, truth = case(rng)
        covered += res.ci[0] <= truth <= res.ci[1]
    assert covered >= int(stats.binom.ppf(0.001, FAST, 1 - 2 * ALPHA))


# --------------------------------------------------------------------------- exact values
def test_t_matches_scipy_and_interval_agrees_with_test():
    v = np.array([0.3, -0.1, 0.5, 0.2, 0.4])
    res = one_sample_test(v, Criterion(GREATER))
    ref = stats.ttest_1samp(v, 0.0, alternative="greater")
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
    # p ≤ α exactly when the 90% interval's lower end is above 0.
    for shift in np.linspace(-0.5, 0.2, 29):
        r = one_sample_test(v + shift, Criterion(GREATER))
        assert (r.p_value <= ALPHA) == (r.ci[0] > 0)


def test_welch_matches_scipy():
    a, b = np.array([1.0, 1.4, 1.1]), np.array([0.2, 0.9, 0.4, 0.6])
    res = two_group_test(a, b, Criterion(GREATER))
    ref = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.effect == pytest.approx(a.mean() - b.mean())


def test_trend_slope_is_the_per_seed_ols_slope():
    x = np.tile(LR, 2)
    block = [0, 0, 0, 1, 1, 1]
    y = np.concatenate([2 / LR, 3 / LR**0.5])
    res = trend_test(x, y, block, TREND_LESS, x_scale="log", y_scale="log")
    assert res.details["slopes"] == pytest.approx([-1.0, -0.5])
    assert res.effect == pytest.approx(-0.75)
    assert res.details["mean Spearman ρ"] == -1.0
    assert res.n == 2


def test_sign_flip_is_exact_and_knows_its_floor():
    res = one_sample_test([0.1, 0.2, 0.3], Criterion(GREATER), method="signflip")
    assert res.p_value == pytest.approx(1 / 8) and res.min_p == 1 / 8
    assert not res.testable  # 3 seeds can never give p ≤ 0.05
    res = one_sample_test([0.1, 0.2, 0.3, -0.05, 0.4], Criterion(GREATER), method="signflip")
    # Of 32 sign patterns, those with mean ≥ observed: all + and flipping only −0.05.
    assert res.p_value == pytest.approx(2 / 32)


def test_binomial_matches_scipy_and_clopper_pearson():
    res = proportion_test(12, 40, Criterion(LESS, null_value=0.5))
    ref = stats.binomtest(12, 40, 0.5, alternative="less")
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    ci = stats.binomtest(12, 40, 0.5).proportion_ci(confidence_level=0.9, method="exact")
    assert res.ci == pytest.approx((ci.low, ci.high), rel=1e-8)
    assert proportion_test(0, 20, Criterion(LESS, null_value=0.1)).min_p == pytest.approx(0.9**20)


def test_several_runs_take_the_larger_p():
    k, n = np.array([60, 95, 58]), np.array([100, 100, 100])
    res = proportion_test(k, n, Criterion(GREATER, null_value=0.5))
    assert res.p_value == max(res.details["binomial p"], res.details["cluster t p"])
    assert res.p_value > res.details["binomial p"]  # the runs disagree: wider than binomial


def test_ratio_effect_and_threshold_on_ratio_scale():
    res = two_group_test([40.0, 50.0, 60.0], [4.0, 5.0, 6.0], Criterion(GREATER, 5.0), log=True)
    assert res.effect == pytest.approx(10.0, rel=0.01)
    assert res.supports_claim
    res = two_group_test([40.0, 50.0, 60.0], [4.0, 5.0, 6.0], Criterion(GREATER, 20.0), log=True)
    assert res.significant and not res.meets_threshold and not res.supports_claim


def test_text_states_everything():
    res = _trend(np.random.default_rng(0), seeds=3, slope=-0.5, criterion=TREND_LESS)
    assert (
        "slope of ln y on ln x" in res.text and "90% CI" in res.text and "n = 3 seeds" in res.text
    )
    assert res.null == "slope of ln y on ln x ≥ 0"
    assert res.alternative == "slope of ln y on ln x < 0"
    crit = res.criterion.text(res.effect_name, res.unit)
    assert "p ≤ 0.05" in crit and "≤ -0.25" in crit and "≥ 3 valid seeds" in crit


def test_bad_arguments_say_what_to_do():
    with pytest.raises(InvalidArgumentError, match="non-finite"):
        one_sample_test([1.0, math.nan], Criterion(GREATER))
    with pytest.raises(InvalidArgumentError, match="positive on a log scale"):
        trend_test([1, 2], [1.0, -1.0], [0, 0], TREND_P, y_scale="log")
    with pytest.raises(InvalidArgumentError, match="use scale 'rank'"):
        trend_test(BATCH, [1.0, 2.0, 3.0], [0, 0, 0], TREND_P, x_scale="log")
    with pytest.raises(InvalidArgumentError, match="threshold=\\(low, high\\)"):
        Criterion(EQUIVALENT, 0.1)
    with pytest.raises(InvalidArgumentError, match="null_value"):
        proportion_test(3, 10, Criterion(GREATER))
    with pytest.raises(InvalidArgumentError, match="alternative"):
        Criterion("bigger")
