"""Reproduce both papers at small scale: every recipe's small variant over its seeds, judged.

:func:`reproduce` runs each packaged figure/table recipe's ``small`` variant as a sweep over its
seeds (the recipe's ``seeds:``, else :data:`DEFAULT_SEEDS`), writes each sweep's own report, then
one reproduction report — ``REPRODUCTION.md``, ``reproduction.html`` and ``verdicts.csv`` in the
output folder — with every applicable finding's verdict per seed and overall, each recipe's
"paper | ours | ratio" table, and the wall time. ``sgdscope reproduce`` is a thin wrapper.

``quick=True`` is a smoke test of the pipeline (:data:`QUICK_RECIPES`, a few steps per run, two
seeds); its verdicts say nothing about the papers.
"""

from __future__ import annotations

import datetime as _dt
import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import SgdscopeError
from ..recipes import Recipe, get_recipe, list_recipes
from ._data import open_target
from ._published import compare, compare_text
from .findings import NOT_APPLICABLE, Finding, judge, judge_per_seed
from .html import write_report

#: Seeds of a small variant whose recipe names none.
DEFAULT_SEEDS = (0, 1, 2)
#: The recipes and budget of ``quick`` (a smoke test: a few updates per run, two seeds).
QUICK_RECIPES = ("b-cosine-vs-lr", "b-barriers")
QUICK_OVERRIDES = ("train.steps=4", "train.progress=false")
QUICK_SEEDS = (0, 1)
REPORT_MD = "REPRODUCTION.md"
REPORT_HTML = "reproduction.html"
VERDICTS_CSV = "verdicts.csv"
SMOKE_TEST = (
    "--quick: a few steps per run. A smoke test of the pipeline; its verdicts say nothing about "
    "the papers (run `sgdscope reproduce` for the real thing)."
)
_MARK = {
    "reproduced": "✓",
    "not reproduced": "✗",
    "insufficient evidence": "?",
    "not applicable": "·",
}


@dataclass
class RecipeOutcome:
    """One recipe's sweep and its verdicts."""

    recipe: Recipe
    path: Path
    seeds: list[int]
    seconds: float
    findings: list[Finding] = field(default_factory=list)
    per_seed: dict[Any, list[Finding]] = field(default_factory=dict)
    published: pd.DataFrame | None = None
    report: Path | None = None
    error: str = ""
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def applicable(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict != NOT_APPLICABLE]

    @property
    def designated(self) -> list[Finding]:
        """The findings the recipe is designed to judge (its ``findings:``), applicable or not
        (a designed finding that is not applicable is itself a result: the runs lack its data);
        for a recipe that names none, every applicable finding."""
        if not self.recipe.findings:
            return self.applicable
        return [f for f in self.findings if f.id in self.recipe.findings]

    @property
    def incidental(self) -> list[Finding]:
        """Applicable findings the recipe was not designed for: other rules whose data its runs
        happen to hold (e.g. λ₁'s peak on a 4-epoch alignment run). Reported apart, never as
        the finding's verdict."""
        own = {f.id for f in self.designated}
        return [f for f in self.applicable if f.id not in own]

    def seed_verdicts(self, finding_id: str) -> dict[Any, str]:
        """The finding's verdict on each seed's runs judged alone, by seed."""
        return {
            seed: next(x.verdict for x in fs if x.id == finding_id)
            for seed, fs in self.per_seed.items()
        }


def select_recipes(names: Sequence[str] | None = None, *, quick: bool = False) -> list[Recipe]:
    """The recipes to run: ``names`` (in that order), else :data:`QUICK_RECIPES` for ``quick``,
    else every figure/table recipe with a small variant."""
    if names:
        return [get_recipe(n) for n in names]
    if quick:
        return [get_recipe(n) for n in QUICK_RECIPES]
    return [r for r in list_recipes(demo=False) if "small" in r.variants]


