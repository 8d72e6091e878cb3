"""The ``sgdscope`` command line: thin commands over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from ._errors import run_guarded
from ._format import RUN_METRICS, SUMMARY_COLUMNS, console, frame_text, metrics_table, runs_table
from .data_cmd import app as data_app
from .demo_cmd import demo
from .export_cmd import export
from .report_cmd import report
from .reproduce_cmd import reproduce

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


Variant = Annotated[
    str, typer.Option("--variant", "-v", help="recipe variant: small (embedded data) or paper")
]


@app.command()
def run(
    config: Annotated[str, typer.Argument(help="YAML config file, or a recipe name")],
    overrides: Overrides = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run directory")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out")] = False,
    variant: Variant = "small",
) -> None:
    """Train one run from a config file or a recipe.

    Example: sgdscope run my.yaml optim.lr=0.05 train.epochs=10 --out runs/lr005
    """
    from ..api import run as run_fn

    _summary(run_fn(config, overrides, variant=variant, out=out, resume=resume))


@app.command()
def sweep(
    recipe: Annotated[str, typer.Argument(help="recipe name or recipe YAML with a grid")],
    overrides: Overrides = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="sweep directory")] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="parallel processes")] = 1,
    variant: Variant = "small",
    executor: Annotated[str, typer.Option(help="local (process pool) or serial")] = "local",
    seeds: Annotated[
        str | None,
        typer.Option(help="seeds crossed with the grid, e.g. 0,1,2 or 0-4 (default: the recipe's)"),
    ] = None,
) -> None:
    """Run every point of a recipe's grid (skips finished runs; failures do not stop others).

    Example: sgdscope sweep a-peak-vs-lr --workers 2 --seeds 0,1,2 --out runs/peak-lr
    """
    from ..config.grid import parse_seeds
    from ..recipes import resolve_seeds, resolve_source
    from ..sweep import load_sweep, run_sweep

    source, grid, base_overrides = resolve_source(recipe, variant)
    seed_list = parse_seeds(seeds) if seeds is not None else resolve_seeds(recipe, variant)
    if isinstance(source, Path):
        source = yaml.safe_load(source.read_text())
    name = source.get("name", Path(recipe).stem)
    out = out or Path("runs") / f"{name}-{variant}"
    path = run_sweep(
        source,
        grid,
        out,
        overrides=base_overrides + list(overrides or []),
        workers=workers,
        executor=executor,
        seeds=seed_list,
    )
    s = load_sweep(path)
    console.print(f"sweep: {path}")
    console.print(frame_text(s.summary, SUMMARY_COLUMNS))


@app.command()
def recipes() -> None:
    """List the packaged recipes: one per figure or table of the two papers, then the demo's.

    Example: sgdscope recipes
    """
    from rich.table import Table

    from ..config.grid import expand_grid
    from ..recipes import list_recipes

    t = Table("recipe", "paper", "reproduces", "runs (small)", "title")
    for r in list_recipes(demo=False):
        _, grid, _ = r.resolve("small")
        runs = len(expand_grid(grid, r.variant_seeds("small")))
        t.add_row(r.name, r.paper, r.reproduces, str(runs), r.title)
    console.print(t)
    d = Table("recipe", "paper", "runs (small / quick)", "title", title="the demo (sgdscope demo)")
    for r in list_recipes(demo=True):
        sizes = [len(expand_grid(r.resolve(v)[1])) for v in ("small", "quick")]
        d.add_row(r.name, r.paper, " / ".join(map(str, sizes)), r.title)
    console.print(d)


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="run directory to continue")]) -> None:
    """Continue a killed or interrupted run from its last checkpoint.

    Example: sgdscope resume runs/run-20260101-120000
    """
    from ..train import resume_run

    _summary(resume_run(run_dir))


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


def _summary(path: Path) -> None:
    from ..store import load_run

    r = load_run(path)
    console.print(f"run {r.status}: {r.path}")
    console.print(metrics_table(r, RUN_METRICS))


app.add_typer(data_app, name="data", help="List and download datasets.")
app.command("report")(report)
app.command("demo")(demo)
app.command("export")(export)
app.command("reproduce")(reproduce)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv

    def call() -> None:
        command.main(args=args, prog_name="sgdscope", standalone_mode=False)

    code = run_guarded(call)
    if code:
        raise SystemExit(code)
