"""The papers' numbers beside ours: one row per ``published:`` row of a recipe.

"ours" is read from the runs the row selects (``at``'s config keys), at the epoch or step it
names (else the metric's last value), from each valid (finished) run; it is their mean over runs
(seeds), with the standard deviation and the count. The ratio is ours / paper (none when the paper
says 0). When no run matches, the row says so (a small variant matches none of a paper table's
rows): the numbers are never compared across settings.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..recipes import Published, PublishedRow, Recipe, get_recipe, recipe_names
from ..store import Run, summarize_run
from ..store.summary import SUMMARY_FIELDS
from ._data import flatten, series

#: Columns of :func:`compare`'s table, in order.
COLUMNS = ("label", "metric", "paper", "ours", "sd", "runs", "ratio", "status")

NO_MATCH = "no run matches"
NOT_MEASURED = "not measured in the matching runs"


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == str(b)


def matches(run: Run, row: PublishedRow) -> bool:
    """Whether the run's resolved config has every value ``row.at`` selects."""
    flat = flatten(run.config)
    return all(k in flat and _same(flat[k], v) for k, v in row.selectors.items())


def value_of(run: Run, row: PublishedRow) -> float:
    """The row's metric in one run: at its epoch (mean over the epoch's stored values; stored
    epochs are 0-based) or step, else the last finite value; a summary field as summarised."""
    if row.metric in SUMMARY_FIELDS and not row.at.keys() & {"epoch", "step"}:
        v = summarize_run(run)[row.metric]
        return float(v) if isinstance(v, (int, float)) else math.nan
    if row.epoch is not None:
        df = run.scalars
        hit = df[(df.name == row.metric) & (df.epoch == row.epoch - 1)].value.to_numpy(float)
        hit = hit[np.isfinite(hit)]
        return float(hit.mean()) if len(hit) else math.nan
    s = series(run, row.metric)
    if s is None:
        return math.nan
    if row.step is not None:
        return float(s.loc[row.step]) if row.step in s.index else math.nan
    return float(s.iloc[-1])


def compare(runs: list[Run], published: Published) -> pd.DataFrame:
    """One row per published number: label, metric, paper, ours (mean over the matching valid
    runs), sd (over them, ddof = 1), runs (how many), ratio (ours / paper), status (empty, or why
    there is no number)."""
    out = []
    for row in published.rows:
        chosen = [r for r in runs if matches(r, row)]
        valid = [r for r in chosen if summarize_run(r)["status"] == "finished"]
        values = np.array([value_of(r, row) for r in valid], dtype=float)
        values = values[np.isfinite(values)]
        status = ""
        if not chosen:
            status = NO_MATCH
        elif not valid:
            status = f"{len(chosen)} matching run(s), none finished"
        elif not len(values):
            status = NOT_MEASURED
        ours = float(values.mean()) if len(values) else math.nan
        sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        ratio = ours / row.value if row.value != 0 and math.isfinite(ours) else math.nan
        out.append(
            {
                "label": row.label,
                "metric": row.metric + (f" ({row.unit})" if row.unit else ""),
                "paper": row.value,
                "ours": ours,
                "sd": sd,
                "runs": len(values),
                "ratio": ratio,
                "status": status + (f"; {row.note}" if row.note else ""),
            }
        )
    return pd.DataFrame(out, columns=list(COLUMNS))


def recipe_of(runs: list[Run]) -> Recipe | None:
    """The packaged recipe the runs came from (their config ``name``), if it has published
    numbers."""
    names = {str(r.config.get("name", "")) for r in runs}
    if len(names) != 1:
        return None
    (name,) = names
    if name not in recipe_names():
        return None
    recipe = get_recipe(name)
    return recipe if recipe.published is not None else None


def _num(v: float, digits: int = 3) -> str:
    if not math.isfinite(v):
        return "–"
    return f"{v:.{digits}g}"


def compare_text(table: pd.DataFrame, source: str) -> str:
    """``paper | ours | ratio`` as aligned text lines, headed by the source."""
    lines = [f"The paper's numbers beside ours ({source}):"]
    width = max([len(str(v)) for v in table.label] + [5])
    lines.append(f"  {'':{width}}  {'paper':>8}  {'ours':>16}  {'ratio':>6}")
    for r in table.itertuples(index=False):
        ours = _num(r.ours)
        if math.isfinite(r.sd):
            ours += f" ± {_num(r.sd, 2)}"
        if r.runs:
            ours += f" (n={r.runs})"
        line = f"  {r.label:{width}}  {_num(r.paper):>8}  {ours:>16}  {_num(r.ratio):>6}"
        if r.status:
            line += f"  {r.status}"
        lines.append(line)
    return "\n".join(lines)
