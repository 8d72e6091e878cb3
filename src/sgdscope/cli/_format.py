"""Shared pieces of CLI output: tables of runs, metrics and sweep summaries, printed without
cutting names."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from .. import metrics as M

if TYPE_CHECKING:
    from ..store import Run

if TYPE_CHECKING:
    import pandas as pd

console = Console(soft_wrap=True)

#: The last metrics shown for a run (``sgdscope ls``, and after ``run`` / ``resume``).
RUN_METRICS = (M.TRAIN_LOSS, M.TRAIN_ACC, M.VAL_ACC, M.TEST_ACC)

#: The columns of a sweep summary printed by ``sgdscope sweep`` and ``sgdscope demo``, in order
#: (fields of :func:`sgdscope.store.summarize_run`; those no run measured are left out).
SUMMARY_COLUMNS = (
    "run",
    "status",
    "final_train_loss",
    "final_val_acc",
    "final_test_acc",
    "peak_lambda_1",
    "final_spectral_norm",
    "mean_alignment_top5",
    "mean_grad_cosine",
    "final_distance",
    "mean_height",
)


def print_table(table: Table) -> None:
    """Print a table whole: never an ellipsis in a name.

    On a terminal, long cells fold onto more lines within its width; into a pipe or a file (no
    width to respect), the table takes the width it needs, so ``grep`` sees every name whole.
    """
    for col in table.columns:
        col.overflow = "fold"
    if console.is_terminal:
        console.print(table)
        return
    wide = Console(width=100_000, soft_wrap=True)
    need = wide.measure(table).maximum
    Console(width=max(need, 80), soft_wrap=True).print(table)


def fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _label(run: Run, root: Path | None) -> str:
    if root is not None:
        try:
            rel = run.path.relative_to(root)
            return str(rel) if str(rel) != "." else run.name
        except ValueError:
            pass
    return run.name


def runs_table(runs: list[Run], root: Path | None = None) -> Table:
    """One row per run: its path relative to ``root``, status, steps and last metrics.

    A run that cannot be read (damaged store) still gets its row, with what is known.
    """
    t = Table(title=None, show_lines=False)
    for col in ("run", "status", "steps", M.TRAIN_LOSS, M.VAL_ACC, M.TEST_ACC):
        t.add_column(col)
    for r in runs:
        info = r.info
        try:
            last = r.last() if info["status"] != "damaged" else {}
        except Exception:  # a store readable for its status but not its rows
            last = {}
        unreadable = ", ".join(p.split()[0] for p in r.problems)
        status = info["status"] + (f" ({unreadable} unreadable)" if unreadable else "")
        t.add_row(
            _label(r, root),
            status,
            fmt(info.get("last_step")),
            fmt(last.get(M.TRAIN_LOSS)),
            fmt(last.get(M.VAL_ACC)),
            fmt(last.get(M.TEST_ACC)),
        )
    return t


def metrics_table(run: Run, names: Sequence[str] | None = None) -> Table:
    last = run.last()
    t = Table("metric", "last value")
    for k in sorted(last) if names is None else [n for n in names if n in last]:
        t.add_row(k, fmt(last[k]))
    return t


def frame_text(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A DataFrame as plain text: the given columns that are present and not all empty, numbers
    to 4 significant digits (``-`` for NaN)."""
    if columns is not None:
        frame = frame[[c for c in columns if c in frame]]
    frame = frame.loc[:, [c for c in frame if frame[c].notna().any() or c == "run"]]
    if frame.empty:
        return "(nothing measured)"
    return frame.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
