"""The edge-of-stability and dominant/bulk rules on constructed stores: each reproduces on data
that has the claimed property, is not reproduced on data that lacks it, and is not applicable or
insufficient without its data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sgdscope.report import findings_beyond as FB
from sgdscope.report._evidence import INSUFFICIENT, NOT_APPLICABLE, NOT_REPRODUCED, REPRODUCED

from .conftest import scalar_rows, write_run

SEEDS = (0, 1, 2)


def _verdicts(path: Path, recipe: str) -> dict[str, str]:
    return {f.id.rsplit(".", 1)[-1]: f.verdict for f in FB.judge_beyond(path, recipe=recipe)}


def _eos_series(seed: int, *, hover: float, lr: float, steps: int = 400, every: int = 5):
    """GD: λ₁ rising from 0.1·(2/η) to `hover`·(2/η) by step 150, then ±4% around it; the loss
    falling with a rise every 40 steps."""
    rng = np.random.default_rng(seed)
    thr = 2 / lr
    meas = np.arange(0, steps, every)
    lam = np.where(
        meas < 150,
        thr * (0.1 + (hover - 0.1) * meas / 150),
        thr
        * hover
        * (1 + 0.04 * np.sin(meas / 7.0 + seed) + 0.01 * rng.standard_normal(len(meas))),
    )
    t = np.arange(steps)
    loss = 2.3 * np.exp(-t / 250) + 0.05 * ((t % 40) == 39)
    values: dict[str, dict[int, float]] = {
        "batch_loss": dict(zip(t.tolist(), loss.tolist(), strict=True)),
        "lambda_1": dict(zip(meas.tolist(), lam.tolist(), strict=True)),
        "stability": dict(zip(meas.tolist(), (lam / thr).tolist(), strict=True)),
    }
    return scalar_rows(values)


@pytest.mark.parametrize(("hover", "expected"), [(1.0, REPRODUCED), (0.5, NOT_REPRODUCED)])
def test_eos_gd_rules(tmp_path: Path, hover: float, expected: str) -> None:
    for s in SEEDS:
        write_run(
            tmp_path / f"seed={s}",
            _eos_series(s, hover=hover, lr=0.3),
            lr=0.3,
            batch_size="full",
            seed=s,
        )
    v = _verdicts(tmp_path, "eos-gd")
    assert v["hovers"] == expected
    assert v["sharpening"] == REPRODUCED  # λ₁ rises 10× / 5× either way
    # Below the edge there is no edge phase: the loss rule has no runs to judge.
    assert v["loss"] == (REPRODUCED if hover == 1.0 else INSUFFICIENT)


def test_eos_gd_monotone_loss_is_not_reproduced(tmp_path: Path) -> None:
    for s in SEEDS:
        rows = _eos_series(s, hover=1.0, lr=0.3)
        rows = [
            (
                st,
                ep,
                {**sc, "batch_loss": 2.3 * math.exp(-st / 250)} if "batch_loss" in sc else sc,
                a,
            )
            for st, ep, sc, a in rows
        ]
        write_run(tmp_path / f"seed={s}", rows, lr=0.3, batch_size="full", seed=s)
    finding = next(f for f in FB.judge_beyond(tmp_path, recipe="eos-gd") if f.id.endswith("loss"))
    assert finding.verdict == NOT_REPRODUCED
    assert [p.verdict for p in finding.parts] == [REPRODUCED, NOT_REPRODUCED]


def test_diverged_runs_are_excluded_and_listed(tmp_path: Path) -> None:
    for s in SEEDS:
        write_run(
            tmp_path / f"seed={s}",
            _eos_series(s, hover=1.0, lr=0.3),
            lr=0.3,
            batch_size="full",
            seed=s,
            status="diverged" if s == 0 else "finished",
        )
    f = next(f for f in FB.judge_beyond(tmp_path, recipe="eos-gd") if f.id.endswith("hovers"))
    assert f.verdict == INSUFFICIENT  # 2 valid runs < 3
    assert [e.run for e in f.parts[0].excluded] == ["seed=0"]


def test_rules_not_applicable_without_their_metrics(tmp_path: Path) -> None:
    rows = scalar_rows({"batch_loss": {t: 1.0 for t in range(10)}})
    write_run(tmp_path / "a", rows, batch_size="full")
    for f in FB.judge_beyond(tmp_path):
        assert f.verdict == NOT_APPLICABLE, f.id
        assert f.needs


def _eoss_rows(seed: int, batch: int, *, lam_peak: float, bs: float, n: int = 30):
    rng = np.random.default_rng(seed * 1000 + batch)
    meas = np.arange(n) * 100
    lam = lam_peak * np.minimum(1, (meas + 100) / 1000) * (1 + 0.03 * rng.standard_normal(n))
    bsr = bs * np.minimum(1, (meas + 100) / 1200) * (1 + 0.1 * rng.standard_normal(n))
    return scalar_rows(
        {
            "stability": dict(zip(meas.tolist(), lam.tolist(), strict=True)),
            "batch_sharpness_stability": dict(zip(meas.tolist(), bsr.tolist(), strict=True)),
            "batch_loss": {int(t): 1.0 for t in meas},
        }
    )


@pytest.mark.parametrize("trend", [True, False])
def test_eoss_sgd_rules(tmp_path: Path, trend: bool) -> None:
    peaks = {16: 0.4, 64: 0.6, 256: 0.95} if trend else {16: 0.9, 64: 0.9, 256: 0.9}
    for s in SEEDS:
        for b, peak in peaks.items():
            write_run(
                tmp_path / f"bs={b}_seed={s}",
                _eoss_rows(s, b, lam_peak=peak, bs=1.0),
                lr=0.5,
                batch_size=b,
                seed=s,
            )
    v = _verdicts(tmp_path, "eoss-sgd")
    assert v["batch_sharpness"] == REPRODUCED
    assert v["lambda_below"] == (REPRODUCED if trend else NOT_REPRODUCED)
    assert v["smaller_batches"] == (REPRODUCED if trend else NOT_REPRODUCED)


def test_eoss_batch_sharpness_far_from_the_threshold_is_not_reproduced(tmp_path: Path) -> None:
    for s in SEEDS:
        write_run(
            tmp_path / f"s{s}",
            _eoss_rows(s, 16, lam_peak=0.3, bs=0.2),
            lr=0.5,
            batch_size=16,
            seed=s,
        )
    assert _verdicts(tmp_path, "eoss-sgd")["batch_sharpness"] == NOT_REPRODUCED


@pytest.mark.parametrize(("hover", "expected"), [(1.0, REPRODUCED), (0.3, NOT_REPRODUCED)])
def test_eos_adam_rule_reads_the_preconditioned_ratio(tmp_path, hover, expected) -> None:
    for s in SEEDS:
        write_run(
            tmp_path / f"s{s}",
            _eos_series(s, hover=hover, lr=0.003),
            optim="adam",
            lr=0.003,
            batch_size="full",
            seed=s,
        )
    assert _verdicts(tmp_path, "eos-adam")["hovers"] == expected
    # GD rules ignore Adam runs.
    assert _verdicts(tmp_path, "eos-gd")["hovers"] == NOT_APPLICABLE


def _train_loss(first: float, last: float) -> list:
    return scalar_rows({"train_loss": {0: first, 50: (first + last) / 2, 100: last}})


@pytest.mark.parametrize(("dom_end", "bulk_end"), [(2.25, 0.12), (0.5, 1.5)])
def test_dom_bulk_rules(tmp_path: Path, dom_end: float, bulk_end: float) -> None:
    for s in SEEDS:
        jitter = 0.01 * s
        write_run(tmp_path / f"sgd_{s}", _train_loss(2.3, 0.1 + jitter), seed=s)
        write_run(
            tmp_path / f"dom_{s}",
            _train_loss(2.3, dom_end + jitter),
            seed=s,
            optim="projected_sgd",
            options={"mode": "top_only", "k": 10},
        )
        write_run(
            tmp_path / f"bulk_{s}",
            _train_loss(2.3, bulk_end - jitter),
            seed=s,
            optim="projected_sgd",
            options={"mode": "remove_top", "k": 10},
        )
        # The random-subspace control is not Dom- or Bulk-SGD.
        write_run(
            tmp_path / f"rand_{s}",
            _train_loss(2.3, 2.3),
            seed=s,
            optim="projected_sgd",
            options={"mode": "top_only", "k": 10, "subspace": "random"},
        )
    v = _verdicts(tmp_path, "dom-bulk")
    good = dom_end > 2
    assert v["dom_stalls"] == (REPRODUCED if good else NOT_REPRODUCED)
    assert v["bulk_matches"] == (REPRODUCED if good else NOT_REPRODUCED)


def test_edge_of_series() -> None:
    s = pd.Series([0.2, 0.5, 0.95, 1.0, 1.1, 0.9, 1.0, 0.95], index=np.arange(8) * 10)
    e = FB.edge_of(s)
    assert e is not None and e.reached and e.step == 20
    assert e.window == (20, 40)  # max(3, ceil(0.25·8)) = 3 measurements
    assert e.hover == pytest.approx(1.0)
    below = FB.edge_of(pd.Series([0.1, 0.3, 0.2]))
    assert below is not None and not below.reached and below.hover == pytest.approx(0.3)
    assert FB.edge_of(pd.Series([0.5])) is None


def test_every_rule_names_its_recipe_and_thresholds() -> None:
    recipes = {r.recipe for r in FB.BEYOND_RULES}
    assert recipes == {"eos-gd", "eoss-sgd", "eos-adam", "dom-bulk"}
    from sgdscope.recipes import recipe_names

    assert recipes <= set(recipe_names())
    for r in FB.BEYOND_RULES:
        assert r.paper == "beyond" and r.id.startswith("beyond.")
        assert any(ch.isdigit() for ch in r.rule), r.id  # its thresholds are in its text


def test_judge_includes_the_beyond_findings_under_their_own_heading(tmp_path: Path) -> None:
    from sgdscope.report.findings import findings_text, judge

    for s in SEEDS:
        write_run(
            tmp_path / f"seed={s}",
            _eos_series(s, hover=1.0, lr=0.3),
            lr=0.3,
            batch_size="full",
            seed=s,
        )
    found = {f.id: f for f in judge(tmp_path)}
    assert found["beyond.eos_gd.hovers"].verdict == REPRODUCED
    assert found["beyond.eos_gd.hovers"].paper == "beyond"
    text = findings_text(list(found.values()), include_na=False, detail=False)
    assert "After both papers" in text
    # No paper-B rule has data here (A.lambda_peak judges the λ₁ series): with include_na=False
    # paper B's heading is gone.
    assert "Paper A" in text and "Paper B" not in text
