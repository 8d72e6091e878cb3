"""The ``sgdscope`` command line: thin commands over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ._errors import run_guarded
from ._format import RUN_METRICS, SUMMARY_COLUMNS, console, frame_text, metrics_table, runs_table
from .data_cmd import app as data_app
from .demo_cmd import demo
from .export_cmd import export
from .plan_cmd import plan
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


_EX = "Where the runs execute"

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
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", help="runs at once (local: processes; default 1)"),
    ] = None,
    variant: Variant = "small",
    seeds: Annotated[
        str | None,
        typer.Option(help="seeds crossed with the grid, e.g. 0,1,2 or 0-4 (default: the recipe's)"),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            "-e",
            help="local (process pool), serial, ray or slurm",
            rich_help_panel=_EX,
        ),
    ] = "local",
    device: Annotated[
        str | None, typer.Option(help="device of every run: auto, cpu, cuda, cuda:N")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="ray: cluster to join (auto, ray://host:10001); default: a local Ray instance",
            rich_help_panel=_EX,
        ),
    ] = None,
    cpus_per_run: Annotated[
        float | None,
        typer.Option(help="ray, slurm: CPUs per run (ray: fractions allowed)", rich_help_panel=_EX),
    ] = None,
    gpus_per_run: Annotated[
        float | None,
        typer.Option(help="ray, slurm: GPUs per run (ray: fractions allowed)", rich_help_panel=_EX),
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(
            help="ray, slurm: restarts of a run whose worker or job was lost (slurm: also "
            "requeues after time limits); default 3",
            rich_help_panel=_EX,
        ),
    ] = None,
    partition: Annotated[
        str | None, typer.Option(help="slurm: partition", rich_help_panel=_EX)
    ] = None,
    time: Annotated[
        str | None,
        typer.Option(
            help="slurm: time limit per job, minutes or [D-]HH:MM:SS (runs past it are "
            "requeued and resume)",
            rich_help_panel=_EX,
        ),
    ] = None,
    mem_gb: Annotated[
        float | None, typer.Option(help="slurm: memory per job in GB", rich_help_panel=_EX)
    ] = None,
    array: Annotated[
        bool | None,
        typer.Option(
            "--array/--no-array",
            help="slurm: one job array (default) or one job per run",
            rich_help_panel=_EX,
        ),
    ] = None,
    sbatch: Annotated[
        list[str] | None,
        typer.Option(
            help="slurm: extra #SBATCH option KEY=VALUE (repeatable), e.g. account=proj",
            rich_help_panel=_EX,
        ),
    ] = None,
    setup: Annotated[
        list[str] | None,
        typer.Option(
            help="slurm: shell line run before Python in each job (repeatable)",
            rich_help_panel=_EX,
        ),
    ] = None,
) -> None:
    """Run every point of a recipe's grid (skips finished runs; failures do not stop others).

    Example: sgdscope sweep a-peak-vs-lr --workers 2 --seeds 0,1,2 --out runs/peak-lr
    Example: sgdscope sweep a-peak-vs-lr --variant paper --executor ray --address auto
    --gpus-per-run 0.5 --device cuda --out /shared/runs/peak-lr
    """
    from ..config.grid import parse_seeds
    from ..recipes import resolve_seeds, resolve_source
    from ..sweep import SweepInterrupted, load_sweep, make_executor, run_sweep

    options = {
        "workers": workers,
        "address": address,
        "cpus_per_run": cpus_per_run,
        "gpus_per_run": gpus_per_run,
        "max_retries": max_retries,
        "partition": partition,
        "time": time,
        "mem_gb": mem_gb,
        "array": array,
        "sbatch": _key_values(sbatch, "--sbatch") if sbatch else None,
        "setup": setup or None,
    }
    ex = make_executor(executor, **options)
    source, grid, base_overrides = resolve_source(recipe, variant)
    seed_list = parse_seeds(seeds) if seeds is not None else resolve_seeds(recipe, variant)
    if isinstance(source, Path):
        source = yaml.safe_load(source.read_text())
    name = source.get("name", Path(recipe).stem)
    out = out or Path("runs") / f"{name}-{variant}"
    extra = [f"device={device}"] if device else []
    try:
        path = run_sweep(
            source,
            grid,
            out,
            overrides=base_overrides + list(overrides or []) + extra,
            executor=ex,
            progress=True,
            seeds=seed_list,
        )
    except SweepInterrupted as e:
        print(
            f"sweep interrupted ({signal_name(e.signum)}): its runs were stopped; run the same "
            f"command again to resume them (finished runs are kept) [{out}]",
            file=sys.stderr,
        )
        # SystemExit, not typer.Exit: the exit status must reach the shell.
        raise SystemExit(128 + e.signum) from None
    s = load_sweep(path)
    console.print(f"sweep: {path}")
    console.print(frame_text(s.summary, SUMMARY_COLUMNS))


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    from ..errors import InvalidArgumentError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


@app.command()
def recipes() -> None:
    """List the packaged recipes: one per figure or table of the two papers (with whether the
    paper variant is complete or how many differences from the paper it lists), then the demo's.

    Example: sgdscope recipes
    """
    from rich.table import Column, Table

    from ..config.grid import expand_grid
    from ..recipes import list_recipes

    t = Table(
        Column("recipe", no_wrap=True),
        "paper",
        "reproduces",
        Column("paper variant", no_wrap=True),
        "runs (small)",
        "title",
    )
    for r in list_recipes(demo=False):
        _, grid, _ = r.resolve("small")
        runs = len(expand_grid(grid, r.variant_seeds("small")))
        t.add_row(r.name, r.paper, r.reproduces, _completeness(r), str(runs), r.title)
    console.print(t)
    d = Table("recipe", "paper", "runs (small / quick)", "title", title="the demo (sgdscope demo)")
    for r in list_recipes(demo=True):
        sizes = [len(expand_grid(r.resolve(v)[1])) for v in ("small", "quick")]
        d.add_row(r.name, r.paper, " / ".join(map(str, sizes)), r.title)
    console.print(d)


def _completeness(recipe: Any) -> str:
    """The "paper variant" column: complete, or how many differences the recipe lists."""
    if recipe.paper_complete is None:
        return "?"
    if recipe.paper_complete:
        return "complete"
    n = len(recipe.paper_variant)
    return f"{n} difference{'s' if n > 1 else ''}"


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
    from ..train.distributed import is_writer_process

    if not is_writer_process():  # under torchrun: rank 0 prints the run's summary
        return

    r = load_run(path)
    console.print(f"run {r.status}: {r.path}")
    console.print(metrics_table(r, RUN_METRICS))


app.add_typer(data_app, name="data", help="List and download datasets.")
app.command("report")(report)
app.command("demo")(demo)
app.command("export")(export)
app.command("reproduce")(reproduce)
app.command("plan")(plan)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv

    def call() -> None:
        command.main(args=args, prog_name="sgdscope", standalone_mode=False)

    code = run_guarded(call)
    if code:
        raise SystemExit(code)
