"""Calibration and power of the findings' tests (report._stats), on constructed data.

For each test: how often it says "reproduced" with no effect (should be ≤ α = 5%) and with an
effect of a given size (power), over many seeded draws. The power tables are what the findings'
seed counts and minimum effects were chosen from.

Run:  .venv/bin/python benchmarks/stats_calibration.py [--draws 4000]
      .venv/bin/python benchmarks/stats_calibration.py --cases [--draws 4000]
      (the second prints the rates of the calibration cases of tests/report/test_stats.py)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from sgdscope.report._stats import (
    GREATER,
    LESS,
    Criterion,
    paired_test,
    proportion_test,
    trend_test,
)

LR = np.array([0.05, 0.2, 0.4])


def rate(case, draws: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    return sum(case(rng).supports_claim for _ in range(draws)) / draws


def trend_case(seeds: int, slope: float, noise: float, slope_sd: float, crit: Criterion):
    block = np.repeat(np.arange(seeds), len(LR))
    x = np.tile(LR, seeds)

    def case(rng):
        b = slope + slope_sd * rng.normal(size=seeds)
        ln_y = rng.normal(size=seeds)[block] + b[block] * np.log(x)
        ln_y += noise * rng.normal(size=len(x))
        return trend_test(x, np.exp(ln_y), block, crit, x_scale="log", y_scale="log")

    return case


def ar1(rng, shape, phi):
    e = rng.normal(size=shape) * math.sqrt(1 - phi**2)
    out = np.empty(shape)
    out[..., 0] = rng.normal(size=shape[:-1])
    for t in range(1, shape[-1]):
        out[..., t] = phi * out[..., t - 1] + e[..., t]
    return out


def test_cases(n: int) -> None:
    """Rates of the test suite's null and power cases (seed 1, as its slow tests)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.report.test_stats import NULL_CASES, POWER_CASES

    print(f"| case ({n} draws) | reproduced | p ≤ α |")
    print("| --- | --- | --- |")
    for kind, cases in (("no effect", NULL_CASES), ("effect at stated size", POWER_CASES)):
        for name, case in cases.items():
            rng = np.random.default_rng(1)
            res = [case(rng) for _ in range(n)]
            rep = sum(r.supports_claim for r in res) / n
            sig = sum(r.significant for r in res) / n
            print(f"| {kind}: {name} | {rep:.2%} | {sig:.2%} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--cases", action="store_true", help="the test suite's cases only")
    args = ap.parse_args()
    n = args.draws
    if args.cases:
        test_cases(n)
        return
    crit = Criterion(LESS, threshold=-0.25)

    print(f"### Trend over seeds (peak λ₁ ∝ η^b), threshold b ≤ −0.25, {n} draws\n")
    print(
        "| noise on ln y | seeds' slope sd | seeds | b = 0 | −0.125 | −0.25 | −0.375 | −0.5 | −1 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for noise, sd in ((0.1, 0.05), (0.3, 0.1), (0.3, 0.3)):
        for seeds in (3, 5, 8):
            cells = [
                f"{rate(trend_case(seeds, b, noise, sd, crit), n):.1%}"
                for b in (0, -0.125, -0.25, -0.375, -0.5, -1)
            ]
            print(f"| {noise} | {sd} | {seeds} | " + " | ".join(cells) + " |")

    print(f"\n### Paired over runs (alignment − baseline), threshold 0.01, {n} draws\n")
    print("| per-run sd of the mean | runs | Δ = 0 | 0.01 | 0.02 | 0.04 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for sd in (0.005, 0.01):
        for runs in (3, 5):

            def paired(rng, delta, runs=runs, sd=sd):
                a = delta + sd * rng.normal(size=(runs, 1)) + 0.02 * ar1(rng, (runs, 50), 0.7)
                run = np.repeat(np.arange(runs), 50)
                return paired_test(a.ravel(), 0.0, run, Criterion(GREATER, 0.01))

            cells = [f"{rate(lambda r, d=d: paired(r, d), n):.1%}" for d in (0, 0.01, 0.02, 0.04)]
            print(f"| {sd} | {runs} | " + " | ".join(cells) + " |")

    print(f"\n### Shares over runs that differ in their share, {n} draws (null true)\n")
    print("| π0 | direction | trials per run | runs | ICC 0 | 0.02 | 0.1 | 0.3 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for pi, alt in ((0.5, GREATER), (0.1, LESS)):
        for m in (50, 200):
            for runs in (3, 10):
                cells = []
                for icc in (1e-9, 0.02, 0.1, 0.3):
                    a, b = pi * (1 - icc) / icc, (1 - pi) * (1 - icc) / icc

                    def case(rng, a=a, b=b, m=m, runs=runs, pi=pi, alt=alt):
                        k = rng.binomial(m, rng.beta(a, b, runs))
                        return proportion_test(k, [m] * runs, Criterion(alt, null_value=pi))

                    cells.append(f"{rate(case, n):.1%}")
                print(f"| {pi} | {alt} | {m} | {runs} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
