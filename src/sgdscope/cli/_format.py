"""Shared pieces of CLI output: tables of runs and metrics, printed without cutting names."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..store import Run

console = Console(soft_wrap=True)


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


KEY_METRICS = (
    "train_loss",
    "train_acc",
    "val_acc",
    "test_acc",
    "lambda_1",
    "grad_cosine",
    "distance",
    "height",
)


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
    for col in ("run", "status", "steps", "train_loss", "val_acc", "test_acc"):
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
            fmt(last.get("train_loss")),
            fmt(last.get("val_acc")),
            fmt(last.get("test_acc")),
        )
    return t


def metrics_table(run: Run, names: list[str] | None = None) -> Table:
    last = run.last()
    t = Table("metric", "last value")
    for k in sorted(last) if names is None else [n for n in names if n in last]:
        t.add_row(k, fmt(last[k]))
    return t
