"""``sgdscope reproduce``: every recipe's small variant over its seeds, judged, in one report.

A thin wrapper of :func:`sgdscope.report.reproduction.reproduce`: it prints one line per recipe
as it finishes, then the verdict table (per seed and overall) and where the report is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ._format import console


def reproduce(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="output folder (default runs/reproduce-…)")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="parallel processes")] = 2,
    seeds: Annotated[
        str | None,
        typer.Option(help="seeds for every recipe, e.g. 0,1,2 or 0-4 (default: each recipe's)"),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="a few steps per run on two recipes: a smoke test")
    ] = False,
    recipes: Annotated[
        str | None, typer.Option(help="comma-separated recipe names (default: all of them)")
    ] = None,
    executor: Annotated[str, typer.Option(help="local (process pool) or serial")] = "local",
) -> None:
    """Run every recipe's small variant over its seeds and write one report with every
    finding's verdict per seed and overall (REPRODUCTION.md, reproduction.html, verdicts.csv).

    Example: sgdscope reproduce --workers 2 --out runs/reproduce
    """
    from ..config.grid import parse_seeds
    from ..report.reproduction import REPORT_HTML, REPORT_MD, SMOKE_TEST, summary_text
    from ..report.reproduction import reproduce as reproduce_fn

    out = out or Path("runs") / time.strftime("reproduce-%Y%m%d-%H%M%S")
    names = [n.strip() for n in recipes.split(",") if n.strip()] if recipes else None
    seed_list = parse_seeds(seeds) if seeds is not None else None
    console.print(f"[bold]sgdscope reproduce[/bold] → {out} ({workers} worker processes)")
    if quick:
        console.print(f"[bold yellow]{SMOKE_TEST}[/bold yellow]")
    t0 = time.perf_counter()
    outcomes = reproduce_fn(
        out,
        recipes=names,
        quick=quick,
        workers=workers,
        seeds=seed_list,
        executor=executor,
        echo=lambda line: console.print(line, highlight=False),
    )
    console.print()
    console.print(summary_text(outcomes), highlight=False)
    if quick:
        console.print(f"[yellow]{SMOKE_TEST}[/yellow]")
    console.print(
        f"\nreproduce finished in {(time.perf_counter() - t0) / 60:.1f} min: "
        f"{out / REPORT_MD}, {out / REPORT_HTML}"
    )
