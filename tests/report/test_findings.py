"""The findings judge (issue 12) on constructed stores.

Calibration: for each rule, sweeps with no effect (the claim false, at its null: pure noise, or
the effect exactly on an equivalence / non-inferiority bound) and sweeps with the effect at the
stated size (``synthetic.py`` says the size per rule), each drawn many times with a fixed seed.
Tolerances: with a true rate of exactly 5%, the count of "reproduced" in N draws exceeds
``binom.ppf(0.999, N, 0.05)`` with probability 0.001; with a true rate of 95%, it falls below
``binom.ppf(0.001, N, 0.95)`` with probability 0.001. Fast suite N = 30 (≤ 6 and ≥ 24: this only
catches gross miscalibration, such as a sign over three points passing half the time); slow
suite N = 400 (≤ 34 and ≥ 366, i.e. 8.5% and 91.5%).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sgdscope.report import (
    INSUFFICIENT,
    NOT_APPLICABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    RULES,
    findings_text,
    judge,
)
from sgdscope.report import findings as F
from sgdscope.report.findings import combine, curve_ok, judge_per_seed
from sgdscope.store import load_run

from . import synthetic as S
from .conftest import scalar_rows, write_run

FAST, SLOW = 30, 400
BY_ID = {r.id: r for r in RULES}


def max_false(n: int) -> int:
    return int(stats.binom.ppf(0.999, n, 0.05))


def min_true(n: int) -> int:
    return int(stats.binom.ppf(0.001, n, 0.95))


def count(rule_id: str, effect: bool, n: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    gen = S.CASES[rule_id][1 if effect else 0]
    return sum(BY_ID[rule_id].evaluate(gen(rng)).verdict == REPRODUCED for _ in range(n))


# --------------------------------------------------------------------------- the rules
#: Each rule's thresholds: the named constants whose values its text must state.
THRESHOLDS = {
    "A.lambda_peak": ["EARLY_FRACTION", "LAMBDA_RISE", "LAMBDA_LATE_GROWTH", "MIN_RUNS"],
    "A.peak_lower": ["PEAK_LR_SLOPE", "PEAK_BATCH_SLOPE", "MIN_SEEDS"],
    "A.peak_earlier": ["PEAK_STEP_LR_SLOPE", "PEAK_STEP_BATCH_SLOPE", "MIN_SEEDS"],
    "A.alignment": ["ALIGNMENT_FACTOR", "RUN_UNITS_FROM"],
    "A.alpha_test": ["ALPHA_TEST_K", "RUN_UNITS_FROM"],
    "A.eigen_overshoot": ["EIGEN_OVERSHOOT_SHARE", "RUN_UNITS_FROM"],
    "A.projected": ["PROJECTED_MARGIN", "PROJECTED_LOSS_RATIO", "MIN_RUNS"],
    "A.nsgd_sharper": ["NSGD_FACTOR", "NSGD_ACC_TOL", "MIN_RUNS"],
    "A.nsgd_flatter": ["NSGD_FACTOR"],
    "A.nsgd_control": ["NSGD_CONTROL_BAND"],
    "B.convex_inside": ["CONVEX_TOL", "MIN_CURVES", "MOST"],
    "B.early_barriers": ["EARLY_BARRIER_SHARE", "MIN_RUNS"],
    "B.barriers_later": ["MIN_RUNS"],
    "B.height_vs_lr": ["HEIGHT_LR_SLOPE", "MIN_SEEDS"],
    "B.height_decreases": ["HEIGHT_DECAY", "MIN_RUNS"],
    "B.cos_vs_batch": ["COS_BATCH_SLOPE", "MIN_SEEDS"],
    "B.distance_vs_batch": ["DISTANCE_BATCH_SLOPE", "MIN_SEEDS"],
    "B.cos_vs_lr": ["COS_LR_MAX_SLOPE", "MIN_SEEDS"],
    "B.gd_cosine": ["GD_COSINE_MAX", "RUN_UNITS_FROM"],
    "B.noisy_gd": ["NOISY_LOSS_RATIO", "NOISY_DISTANCE_RATIO", "MIN_RUNS"],
    "B.spectral_norm": [
        "MIN_SPECTRAL_POINTS", "SPECTRAL_WINDOW", "SPECTRAL_DECLINE", "SPECTRAL_RISE", "MIN_RUNS"
    ],
    "B.schedules": ["SCHEDULE_MARGIN", "MIN_RUNS"],
}  # fmt: skip


def _as_text(v: float) -> set[str]:
    return {f"{v:g}", f"{v:.0%}"}


def test_every_rule_states_its_named_thresholds() -> None:
    assert [r.id for r in RULES] == list(THRESHOLDS)
    for r in RULES:
        assert r.paper in ("A", "B") and r.scope in ("run", "sweep")
        assert r.statement.endswith((".", ")")) and r.needs, r.id
        for name in THRESHOLDS[r.id]:
            value = getattr(F, name)
            assert any(t in r.rule for t in _as_text(value)), (r.id, name, value, r.rule)


def test_every_rule_has_calibration_cases() -> None:
    assert set(S.CASES) == set(BY_ID)


@pytest.mark.parametrize("rule_id", list(S.CASES))
def test_no_effect_rarely_reproduced(rule_id: str) -> None:
    hits = count(rule_id, False, FAST, seed=0)
    assert hits <= max_false(FAST), f"{rule_id}: {hits}/{FAST} reproduced without an effect"


@pytest.mark.parametrize("rule_id", list(S.CASES))
def test_effect_at_stated_size_reproduced(rule_id: str) -> None:
    hits = count(rule_id, True, FAST, seed=0)
    assert hits >= min_true(FAST), f"{rule_id}: {hits}/{FAST} reproduced with the effect"


@pytest.mark.slow
@pytest.mark.parametrize("rule_id", list(S.CASES))
def test_no_effect_rarely_reproduced_long(rule_id: str) -> None:
    hits = count(rule_id, False, SLOW, seed=1)
    assert hits <= max_false(SLOW), f"{rule_id}: {hits}/{SLOW}"


@pytest.mark.slow
@pytest.mark.parametrize("rule_id", list(S.CASES))
def test_effect_at_stated_size_reproduced_long(rule_id: str) -> None:
    hits = count(rule_id, True, SLOW, seed=1)
    assert hits >= min_true(SLOW), f"{rule_id}: {hits}/{SLOW}"


def test_finding_prints_the_five_fields() -> None:
    f = BY_ID["A.peak_lower"].evaluate(S.peak_lower(np.random.default_rng(0), True))
    assert f.verdict == REPRODUCED
    (part,) = f.parts
    fields = part.fields()
    assert list(fields)[:6] == ["claim", "statistic", "effect", "uncertainty", "threshold",
                                "verdict"]  # fmt: skip
    assert fields["effect"].startswith("slope of ln peak λ₁ on ln η = -0.")
    assert "90% CI" in fields["uncertainty"] and "n = 3 seeds" in fields["uncertainty"]
    assert "≤ -0.25" in fields["threshold"] and "≥ 3 valid seeds" in fields["threshold"]
    text = f.text()
    for word in ("statistic:", "effect:", "uncertainty:", "threshold:"):
        assert word in text


# --------------------------------------------------------------------------- diverged runs
def _garbage(rng: np.random.Generator, template: S.FolderSweep) -> list[S.MemRun]:
    """Diverged / failed copies of a sweep's runs, with numbers that would flip any verdict."""
    out = []
    for i, run in enumerate(template.runs[: int(rng.integers(1, 4))]):
        scalars = {
            n: {int(s): (1e22 if i % 2 else -1e22) * (1 + s) for s in g.step}
            for n, g in run.scalars.groupby("name")
        }
        cfg = run.config
        out.append(
            S.MemRun(
                f"bad{i}",
                scalars,
                arrays={k: run.array(k) for k in run.array_names()},
                lr=cfg["optim"]["lr"],
                batch_size=cfg["train"]["batch_size"],
                optim=cfg["optim"]["name"],
                options=cfg["optim"]["options"],
                schedule=cfg["schedule"]["name"],
                seed=cfg["seed"],
                status=("diverged", "failed")[i % 2],
            )
        )
    return out


