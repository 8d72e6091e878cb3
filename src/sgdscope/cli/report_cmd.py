"""``sgdscope report RUN_OR_SWEEP_DIR [--out DIR]``: a thin wrapper of ``write_report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    path: Annotated[Path, typer.Argument(help="run directory or sweep directory")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="output folder or .html file (default: inside RUN_OR_SWEEP_DIR)"
        ),
    ] = None,
) -> None:
    """Write the self-contained HTML report (figures, tables, findings) and print its path.

    Example: sgdscope report runs/demo/digits-mlp --out reports/digits
    """
    from ..report import write_report

    typer.echo(str(write_report(path, out)))
