"""Verdicts with their five parts; diverged and failed runs never count as evidence."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sgdscope.report._evidence import (
    INSUFFICIENT,
    NOT_APPLICABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Evidence,
    Excluded,
    assess,
    insufficient,
    not_applicable,
    split_valid,
    split_valid_runs,
)
from sgdscope.report._stats import GREATER, LESS, Criterion, one_sample_test, trend_test

CLAIM = "The λ₁ peak is lower for larger η."
STAT = "peak λ₁ per run; per seed the OLS slope of ln peak λ₁ on ln η; one-sided t over seeds"
CRIT = Criterion(LESS, threshold=-0.25, min_n=3)
LR = (0.05, 0.2, 0.4)


def _sweep(rng: np.random.Generator, seeds: int, slope: float) -> pd.DataFrame:
    """A sweep_frame-like table: one finished run per (η, seed), peak λ₁ ∝ η^slope · noise."""
    rows = []
    for s in range(seeds):
        base = rng.normal()
        for lr in LR:
            y = math.exp(base + slope * math.log(lr) + 0.1 * rng.normal())
            rows.append({"run": f"lr={lr}_seed={s}", "status": "finished", "optim.lr": lr,
                         "seed": s, "peak_lambda_1": y})  # fmt: skip
    return pd.DataFrame(rows)


def _judge(frame: pd.DataFrame) -> Evidence:
    valid, excluded = split_valid(frame, ["peak_lambda_1"])
    res = trend_test(valid["optim.lr"], valid["peak_lambda_1"], valid["seed"], CRIT, y_scale="log")
    return assess(CLAIM, STAT, res, excluded=excluded)


def _garbage(rng: np.random.Generator, seeds: int) -> pd.DataFrame:
    """Diverged / failed / unfinished runs whose numbers would reverse the trend if counted."""
    rows = []
    for i in range(int(rng.integers(1, 6))):
        lr = LR[int(rng.integers(0, 3))]
        status = ("diverged", "failed", "running")[i % 3]
        value = (1e22 * lr, math.nan, math.inf, 1e-30)[int(rng.integers(0, 4))]
        rows.append({"run": f"bad{i}_lr={lr}", "status": status, "optim.lr": lr,
                     "seed": int(rng.integers(0, seeds)), "peak_lambda_1": value})  # fmt: skip
    return pd.DataFrame(rows)


def test_diverged_runs_change_no_verdict():
    """Adding diverged / failed runs to a sweep leaves every verdict as it was (200 sweeps, half
    with the effect, half without), and lists each of them as excluded."""
    rng = np.random.default_rng(0)
    verdicts = set()
    for i in range(200):
        clean = _sweep(rng, seeds=3, slope=-0.6 if i % 2 else 0.0)
        bad = _garbage(rng, 3)
        before, after = _judge(clean), _judge(pd.concat([clean, bad], ignore_index=True))
        assert after.verdict == before.verdict
        assert after.result.effect == before.result.effect
        assert {e.run for e in after.excluded} == set(bad.run)
        verdicts.add(before.verdict)
    assert verdicts == {REPRODUCED, NOT_REPRODUCED}


def test_diverged_runs_only_ever_make_evidence_insufficient():
    """When diverged runs replace valid ones, the verdict is that of the remaining valid runs,
    and "insufficient evidence" once fewer than min_n seeds keep two η values — never
    "reproduced" on the strength of a diverged run."""
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(200):
        frame = _sweep(rng, seeds=4, slope=-0.6)
        hit = rng.random(len(frame)) < 0.35
        frame.loc[hit, "status"] = "diverged"
        frame.loc[hit, "peak_lambda_1"] = 1e22
        ev = _judge(frame)
        survivors = frame[~hit].groupby("seed")["optim.lr"].nunique()
        valid_seeds = int((survivors >= 2).sum())
        if valid_seeds < CRIT.min_n:
            assert ev.verdict == INSUFFICIENT
            assert f"≥ 3 valid seeds (have {valid_seeds}" in ev.needs
        else:
            assert ev.verdict in (REPRODUCED, NOT_REPRODUCED)
            assert ev.verdict == _judge(frame[~hit]).verdict
        assert len(ev.excluded) == int(hit.sum())
        seen.add(ev.verdict)
    assert INSUFFICIENT in seen and REPRODUCED in seen


def test_split_valid_lists_each_reason():
    frame = pd.DataFrame(
        {
            "run": ["a", "b", "c", "d"],
            "status": ["finished", "diverged", "finished", "failed"],
            "peak_lambda_1": [1.0, 2.0, math.nan, 3.0],
        }
    )
    valid, excluded = split_valid(frame, ["peak_lambda_1"])
    assert valid.run.tolist() == ["a"]
    assert excluded == (
        Excluded("b", "diverged"),
        Excluded("c", "no finite peak_lambda_1"),
        Excluded("d", "failed"),
    )


def test_split_valid_runs_by_status():
    class R:
        def __init__(self, name, status):
            self.name, self.status = name, status

    runs = [R("a", "finished"), R("b", "diverged"), R("c", "running")]
    valid, excluded = split_valid_runs(runs)
    assert [r.name for r in valid] == ["a"]
    assert [str(e) for e in excluded] == ["b (diverged)", "c (running)"]


def test_five_fields_printed():
    ev = _judge(_sweep(np.random.default_rng(0), seeds=3, slope=-0.8))
    f = ev.fields()
    assert list(f)[:6] == ["claim", "statistic", "effect", "uncertainty", "threshold", "verdict"]
    assert f["verdict"] == REPRODUCED
    assert f["effect"].startswith("slope of ln y on ln x = -0.")
    assert "90% CI" in f["uncertainty"] and "n = 3 seeds" in f["uncertainty"]
    assert "p ≤ 0.05" in f["threshold"] and "≤ -0.25" in f["threshold"]
    assert "claim: The λ₁ peak" in ev.text()


def test_insufficient_when_design_cannot_reach_alpha():
    res = one_sample_test([0.5, 0.6, 0.7], Criterion(GREATER, min_n=3), method="signflip")
    ev = assess("c", "s", res)
    assert ev.verdict == INSUFFICIENT
    assert "smallest possible p-value is 0.125" in ev.needs


def test_not_applicable_and_insufficient_say_what_is_needed():
    na = not_applicable(CLAIM, STAT, CRIT, "a sweep over optim.lr with the sharpness probe")
    assert na.verdict == NOT_APPLICABLE and not na.applicable
    assert na.fields()["needs"] == "a sweep over optim.lr with the sharpness probe"
    assert na.fields()["effect"] == "—" and "≥ 3 valid seeds" in na.fields()["threshold"]
    ins = insufficient(CLAIM, STAT, CRIT, "≥ 3 finished runs", excluded=[Excluded("x", "failed")])
    assert ins.verdict == INSUFFICIENT and ins.fields()["excluded"] == "x (failed)"


def test_verdict_is_checked():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Evidence("c", "s", CRIT, "probably")