DIVERGE_RULES = ["A.peak_lower", "A.alignment", "A.nsgd_sharper", "B.early_barriers",
                 "B.height_vs_lr", "B.noisy_gd", "B.spectral_norm"]  # fmt: skip


@pytest.mark.parametrize("rule_id", DIVERGE_RULES)
def test_diverged_runs_change_no_verdict(rule_id: str) -> None:
    """Adding diverged / failed runs leaves the verdict and effects as they were, and lists each
    of them as excluded (sweeps with and without the effect)."""
    rng = np.random.default_rng(5)
    seen = set()
    for i in range(6):
        clean = S.CASES[rule_id][i % 2](rng)
        bad = _garbage(rng, clean)
        before = BY_ID[rule_id].evaluate(clean)
        after = BY_ID[rule_id].evaluate(S.sweep([*clean.runs, *bad], clean.grid_keys))
        assert after.verdict == before.verdict, (after.text(), before.text())
        assert [p.effect_text for p in after.parts] == [p.effect_text for p in before.parts]
        assert {b.name for b in bad} <= {e.run for e in after.excluded}
        seen.add(before.verdict)
    assert seen == {REPRODUCED, NOT_REPRODUCED}


@pytest.mark.parametrize("rule_id", ["A.peak_lower", "A.alignment", "B.noisy_gd"])
def test_diverged_runs_only_ever_make_evidence_insufficient(rule_id: str) -> None:
    """Runs that diverge instead of finishing: the verdict is that of the remaining valid runs,
    or "insufficient evidence" — never "reproduced" on the strength of a diverged run."""
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(12):
        clean = S.CASES[rule_id][1](rng)
        hit = rng.random(len(clean.runs)) < 0.4
        runs = [
            r if not h else _garbage(np.random.default_rng(0), S.sweep([r], []))[0]
            for r, h in zip(clean.runs, hit, strict=True)
        ]
        f = BY_ID[rule_id].evaluate(S.sweep(runs, clean.grid_keys))
        valid_only = BY_ID[rule_id].evaluate(
            S.sweep([r for r, h in zip(clean.runs, hit, strict=True) if not h], clean.grid_keys)
        )
        assert f.verdict in (valid_only.verdict, INSUFFICIENT), (f.text(), valid_only.text())
        if f.verdict == INSUFFICIENT:
            assert f.needs
        seen.add(f.verdict)
    assert INSUFFICIENT in seen


