"""``sgdscope demo``: run the demo recipes as sweeps, write a report for each, print the tables
and the verdicts.

The experiments are packaged recipes marked ``demo: true`` (``demo-a``: paper A on digits,
``demo-b``: paper B on mnist1d); this command only runs them, in order, and prints what the
library computes: the sweep summary, the papers' tables and the findings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ._format import SUMMARY_COLUMNS, console, frame_text

#: Printed by ``--quick`` before the runs and under each part's verdicts.
SMOKE_TEST = (
    "--quick: a few steps per run. This is a smoke test of the pipeline; its verdicts say "
    "nothing about the papers (run `sgdscope demo` for the real thing)."
)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the demo's runs")] = Path(
        "runs/demo"
    ),
    workers: Annotated[int, typer.Option("--workers", "-w", help="parallel processes")] = 2,
    quick: Annotated[
        bool, typer.Option("--quick", help="a few steps per run: a smoke test, not evidence")
    ] = False,
) -> None:
    """Run the demo recipes (demo-a, demo-b) on embedded data: both papers' findings tested,
    one report per paper, the tables and the verdicts printed.

    Example: sgdscope demo --out runs/demo
    """
    from ..recipes import list_recipes
    from ..report import SWEEP_TABLES, findings_text, judge, write_report
    from ..report.findings import format_number
    from ..sweep import load_sweep, run_sweep

    variant = "quick" if quick else "small"
    root = out / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    recipes = list_recipes(demo=True)
    console.print(
        f"[bold]sgdscope demo[/bold] → {root}  ({workers} worker processes; recipes "
        f"{', '.join(r.name for r in recipes)}, variant {variant})"
    )
    if quick:
        console.print(f"[bold yellow]{SMOKE_TEST}[/bold yellow]")
    for recipe in recipes:
        config, grid, overrides = recipe.resolve(variant)
        t = time.perf_counter()
        path = run_sweep(config, grid, root / recipe.name, overrides=overrides, workers=workers)
        html = write_report(path)
        sweep = load_sweep(path)
        console.print(
            f"\n[bold]Paper {recipe.paper} — {recipe.title}[/bold] ({recipe.name}) — "
            f"{time.perf_counter() - t:.0f} s"
        )
        console.print(frame_text(sweep.summary, SUMMARY_COLUMNS))
        for caption, table in SWEEP_TABLES.items():
            frame = table(sweep)
            if frame is not None:
                console.print(f"\n{caption}")
                console.print(frame.to_string(index=False, float_format=format_number, na_rep="-"))
        console.print()
        console.print(findings_text(judge(path), include_na=False))
        if quick:
            console.print(f"[yellow]{SMOKE_TEST}[/yellow]")
        console.print(f"report: {html}")
    console.print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s: {root}")