def run_recipe(
    recipe: Recipe,
    out: Path,
    *,
    seeds: Sequence[int] | None = None,
    quick: bool = False,
    workers: int = 1,
    executor: str = "local",
) -> RecipeOutcome:
    """Run one recipe's small variant over its seeds into ``out / recipe.name``, write its
    report, and judge it (overall and per seed)."""
    from ..sweep import run_sweep

    config, grid, overrides = recipe.resolve("small")
    if seeds is None:
        seeds = QUICK_SEEDS if quick else (recipe.variant_seeds("small") or DEFAULT_SEEDS)
    seed_list = list(seeds)
    if quick:
        overrides = [*overrides, *QUICK_OVERRIDES]
    path = out / recipe.name
    t0 = time.perf_counter()
    try:
        run_sweep(
            config,
            grid,
            path,
            overrides=overrides,
            workers=workers,
            executor=executor,
            seeds=seed_list,
        )
    except SgdscopeError as e:
        return RecipeOutcome(recipe, path, seed_list, time.perf_counter() - t0, error=str(e))
    seconds = time.perf_counter() - t0
    target = open_target(path)
    outcome = RecipeOutcome(recipe, path, seed_list, seconds)
    outcome.statuses = pd.Series([r.status for r in target.runs]).value_counts().to_dict()
    outcome.findings = judge(target)
    outcome.per_seed = judge_per_seed(target)
    if recipe.published is not None:
        outcome.published = compare(list(target.runs), recipe.published)
    outcome.report = write_report(path, run_figures=False, published=recipe.published)
    return outcome


def reproduce(
    out: str | Path,
    *,
    recipes: Sequence[str] | None = None,
    quick: bool = False,
    workers: int = 1,
    seeds: Sequence[int] | None = None,
    executor: str = "local",
    echo: Callable[[str], None] | None = None,
) -> list[RecipeOutcome]:
    """Run every recipe's small variant over its seeds and write the reproduction report.

    Args:
        out: the output folder (one sweep folder per recipe, and the report files).
        recipes: recipe names to run (default: all figure/table recipes; ``quick``: a subset).
        quick: a smoke test (a few steps per run, two seeds); not evidence.
        workers: parallel worker processes per sweep.
        seeds: seeds for every recipe (default: each recipe's ``seeds:``, else 0, 1, 2).
        executor: the sweep executor (``local`` process pool or ``serial``).
        echo: called with one line of progress after each recipe.

    Returns:
        One outcome per recipe, in order; the report is in ``out`` (:data:`REPORT_MD`,
        :data:`REPORT_HTML`, :data:`VERDICTS_CSV`).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = select_recipes(recipes, quick=quick)
    outcomes = []
    t0 = time.perf_counter()
    for i, recipe in enumerate(chosen, start=1):
        o = run_recipe(recipe, out, seeds=seeds, quick=quick, workers=workers, executor=executor)
        outcomes.append(o)
        if echo is not None:
            what = (
                o.error
                or ", ".join(f"{f.id} {_MARK[f.verdict]}" for f in o.designated)
                or "no applicable finding"
            )
            echo(f"[{i}/{len(chosen)}] {recipe.name} ({o.seconds:.0f} s): {what}")
    total = time.perf_counter() - t0
    write_reproduction(out, outcomes, total, quick=quick, workers=workers)
    return outcomes


# --------------------------------------------------------------------------- the report
def verdict_table(outcomes: Sequence[RecipeOutcome], *, incidental: bool = False) -> pd.DataFrame:
    """One row per (recipe, finding it is designed to judge): the verdict on each seed alone
    and overall; ``incidental=True``: the other applicable findings instead."""
    rows = []
    for o in outcomes:
        for f in o.incidental if incidental else o.designated:
            row: dict[str, Any] = {"recipe": o.recipe.name, "finding": f.id}
            row.update({f"seed {k}": v for k, v in o.seed_verdicts(f.id).items()})
            row["overall"] = f.verdict
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    # recipes sweep different seeds: every seed column in numeric order, then overall; a
    # recipe that did not run a seed has an empty cell there
    seeds = sorted(
        (c for c in table.columns if c.startswith("seed ")),
        key=lambda c: (0, int(c[5:])) if c[5:].lstrip("-").isdigit() else (1, c),
    )
    return table[["recipe", "finding", *seeds, "overall"]].fillna("")


def finding_table(outcomes: Sequence[RecipeOutcome]) -> pd.DataFrame:
    """One row per finding judged by a recipe designed for it, in the rules' order: the
    recipe, the overall verdict, and each seed's verdict judged alone (``10:✓ 11:?``)."""
    from .findings import RULES
    from .findings_beyond import BEYOND_RULES

    order = {r: i for i, r in enumerate([r.id for r in RULES] + [r.id for r in BEYOND_RULES])}
    rows = []
    for o in outcomes:
        for f in o.designated:
            per = o.seed_verdicts(f.id)
            rows.append(
                {
                    "finding": f.id,
                    "recipe": o.recipe.name,
                    "overall": f.verdict,
                    # a trend across seeds is "?" on each seed alone by construction
                    "each seed alone": " ".join(f"{k}:{_MARK[v]}" for k, v in per.items()),
                }
            )
    rows.sort(key=lambda r: (order.get(r["finding"], len(order)), r["recipe"]))
    return pd.DataFrame(rows, columns=["finding", "recipe", "overall", "each seed alone"])