# --------------------------------------------------------------------------- the parts
def test_combine_is_intersection_union() -> None:
    from sgdscope.report._evidence import Evidence
    from sgdscope.report._stats import GREATER, Criterion

    def ev(v: str) -> Evidence:
        return Evidence("c", "s", Criterion(GREATER), v)

    assert combine([ev(REPRODUCED), ev(REPRODUCED)]) == REPRODUCED
    assert combine([ev(REPRODUCED), ev(INSUFFICIENT)]) == INSUFFICIENT
    assert combine([ev(INSUFFICIENT), ev(NOT_REPRODUCED)]) == NOT_REPRODUCED
    assert combine([ev(REPRODUCED), ev(NOT_APPLICABLE)]) == NOT_APPLICABLE
    assert combine([ev(NOT_APPLICABLE)]) == combine([]) == NOT_APPLICABLE


def test_curve_joint_test() -> None:
    a = np.linspace(0, 1, 11)
    assert curve_ok(1 + (a - 0.4) ** 2)
    assert not curve_ok(2 - a)  # monotone: no minimum inside (once counted as "convex")
    assert not curve_ok(1 + (a - 0.4) ** 2 + 0.2 * np.sin(12 * a))  # minimum inside, not convex
    assert not curve_ok(np.full(11, 1.0)) and not curve_ok(np.r_[1.0, np.nan, 1.0])


def test_single_run_trends_need_seeds_and_per_step_claims_use_batches() -> None:
    one = S.alignment(np.random.default_rng(0), True).runs[0]
    f = {x.id: x for x in judge(one)}
    assert f["A.alignment"].verdict == REPRODUCED
    assert "step batches" in f["A.alignment"].parts[0].uncertainty_text
    assert f["A.peak_lower"].verdict == NOT_APPLICABLE
    assert "≥ 3 seeds" in f["A.peak_lower"].needs


def test_one_seed_cannot_show_a_trend() -> None:
    sw = S.peak_lower(np.random.default_rng(0), True)
    per_seed = judge_per_seed(sw)
    assert sorted(per_seed) == [0, 1, 2]
    for findings in per_seed.values():
        f = next(x for x in findings if x.id == "A.peak_lower")
        assert f.verdict == INSUFFICIENT and "≥ 3 valid seeds (have 1" in f.needs
        assert f.parts[0].effect_text.startswith("slope of ln peak λ₁")  # the seed's own slope


def test_run_without_probes_is_not_applicable(tmp_path: Path) -> None:
    bare = write_run(tmp_path / "bare", scalar_rows({"batch_loss": {0: 1.0, 1: 0.9}}))
    findings = judge(load_run(bare))
    assert {f.verdict for f in findings} == {NOT_APPLICABLE}
    assert all(f.needs for f in findings)


# --------------------------------------------------------------------------- on disk
def test_sweep_on_disk_built_to_reproduce(good_sweep: Path) -> None:
    v = {f.id: f for f in judge(good_sweep)}
    for rule in ("A.peak_lower", "A.peak_earlier", "A.lambda_peak", "A.projected",
                 "A.nsgd_sharper", "B.height_vs_lr", "B.cos_vs_batch", "B.distance_vs_batch",
                 "B.noisy_gd", "B.gd_cosine"):  # fmt: skip
        assert v[rule].verdict == REPRODUCED, v[rule].text()


def test_sweep_on_disk_built_not_to_reproduce(bad_sweep: Path) -> None:
    v = {f.id: f for f in judge(bad_sweep)}
    for rule in ("A.peak_lower", "A.peak_earlier", "A.lambda_peak", "A.projected",
                 "A.nsgd_sharper", "B.height_vs_lr", "B.cos_vs_batch", "B.distance_vs_batch",
                 "B.noisy_gd", "B.gd_cosine"):  # fmt: skip
        assert v[rule].verdict == NOT_REPRODUCED, v[rule].text()


def test_findings_text(good_sweep: Path) -> None:
    findings = judge(good_sweep)
    text = findings_text(findings)
    assert "Paper A" in text and "Paper B" in text
    assert "reproduced" in text and "not applicable" in text
    assert "threshold:" in text and "uncertainty:" in text
    short = findings_text(findings, include_na=False, detail=False)
    assert len(short) < len(text) and "threshold:" not in short
