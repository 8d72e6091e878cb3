"""The ``sgdscope`` command line: thin commands over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from ._errors import run_guarded
from ._format import console, metrics_table, runs_table

app = typer.Typer(
    name="sgdscope",
    help="Train networks while measuring how SGD moves through their loss landscape.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="dotted key=value overrides applied in order, e.g. optim.lr=0.05"),
]


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config file (or a recipe name)")],
    overrides: Overrides = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run directory")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out")] = False,
) -> None:
    """Train one run from a config.

    Example: sgdscope run my.yaml optim.lr=0.05 train.epochs=10 --out runs/lr005
    """
    from ..train import run as run_fn

    path = run_fn(_config_source(config), overrides or [], out=out, resume=resume)
    _summary(path)


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="run directory to continue")]) -> None:
    """Continue a killed or interrupted run from its last checkpoint.

    Example: sgdscope resume runs/run-20260101-120000
    """
    from ..train import resume_run

    _summary(resume_run(run_dir))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the demo's runs")] = Path(
        "runs/demo"
    ),
) -> None:
    """Run the small demo on embedded data and print what it measured.

    Example: sgdscope demo --out runs/demo
    """
    from ..demo import run_demo

    run_demo(out)


@app.command("ls")
def ls_cmd(
    directory: Annotated[Path, typer.Argument(help="folder of runs (or one run)")] = Path("runs"),
) -> None:
    """List runs with status, steps and last metrics.

    Example: sgdscope ls runs
    """
    from ..store import list_runs

    runs = list_runs(directory)
    if not runs:
        console.print(f"no runs in {directory}")
        return
    console.print(runs_table(runs))


@app.command()
def show(run_dir: Annotated[Path, typer.Argument(help="run directory")]) -> None:
    """Show a run's config, status and last metrics.

    Example: sgdscope show runs/run-20260101-120000
    """
    from ..store import load_run

    r = load_run(run_dir)
    info = r.info
    console.print(
        f"[bold]{r.path}[/bold]  status: {info['status']}  last step: {info['last_step']}"
    )
    if info.get("error"):
        console.print(f"error: {info['error'].splitlines()[0]}")
    console.print(yaml.safe_dump(r.config, sort_keys=False).rstrip())
    console.print(metrics_table(r))


@app.command("config-reference")
def config_reference_cmd() -> None:
    """Print every config key with its default and meaning (Markdown).

    Example: sgdscope config-reference > config.md
    """
    from ..config import config_reference

    print(config_reference())


def _config_source(config: Path) -> Path:
    if config.exists():
        return config
    try:
        from ..recipes import recipe_path
    except ImportError:
        return config
    found = recipe_path(str(config))
    return found if found is not None else config


def _summary(path: Path) -> None:
    from ..store import load_run

    r = load_run(path)
    console.print(f"run {r.status}: {r.path}")
    console.print(metrics_table(r, ["train_loss", "train_acc", "val_acc", "test_acc"]))


def _mount_optional() -> None:
    try:
        from .data_cmd import app as data_app
    except ImportError:
        return
    app.add_typer(data_app, name="data", help="List and download datasets.")


_mount_optional()


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv

    def call() -> None:
        command.main(args=args, prog_name="sgdscope", standalone_mode=False)

    code = run_guarded(call)
    if code:
        raise SystemExit(code)