def summary_text(outcomes: Sequence[RecipeOutcome]) -> str:
    """The verdict table as aligned text: ✓ reproduced, ✗ not, ? insufficient, · n/a."""
    table = verdict_table(outcomes)
    if table.empty:
        return "no applicable finding"
    seed_cols = [c for c in table.columns if c.startswith("seed ")]
    w1 = max(len("recipe"), *(len(x) for x in table.recipe))
    w2 = max(len("finding"), *(len(x) for x in table.finding))
    head = f"{'recipe':{w1}}  {'finding':{w2}}  " + " ".join(
        f"{c.removeprefix('seed '):>2}" for c in seed_cols
    )
    lines = [head + "  overall"]
    for r in table.to_dict("records"):
        marks = " ".join(f"{_MARK.get(r.get(c), ' '):>2}" for c in seed_cols)
        lines.append(f"{r['recipe']:{w1}}  {r['finding']:{w2}}  {marks}  {r['overall']}")
    lines.append("✓ reproduced, ✗ not reproduced, ? insufficient evidence, · not applicable")
    return "\n".join(lines)


def write_reproduction(
    out: Path,
    outcomes: Sequence[RecipeOutcome],
    seconds: float,
    *,
    quick: bool = False,
    workers: int = 1,
) -> Path:
    """Write ``REPRODUCTION.md``, ``reproduction.html`` and ``verdicts.csv`` into ``out``."""
    table = verdict_table(outcomes)
    long = [
        {"recipe": o.recipe.name, "finding": f.id, "seed": seed, "verdict": f.verdict}
        for o in outcomes
        for seed, fs in [*o.per_seed.items(), ("overall", o.findings)]
        for f in fs
    ]
    pd.DataFrame(long, columns=["recipe", "finding", "seed", "verdict"]).to_csv(
        out / VERDICTS_CSV, index=False
    )
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    md = [
        "# Reproduction of both papers at small scale",
        "",
        f"`sgdscope reproduce{' --quick' if quick else ''} --workers {workers}` — {stamp}, "
        f"{seconds / 60:.1f} min in all.",
        "",
    ]
    if quick:
        md += [f"**{SMOKE_TEST}**", ""]
    overview = finding_table(outcomes)
    if not overview.empty:
        counts = overview["overall"].value_counts()
        md += [
            "## Every finding, judged by the recipe designed for it",
            "",
            ", ".join(f"{counts.get(v, 0)} {v}" for v in _MARK) + f" of {len(overview)}.",
            "",
        ]
        md += _md_table(overview)
    md += [
        "## Verdicts per seed",
        "",
        "Per seed (that seed's runs judged alone) and overall (all seeds): ✓ reproduced, ✗ not "
        "reproduced, ? insufficient evidence, · not applicable. A trend across seeds is "
        "insufficient evidence on one seed by construction.",
        "",
    ]
    md += _md_table(table)
    other = verdict_table(outcomes, incidental=True)
    if not other.empty:
        md += [
            "## Other rules these runs happen to hold data for",
            "",
            "Not what the recipe was designed for (e.g. λ₁'s peak judged on a 4-epoch alignment "
            "run), so never a finding's verdict; listed so that nothing judged is hidden.",
            "",
        ]
        md += _md_table(other)
    md += ["## Per recipe", ""]
    for o in outcomes:
        runs = ", ".join(f"{n} {s}" for s, n in o.statuses.items())
        md.append(
            f"### `{o.recipe.name}` — {o.recipe.title} ({o.recipe.reproduces}); seeds "
            f"{', '.join(map(str, o.seeds))}; {o.seconds:.0f} s"
        )
        md.append("")
        if o.error:
            md += [f"Not run: {o.error}", ""]
            continue
        md.append(f"Runs: {runs}. Report: `{o.report.relative_to(out) if o.report else ''}`.")
        md.append("")
        for f in o.designated:
            md.append(f"- **{f.id}** — {f.verdict}: {f.statement}")
            if f.needs:
                md.append(f"  - needs: {f.needs}")
            for p in f.parts:
                md.append(
                    f"  - {p.claim} — {p.verdict}; {p.effect_text}; {p.uncertainty_text}"
                    + (f"; needs {p.needs}" if p.needs else "")
                    + (f"; excluded: {', '.join(map(str, p.excluded))}" if p.excluded else "")
                )
        if o.published is not None and o.recipe.published is not None:
            md += ["", "```", compare_text(o.published, o.recipe.published.source), "```"]
        md.append("")
    (out / REPORT_MD).write_text("\n".join(md), encoding="utf-8")
    _write_html(out, outcomes, table, "\n".join(md), quick)
    return out / REPORT_MD


