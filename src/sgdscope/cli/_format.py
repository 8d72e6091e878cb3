"""Shared pieces of CLI output: tables of runs and metrics."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from ..store import Run

console = Console(soft_wrap=True)

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


def runs_table(runs: list[Run]) -> Table:
    t = Table(title=None, show_lines=False)
    for col in ("run", "status", "steps", "train_loss", "val_acc", "test_acc"):
        t.add_column(col)
    for r in runs:
        info = r.info
        last = r.last()
        t.add_row(
            r.name,
            info["status"],
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
