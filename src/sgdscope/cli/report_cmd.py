"""``sgdscope report RUN_OR_SWEEP_DIR [--out DIR]``: writes the HTML report, prints the verdicts
(the applicable findings; the page has them all) and, last, the page's path."""

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
    """Write the self-contained HTML report (figures, tables, findings), print the verdicts and,
    on the last line, the report's path.

    Example: sgdscope report runs/demo/digits-mlp --out reports/digits
    """
    from ..report import findings_text
    from ..report.html import report_with_findings

    page, findings = report_with_findings(path, out)
    typer.echo(findings_text(findings, include_na=False))
    typer.echo(str(page))