def _md_table(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return []
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for r in table.to_dict("records"):
        cells = [
            f"`{r[c]}`" if c in ("recipe", "finding") else f"{_MARK.get(str(r[c]), '')} {r[c]}"
            for c in cols
        ]
        lines.append("| " + " | ".join(cell.strip() for cell in cells) + " |")
    return [*lines, ""]


def _write_html(
    out: Path, outcomes: Sequence[RecipeOutcome], table: pd.DataFrame, md: str, quick: bool
) -> None:
    esc = html.escape
    links = "".join(
        f"<li><a href='{esc(str(o.report.relative_to(out)))}'>{esc(o.recipe.name)}</a></li>"
        for o in outcomes
        if o.report is not None
    )
    body = table.to_html(index=False, border=0, classes="data", escape=True) if len(table) else ""
    overview = finding_table(outcomes)
    first = (
        "<h2>Every finding, judged by the recipe designed for it</h2>"
        + overview.to_html(index=False, border=0, classes="data", escape=True)
        if len(overview)
        else ""
    )
    smoke = f"<p><b>{esc(SMOKE_TEST)}</b></p>" if quick else ""
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>sgdscope reproduction</title><style>body{font-family:system-ui,sans-serif;"
        "max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;"
        "font-size:.85em}td,th{padding:.2em .5em;border-bottom:1px solid #eee;text-align:left}"
        "pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}</style></head><body>"
        f"<h1>Reproduction of both papers at small scale</h1>{smoke}{first}"
        f"<h2>Verdicts per seed and overall</h2>{body}"
        f"<h2>Each recipe's report</h2><ul>{links}</ul>"
        f"<h2>Details</h2><pre>{esc(md)}</pre></body></html>\n"
    )
    (out / REPORT_HTML).write_text(page, encoding="utf-8")
