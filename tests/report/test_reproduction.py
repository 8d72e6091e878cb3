"""The reproduction report's tables: each finding from the recipe designed for it, per seed and
overall; other applicable rules apart; seeds that differ between recipes line up."""

from __future__ import annotations

from pathlib import Path

from sgdscope.recipes import get_recipe
from sgdscope.report.findings import (
    INSUFFICIENT,
    NOT_APPLICABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Finding,
)
from sgdscope.report.reproduction import (
    RecipeOutcome,
    finding_table,
    summary_text,
    verdict_table,
)


def _f(fid: str, verdict: str) -> Finding:
    return Finding(fid, fid.split(".")[0], "statement.", "rule", verdict)


def _outcome(name: str, overall: dict[str, str], per_seed: dict[int, dict[str, str]]):
    o = RecipeOutcome(get_recipe(name), Path(name), list(per_seed), 1.0)
    o.findings = [_f(k, v) for k, v in overall.items()]
    o.per_seed = {s: [_f(k, v) for k, v in d.items()] for s, d in per_seed.items()}
    return o


def _outcomes() -> list[RecipeOutcome]:
    # a-alignment is designed for A.alignment; A.lambda_peak merely applies to its runs.
    a = _outcome(
        "a-alignment",
        {"A.alignment": REPRODUCED, "A.lambda_peak": NOT_REPRODUCED, "B.gd_cosine": NOT_APPLICABLE},
        {
            s: {"A.alignment": v, "A.lambda_peak": INSUFFICIENT, "B.gd_cosine": NOT_APPLICABLE}
            for s, v in zip((0, 1, 2), (REPRODUCED, REPRODUCED, NOT_REPRODUCED), strict=True)
        },
    )
    # eos-adam sweeps seeds 1-3, and its designed finding is not applicable: still reported.
    b = _outcome(
        "eos-adam",
        {"beyond.eos_adam.hovers": NOT_APPLICABLE},
        {s: {"beyond.eos_adam.hovers": NOT_APPLICABLE} for s in (1, 2, 3)},
    )
    return [a, b]


def test_designated_findings_only_and_seed_columns_in_order() -> None:
    table = verdict_table(_outcomes())
    assert list(table.columns) == ["recipe", "finding", "seed 0", "seed 1", "seed 2", "seed 3",
                                   "overall"]  # fmt: skip
    assert table.finding.tolist() == ["A.alignment", "beyond.eos_adam.hovers"]
    row = table.iloc[1].to_dict()
    assert row["seed 0"] == "" and row["seed 3"] == NOT_APPLICABLE
    assert table.iloc[0]["seed 2"] == NOT_REPRODUCED and table.iloc[0]["overall"] == REPRODUCED


def test_incidental_verdicts_are_apart() -> None:
    other = verdict_table(_outcomes(), incidental=True)
    assert other.finding.tolist() == ["A.lambda_peak"]  # applicable, not designed: listed apart
    assert "A.lambda_peak" not in finding_table(_outcomes()).finding.tolist()


def test_finding_table_lists_each_seed_alone() -> None:
    ft = finding_table(_outcomes())
    assert ft.to_dict("records")[0] == {
        "finding": "A.alignment",
        "recipe": "a-alignment",
        "overall": REPRODUCED,
        "each seed alone": "0:✓ 1:✓ 2:✗",
    }
    assert ft.iloc[1]["each seed alone"] == "1:· 2:· 3:·"


def test_summary_text_marks_line_up() -> None:
    text = summary_text(_outcomes())
    lines = text.splitlines()
    assert lines[0].split() == ["recipe", "finding", "0", "1", "2", "3", "overall"]
    assert "A.lambda_peak" not in text
