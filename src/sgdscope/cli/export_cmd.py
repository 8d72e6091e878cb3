"""``sgdscope export RUN_OR_FOLDER --format F [--out PATH]``: a thin wrapper of the exports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    path: Annotated[Path, typer.Argument(help="run directory, sweep, or any folder of runs")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="csv, parquet, jsonl or tensorboard")
    ] = "csv",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="file (a folder for tensorboard or a folder of runs); default beside PATH",
        ),
    ] = None,
) -> None:
    """Export a run's metrics (or every run below a folder) for pandas, TensorBoard, W&B, MLflow.

    csv holds the scalars (step, epoch, name, value); parquet and jsonl add the arrays;
    tensorboard writes event files (scalars, arrays as histograms). A folder of runs gives one
    file (or tensorboard folder) per run, named by the run's path under the folder.

    Example: sgdscope export runs/lr005 --format tensorboard --out tb/lr005
    """
    from ..store import is_run_dir, load_run
    from ..store.export import check_format, export_run, export_runs, find_runs

    fmt = check_format(fmt)
    one = is_run_dir(path)
    written = [export_run(path, fmt, out)] if one else export_runs(path, fmt, out)
    for p in written:
        typer.echo(str(p))
    if fmt == "csv":
        runs = [path] if one else find_runs(path)
        skipped = sorted({name for r in runs for name in load_run(r).array_names()})
        if skipped:
            shown = ", ".join(skipped[:4]) + (", ..." if len(skipped) > 4 else "")
            typer.echo(
                f"note: csv holds scalars only; arrays ({shown}) were left out: "
                "use --format parquet or jsonl",
                err=True,
            )
    if not one:
        n = len(written)
        typer.echo(f"exported {n} run{'' if n == 1 else 's'} ({fmt})", err=True)
