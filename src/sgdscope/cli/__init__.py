"""The ``sgdscope`` command line: thin commands over the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ._errors import interruptible, run_guarded
from ._format import (
    RUN_METRICS,
    SUMMARY_COLUMNS,
    console,
    frame_text,
    metrics_table,
    print_table,
    runs_table,
)
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
    print_table(t)
    d = Table("recipe", "paper", "runs (small / quick)", "title", title="the demo (sgdscope demo)")
    for r in list_recipes(demo=True):
        sizes = [len(expand_grid(r.resolve(v)[1])) for v in ("small", "quick")]
        d.add_row(r.name, r.paper, " / ".join(map(str, sizes)), r.title)
    print_table(d)


def _completeness(recipe: Any) -> str:
    """The "paper variant" column: complete, or how many differences the recipe lists."""
    if recipe.paper_complete is None:
        return "?"
    if recipe.paper_complete:
        return "complete"
    n = len(recipe.paper_variant)
    return f"{n} difference{'s' if n > 1 else ''}"


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
