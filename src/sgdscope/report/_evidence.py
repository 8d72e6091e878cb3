"""A finding's verdict, carrying the five things the report prints.

An :class:`Evidence` holds the claim (the paper's words), the statistic (what is measured and
how it is tested), the effect size, its uncertainty (interval and p-value) and the pre-stated
threshold (a :class:`~sgdscope.report._stats.Criterion`), and one of four verdicts:

- ``"reproduced"``: the test supports the claim (``p ≤ α`` and the minimum effect reached, or
  the equivalence interval inside its bounds);
- ``"not reproduced"``: enough valid evidence, and it does not support the claim;
- ``"insufficient evidence"``: the data the finding needs exist, but too few valid units remain
  (fewer than ``criterion.min_n``, or a design that cannot reach α at all). Diverged, failed and
  unfinished runs never count as evidence: they are excluded and listed, so they can only push a
  verdict towards "insufficient evidence";
- ``"not applicable"``: the data the finding needs are absent; ``needs`` says what would make
  it applicable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._stats import Criterion, StatResult, _fmt, _fmt_p

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INSUFFICIENT = "insufficient evidence"
NOT_APPLICABLE = "not applicable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INSUFFICIENT, NOT_APPLICABLE)

#: The run statuses that count as evidence; any other (diverged, failed, running, missing)
#: excludes the run.
VALID_STATUSES = frozenset({"finished"})


@dataclass(frozen=True)
class Excluded:
    """A run left out of the evidence, and why (``"diverged"``, ``"no finite peak_lambda_1"``)."""

    run: str
    reason: str

    def __str__(self) -> str:
        return f"{self.run} ({self.reason})"


@dataclass(frozen=True)
class Evidence:
    """A finding's verdict with its claim, statistic, effect, uncertainty and threshold.

    Attributes:
        claim: the finding as the paper states it.
        statistic: what is measured and how it is combined, in words (``"peak λ₁ per run; per
            seed the OLS slope of ln peak λ₁ on ln η; t over seeds"``).
        criterion: the pre-stated threshold (direction, minimum effect, α, fewest units).
        verdict: one of :data:`VERDICTS`.
        result: the test's outcome (None when no test could be formed).
        excluded: runs left out, with the reason.
        needs: for "not applicable" / "insufficient evidence": the data that would settle it.
        effect_name: the effect's name (for the threshold text when there is no result).
        unit: what one unit of evidence is (``"seeds"``).
    """

    claim: str
    statistic: str
    criterion: Criterion
    verdict: str
    result: StatResult | None = None
    excluded: tuple[Excluded, ...] = ()
    needs: str = ""
    effect_name: str = "effect"
    unit: str = "seeds"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def applicable(self) -> bool:
        return self.verdict != NOT_APPLICABLE

    @property
    def effect_text(self) -> str:
        r = self.result
        if r is None or not math.isfinite(r.effect):
            return "—"
        return f"{r.effect_name} = {_fmt(r.effect)}"

    @property
    def uncertainty_text(self) -> str:
        r = self.result
        if r is None or r.n == 0:
            return "—"
        return f"{r.interval_text}; {_fmt_p(r.p_value)}; n = {r.n} {r.unit}; {r.method}"

    @property
    def threshold_text(self) -> str:
        """The pre-stated criterion in words (resolved against the test's null when tested)."""
        if self.result is not None:
            return self.result.criterion.text(self.result.effect_name, self.result.unit)
        return self.criterion.text(self.effect_name, self.unit)

    def fields(self) -> dict[str, str]:
        """The report's rows, in order: claim, statistic, effect, uncertainty, threshold,
        verdict, then ``needs`` and ``excluded`` when there are any."""
        out = {
            "claim": self.claim,
            "statistic": self.statistic,
            "effect": self.effect_text,
            "uncertainty": self.uncertainty_text,
            "threshold": self.threshold_text,
            "verdict": self.verdict,
        }
        if self.needs:
            out["needs"] = self.needs
        if self.excluded:
            out["excluded"] = ", ".join(str(e) for e in self.excluded)
        return out

    def text(self) -> str:
        """The fields as ``name: value`` lines."""
        return "\n".join(f"{k}: {v}" for k, v in self.fields().items())


def assess(
    claim: str,
    statistic: str,
    result: StatResult,
    *,
    excluded: Iterable[Excluded] = (),
) -> Evidence:
    """The verdict a test's result earns under its pre-stated criterion.

    "insufficient evidence" when fewer than ``criterion.min_n`` units remain or the design
    cannot reach α (:attr:`StatResult.testable`); otherwise "reproduced" when the result
    supports the claim, else "not reproduced".
    """
    c = result.criterion
    excluded = tuple(excluded)
    common = dict(
        claim=claim,
        statistic=statistic,
        criterion=c,
        result=result,
        excluded=excluded,
        effect_name=result.effect_name,
        unit=result.unit,
    )
    if result.n < c.min_n:
        dropped = f"; {len(excluded)} excluded" if excluded else ""
        needs = f"≥ {c.min_n} valid {result.unit} (have {result.n}{dropped})"
        return Evidence(verdict=INSUFFICIENT, needs=needs, **common)  # type: ignore[arg-type]
    if not result.testable:
        if result.min_p > c.alpha:
            needs = (
                f"more {result.unit}: with {result.n} the smallest possible p-value is "
                f"{_fmt(result.min_p)} > α = {c.alpha:g}"
            )
        else:
            needs = f"≥ 2 valid {result.unit} to estimate their spread (have {result.n})"
        return Evidence(verdict=INSUFFICIENT, needs=needs, **common)  # type: ignore[arg-type]
    verdict = REPRODUCED if result.supports_claim else NOT_REPRODUCED
    return Evidence(verdict=verdict, **common)  # type: ignore[arg-type]


def not_applicable(
    claim: str,
    statistic: str,
    criterion: Criterion,
    needs: str,
    *,
    effect_name: str = "effect",
    unit: str = "seeds",
) -> Evidence:
    """The finding's data are absent; ``needs`` says what would make it applicable."""
    return Evidence(claim, statistic, criterion, NOT_APPLICABLE, None, (), needs, effect_name, unit)


def insufficient(
    claim: str,
    statistic: str,
    criterion: Criterion,
    needs: str,
    *,
    excluded: Iterable[Excluded] = (),
    effect_name: str = "effect",
    unit: str = "seeds",
) -> Evidence:
    """The finding's data exist but no test can be formed from the valid part (every run
    excluded, or no block with two levels)."""
    return Evidence(
        claim, statistic, criterion, INSUFFICIENT, None, tuple(excluded), needs, effect_name, unit
    )


def split_valid(
    frame: pd.DataFrame,
    columns: Sequence[str],
    *,
    run: str = "run",
    status: str = "status",
) -> tuple[pd.DataFrame, tuple[Excluded, ...]]:
    """The rows that count as evidence, and the rest listed with their reason.

    A row counts when its ``status`` is ``finished`` (a frame without a status column counts
    every row) and every one of ``columns`` is a finite number.

    Args:
        frame: one row per run (e.g. :func:`sgdscope.report._data.sweep_frame`).
        columns: the values the finding reads.
        run: the column naming the run (its index is used when absent).
        status: the column holding the run status.
    """
    names = frame[run].astype(str) if run in frame else frame.index.astype(str).to_series()
    keep = np.ones(len(frame), dtype=bool)
    reasons: list[Excluded] = []
    statuses = frame[status].astype(str).to_numpy() if status in frame else None
    values = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(float) for c in columns}
    for i in range(len(frame)):
        if statuses is not None and statuses[i] not in VALID_STATUSES:
            keep[i] = False
            reasons.append(Excluded(names.iloc[i], statuses[i]))
            continue
        bad = [c for c in columns if not math.isfinite(values[c][i])]
        if bad:
            keep[i] = False
            reasons.append(Excluded(names.iloc[i], f"no finite {', '.join(bad)}"))
    return frame[keep], tuple(reasons)


def split_valid_runs(runs: Iterable[Any]) -> tuple[list[Any], tuple[Excluded, ...]]:
    """Runs (objects with ``.name`` and ``.status``) that count as evidence, and the rest."""
    valid, excluded = [], []
    for r in runs:
        if r.status in VALID_STATUSES:
            valid.append(r)
        else:
            excluded.append(Excluded(str(r.name), str(r.status)))
    return valid, tuple(excluded)
