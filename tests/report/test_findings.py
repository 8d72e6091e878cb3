"""The findings rules on synthetic stores: built to reproduce → reproduced, built not to → not
reproduced, metrics missing → not applicable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sgdscope.report import (
    NOT_APPLICABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    RULES,
    findings_text,
    judge,
)
from sgdscope.store import load_run

from .conftest import curve_rows, scalar_rows, write_run

SWEEP_RULES = [r.id for r in RULES if r.scope == "sweep"]
RUN_RULES = [r.id for r in RULES if r.scope == "run"]


def verdicts(target: object) -> dict[str, str]:
    return {f.id: f.verdict for f in judge(target)}


def test_rules_are_documented_and_unique() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for r in RULES:
        assert r.paper in ("A", "B") and r.scope in ("run", "sweep")
        assert r.statement.endswith(".") and len(r.rule) > 20, r.id


# --------------------------------------------------------------------------- run rules
def _lambda_run(path: Path, values: list[float], array: bool = False) -> Path:
    steps = list(range(0, 10 * len(values), 10))
    if array:  # the sharpness probe's array form: top-k eigenvalues, descending
        rows = [
            (t, t // 10, {}, {"eigenvalues": np.array([v, v / 2])})
            for t, v in zip(steps, values, strict=True)
        ]
        return write_run(path, rows)
    return write_run(path, scalar_rows({"lambda_1": dict(zip(steps, values, strict=True))}))


@pytest.mark.parametrize("array", [False, True])
def test_lambda_peak(tmp_path: Path, array: bool) -> None:
    good = _lambda_run(tmp_path / "g", [1, 5, 8, 9, 7, 6, 6, 5.5, 5, 5, 5], array)
    bad = _lambda_run(tmp_path / "b", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], array)
    flat = _lambda_run(tmp_path / "f", [1, 1.1, 1.2, 1.1, 1, 1, 1, 1, 1, 1, 1], array)
    assert verdicts(load_run(good))["A.lambda_peak"] == REPRODUCED
    assert verdicts(load_run(bad))["A.lambda_peak"] == NOT_REPRODUCED
    assert verdicts(load_run(flat))["A.lambda_peak"] == NOT_REPRODUCED
    f = next(f for f in judge(load_run(good)) if f.id == "A.lambda_peak")
    assert f.numbers["early max λ₁"] == 9 and f.numbers["early max step"] == 30


def test_alignment(tmp_path: Path) -> None:
    def run(name: str, rnd: float) -> Path:
        vals = {
            "alignment_1": {t: 0.3 for t in range(5)},
            "alignment_random": {t: rnd for t in range(5)},
        }
        return write_run(tmp_path / name, scalar_rows(vals))

    assert verdicts(load_run(run("g", 0.03)))["A.alignment"] == REPRODUCED
    assert verdicts(load_run(run("b", 0.2)))["A.alignment"] == NOT_REPRODUCED


def test_alpha_test(tmp_path: Path) -> None:
    def run(name: str, d: tuple[float, float, float]) -> Path:
        vals = {
            f"alpha_test_k1_a{a:g}": {t: v for t in range(4)}
            for a, v in zip((0.5, 1, 2), d, strict=True)
        }
        vals["alpha_test_random_a1"] = {t: 0.0 for t in range(4)}
        return write_run(tmp_path / name, scalar_rows(vals))

    assert verdicts(load_run(run("g", (-0.01, -0.005, 0.02))))["A.alpha_test"] == REPRODUCED
    assert verdicts(load_run(run("b", (-0.004, -0.008, -0.016))))["A.alpha_test"] == NOT_REPRODUCED


def test_convex_inside_and_barriers(tmp_path: Path) -> None:
    a = np.linspace(0, 1, 11)
    bowl = {t: 1.0 + (a - 0.5) ** 2 for t in range(20)}
    good = write_run(tmp_path / "g", curve_rows(bowl, inside=True, barrier=lambda t: False))
    # Monotone curves (no interior minimum) and a barrier at every other step of epoch 1.
    slope = {t: 2.0 - a + 0.3 * np.sin(np.pi * a) for t in range(20)}
    bad = write_run(tmp_path / "b", curve_rows(slope, inside=False, barrier=lambda t: t % 2 == 0))
    vg, vb = verdicts(load_run(good)), verdicts(load_run(bad))
    assert vg["B.convex_inside"] == REPRODUCED and vg["B.early_barriers"] == REPRODUCED
    assert vb["B.convex_inside"] == NOT_REPRODUCED and vb["B.early_barriers"] == NOT_REPRODUCED


def test_gd_cosine(tmp_path: Path) -> None:
    def run(name: str, cos: float, batch: int | str) -> Path:
        vals = {"grad_cosine": {t: cos for t in range(1, 20)}}
        return write_run(tmp_path / name, scalar_rows(vals), batch_size=batch)

    assert verdicts(load_run(run("g", -0.95, "full")))["B.gd_cosine"] == REPRODUCED
    assert verdicts(load_run(run("b", 0.5, "full")))["B.gd_cosine"] == NOT_REPRODUCED
    assert verdicts(load_run(run("s", -0.95, 32)))["B.gd_cosine"] == NOT_APPLICABLE


def test_run_without_probes_is_not_applicable(tmp_path: Path) -> None:
    bare = write_run(tmp_path / "bare", scalar_rows({"batch_loss": {0: 1.0, 1: 0.9}}))
    v = verdicts(load_run(bare))
    assert set(v.values()) == {NOT_APPLICABLE}
    f = judge(load_run(bare))[0]
    assert "needs" in f.numbers


def test_sweep_rules_not_applicable_to_one_run(tmp_path: Path) -> None:
    run = _lambda_run(tmp_path / "r", [1, 5, 8, 9, 7, 6, 6, 5.5, 5, 5, 5])
    v = verdicts(load_run(run))
    assert all(v[r] == NOT_APPLICABLE for r in SWEEP_RULES)


# --------------------------------------------------------------------------- sweep rules
def test_sweep_built_to_reproduce(good_sweep: Path) -> None:
    v = verdicts(good_sweep)
    for rule in [*SWEEP_RULES, "A.lambda_peak", "B.gd_cosine"]:
        assert v[rule] == REPRODUCED, (rule, next(f for f in judge(good_sweep) if f.id == rule))


def test_sweep_built_not_to_reproduce(bad_sweep: Path) -> None:
    v = verdicts(bad_sweep)
    for rule in [*SWEEP_RULES, "A.lambda_peak", "B.gd_cosine"]:
        assert v[rule] == NOT_REPRODUCED, (rule, next(f for f in judge(bad_sweep) if f.id == rule))


def test_sweep_numbers(good_sweep: Path) -> None:
    f = {x.id: x for x in judge(good_sweep)}
    assert f["A.peak_lower"].numbers["ρ(η, peak λ₁)"] == -1.0
    assert f["A.peak_lower"].numbers["ρ(S, peak λ₁)"] == 1.0
    assert f["A.nsgd"].numbers["ratio"] > 5
    assert f["B.gd_cosine"].numbers == {"runs applicable": 2, "runs reproduced": 2}


def test_findings_text(good_sweep: Path) -> None:
    text = findings_text(judge(good_sweep))
    assert "Paper A" in text and "Paper B" in text
    assert "reproduced" in text and "not applicable" in text
    short = findings_text(judge(good_sweep), include_na=False)
    assert len(short) < len(text)


def test_rules_cover_run_rules() -> None:
    assert {
        "A.lambda_peak",
        "A.alignment",
        "A.alpha_test",
        "B.convex_inside",
        "B.early_barriers",
        "B.gd_cosine",
    } == set(RUN_RULES)
