"""The ``sgdscope`` command line: thin commands over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from ._errors import interruptible, run_guarded
from ._format import console, metrics_table, print_table, runs_table
from .data_cmd import app as data_app
from .report_cmd import report

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

Device = Annotated[
    str | None,
    typer.Option(
        "--device", "-d", help="cpu, cuda, cuda:N, mps or auto (overrides the config's device)"
    ),
]


@app.command()
def run(
    config: Annotated[str, typer.Argument(help="YAML config file, or a recipe name")],
    overrides: Overrides = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run directory")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out")] = False,
    variant: Variant = "small",
    device: Device = None,
) -> None:
    """Train one run from a config file or a recipe.

    Ctrl-C or SIGTERM ends it after the step in flight with a checkpoint (exit 130 / 143);
    a second Ctrl-C stops at once. Continue it with `sgdscope resume RUN_DIR`.

    Example: sgdscope run my.yaml optim.lr=0.05 train.epochs=10 --out runs/lr005
    """
    from ..api import run as run_fn

    path = interruptible(
        lambda: run_fn(config, overrides, variant=variant, out=out, resume=resume, device=device)
    )
    _summary(path)


@app.command()
def sweep(
    recipe: Annotated[str, typer.Argument(help="recipe name or recipe YAML with a grid")],
    overrides: Overrides = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="sweep directory")] = None,
    workers: Annotated[int, typer.Option("--workers", "-w", help="parallel processes")] = 1,
    variant: Variant = "small",
    executor: Annotated[str, typer.Option(help="local (process pool) or serial")] = "local",
) -> None:
    """Run every point of a recipe's grid (skips finished runs; failures do not stop others).

    Example: sgdscope sweep a-peak-vs-lr --workers 2 --out runs/peak-lr
    """
    from ..recipes import resolve_source
    from ..sweep import load_sweep, run_sweep

    source, grid, base_overrides = resolve_source(recipe, variant)
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
    )
    s = load_sweep(path)
    console.print(f"sweep: {path}")
    cols = [
        c
        for c in [
            "run",
            "status",
            "train_loss",
            "val_acc",
            "test_acc",
            "peak_lambda_1",
            "mean_grad_cosine",
            "distance",
        ]
        if c in s.summary
    ]
    console.print(s.summary[cols].to_string(index=False))


@app.command()
def recipes() -> None:
    """List the packaged recipes: one per figure or table of the two papers.

    Example: sgdscope recipes
    """
    from rich.table import Table

    from ..config.grid import expand_grid
    from ..recipes import list_recipes

    t = Table("recipe", "paper", "reproduces", "runs (small)", "title")
    for r in list_recipes():
        _, grid, _ = r.resolve("small")
        t.add_row(r.name, r.paper, r.reproduces, str(len(expand_grid(grid))), r.title)
    print_table(t)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="run directory to continue")],
    device: Device = None,
) -> None:
    """Continue a killed, interrupted or stale run from its last good checkpoint.

    Example: sgdscope resume runs/run-20260101-120000
    """
    from ..train import resume_run

    _summary(interruptible(lambda: resume_run(run_dir, device=device)))


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the demo's runs")] = Path(
        "runs/demo"
    ),
    workers: Annotated[int, typer.Option("--workers", "-w", help="parallel processes")] = 2,
    quick: Annotated[
        bool, typer.Option("--quick", help="a few steps per run (smoke test)")
    ] = False,
) -> None:
    """Run small experiments on embedded data that test both papers' findings; write reports.

    Example: sgdscope demo --out runs/demo
    """
    from ..demo import run_demo

    run_demo(out, workers=workers, quick=quick)


@app.command("ls")
def ls_cmd(
    directory: Annotated[
        Path, typer.Argument(help="folder of runs, sweeps or demos (or one run)")
    ] = Path("runs"),
) -> None:
    """List the runs under a folder, at any depth, with status, steps and last metrics.

    Status `stale`: the store says running but its process is gone (killed, out of memory);
    continue it with `sgdscope resume RUN_DIR`.

    Example: sgdscope ls runs
    """
    from ..store import list_runs

    runs = list_runs(directory)
    if not runs:
        console.print(f"no runs in {directory}")
        return
    print_table(runs_table(runs, directory))


@app.command()
def show(
    run_dir: Annotated[Path, typer.Argument(help="run directory, or a sweep directory")],
) -> None:
    """Show a run's config, status and last metrics; for a sweep, a summary of its runs.

    Example: sgdscope show runs/run-20260101-120000
    """
    from ..store import is_run_dir, list_runs, load_run
    from ..sweep import is_sweep_dir

    if is_sweep_dir(run_dir):
        _show_sweep(run_dir)
        return
    if not is_run_dir(run_dir) and run_dir.is_dir():
        runs = list_runs(run_dir)
        if runs:
            console.print(f"{run_dir}: a folder of {len(runs)} runs (show one of them for more)")
            print_table(runs_table(runs, run_dir))
            return
    r = load_run(run_dir)
    info = r.info
    console.print(
        f"[bold]{r.path}[/bold]  status: {_status_text(info, r.holder)}  "
        f"last step: {info.get('last_step')}",
        highlight=False,
    )
    if info.get("error"):
        console.print(f"error: {info['error'].splitlines()[0]}", highlight=False)
    for problem in r.problems:
        console.print(f"warning: {problem}", highlight=False)
    if r.config:
        console.print(yaml.safe_dump(r.config, sort_keys=False).rstrip(), highlight=False)
    if info["status"] != "damaged":
        print_table(metrics_table(r))


def _status_text(info: dict, holder: dict | None) -> str:
    status = info["status"]
    holder = holder or {}
    if status == "stale":
        return (
            f"stale (stored as {info.get('stored_status')}, but no process holds the run: it "
            "was killed or lost; continue it with `sgdscope resume`)"
        )
    if status in ("running", "created") and holder.get("pid"):
        return f"{status} (process {holder['pid']})"
    return str(status)


def _show_sweep(path: Path) -> None:
    from rich.table import Table

    from ..sweep import load_sweep

    s = load_sweep(path)
    summary = s.summary
    console.print(
        f"[bold]{path}[/bold]  sweep over {', '.join(s.grid_keys) or '(no grid)'}: "
        f"{len(summary)} runs, "
        + ", ".join(f"{n} {k}" for k, n in summary["status"].value_counts().items()),
        highlight=False,
    )
    metrics = [
        c
        for c in ("train_loss", "val_acc", "test_acc", "peak_lambda_1", "mean_grad_cosine")
        if c in summary and summary[c].notna().any()
    ]
    cols = ["run", "status", *metrics]
    t = Table(*cols)
    for _, row in summary.iterrows():
        t.add_row(*(_fmt(row.get(c)) for c in cols))
    print_table(t)


def _fmt(v: object) -> str:
    from ._format import fmt

    return fmt(v) if isinstance(v, (int, float)) or v is None else str(v)


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
    console.print(metrics_table(r, ["train_loss", "train_acc", "val_acc", "test_acc"]))


app.add_typer(data_app, name="data", help="List and download datasets.")
app.command("report")(report)


def _log_warnings_to_stderr() -> None:
    """Library warnings (``sgdscope`` logger: a damaged checkpoint set aside...) as one line."""
    import logging

    class _Stderr(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # sys.stderr looked up at each message: tests and notebooks swap it.
            print(f"warning: {' '.join(record.getMessage().split())}", file=sys.stderr)

    log = logging.getLogger("sgdscope")
    if not any(type(h).__name__ == "_Stderr" for h in log.handlers):
        log.addHandler(_Stderr(logging.WARNING))
        log.propagate = False


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    _log_warnings_to_stderr()

    def call() -> object:
        return command.main(args=args, prog_name="sgdscope", standalone_mode=False)

    code = run_guarded(call)
    if code:
        raise SystemExit(code)
