"""Run a grid of configs into one sweep directory and summarise it as a pandas frame.

A sweep directory holds ``sweep.yaml`` (base config, grid, overrides), ``runs/<point-name>/``
(ordinary run directories), ``summary.csv`` (one row per run), the executors' bookkeeping
(``.sgdscope/``, ``logs/``) and, when points were rejected before they could start (a config
error found while building them: no run directory is made), ``rejected.yaml`` with each such
point's error. Re-running a sweep skips runs already finished, resumes runs that were killed, and
records a failed run without stopping the others. Where the runs execute (local processes, Ray,
Slurm) is the executor's business (:mod:`sgdscope.sweep.executors`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..config import load_config
from ..config.grid import expand_grid, grid_keys, point_name, point_overrides
from ..errors import SgdscopeError
from ..store import METRICS_FILE, SUMMARY_FIELDS, Run, is_run_dir, load_run, summarize_run
from ._lifetime import signals_interrupt
from .executors import Executor, make_executor
from .monitor import SweepMonitor
from .point import RunTask, lost_result, new_session

SWEEP_FILE = "sweep.yaml"
SUMMARY_FILE = "summary.csv"
REJECTED_FILE = "rejected.yaml"


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).exists()


def run_sweep(
    config: dict[str, Any],
    grid: dict[str, list[Any]] | list[dict[str, Any]] | None,
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    workers: int | None = None,
    executor: str | Executor = "local",
    progress: bool = False,
    seeds: Sequence[int] | None = None,
) -> Path:
    """Run every point of ``grid`` on top of ``config`` (+ ``overrides``) into ``out``.

    Args:
        config: the base run config (a dict, as in a YAML file).
        grid: ``{"optim.lr": [0.01, 0.1], "seed": [0, 1]}`` — one run per combination — or a
            list of explicit points ``[{"optim.name": "sgd"}, {"optim.name": "nsgd", ...}]``.
        out: the sweep directory (created; reused to skip finished runs and resume the others).
            With a cluster executor it must be on storage every node sees.
        overrides: ``key=value`` strings applied to every run before the grid point's values.
        workers: parallel runs (``local``: worker processes, one torch thread each; default 1).
        executor: ``local`` (process pool), ``serial``, ``ray`` or ``slurm`` with their
            defaults, or a configured executor object, e.g.
            ``RayExecutor(address="auto", gpus_per_run=0.5)``.
        progress: show the live sweep table (done / running / failed / retried) on stderr.
        seeds: seeds crossed with every grid point (``[0, 1, 2]``: three runs per point, named
            ``..._seed=N``); None runs each point once at the config's ``seed``.

    Returns:
        The sweep directory; read it with :func:`load_sweep`.

    Raises:
        SweepInterrupted: the sweep got SIGINT / SIGTERM / SIGHUP; its workers were stopped
            first. Running the same sweep again resumes it.
    """
    out = Path(out)
    overrides = list(overrides or [])
    points = expand_grid(grid, seeds)
    # Validate every point before any work starts.
    for p in points:
        load_config(config, overrides + point_overrides(p))
    ex = make_executor(executor, workers=workers) if isinstance(executor, str) else executor
    out.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = {"config": config, "grid": grid or {}, "overrides": overrides}
    if seeds is not None:  # absent when unused, so sweeps written before seeds still match
        spec["seeds"] = list(seeds)
    sweep_file = out / SWEEP_FILE
    if sweep_file.exists():
        old = yaml.safe_load(sweep_file.read_text())
        if old != spec:
            raise SgdscopeError(
                f"{str(out)!r} holds a different sweep (config, grid, seeds or overrides differ); "
                "choose another --out"
            )
    else:
        sweep_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    # Absolute paths: a Ray task or a Slurm job does not start in the driver's directory.
    root = out.resolve()
    session = new_session(root)
    tasks = [
        RunTask(
            name=point_name(p),
            base=config,
            overrides=overrides + point_overrides(p),
            run_dir=str(root / "runs" / point_name(p)),
            sweep_dir=str(root),
            session=session,
        )
        for p in points
    ]
    monitor = SweepMonitor([t.name for t in tasks], str(root), session, live=progress)
    # Each run's outcome (finished, diverged, failed with its error) is in its own store, which
    # the summary reads; a point rejected before it started has no store: its error is kept in
    # rejected.yaml instead.
    rejected: dict[str, str] = {}
    with signals_interrupt(), monitor:
        for o in ex.run(tasks, root / "logs"):
            task = tasks[o.index]
            result = o.result if o.result is not None else _record_lost(task, o.error or "")
            monitor.finished(task.name, result)
            if result.get("status") == "failed" and not is_run_dir(task.run_dir):
                rejected[task.name] = str(result.get("error", ""))
    rejected_file = out / REJECTED_FILE
    if rejected:
        rejected_file.write_text(yaml.safe_dump(rejected, sort_keys=True))
    else:
        rejected_file.unlink(missing_ok=True)
    summary = load_sweep(out).summary
    summary.to_csv(out / SUMMARY_FILE, index=False)
    return out


def _record_lost(task: RunTask, error: str) -> dict[str, Any]:
    """A run whose worker never came back: mark its store failed (it still says running)."""
    from ..store import MetricsStore

    path = Path(task.run_dir) / METRICS_FILE
    if is_run_dir(task.run_dir) and load_run(task.run_dir).status in (
        "created",
        "running",
        "stale",
    ):
        store = MetricsStore(path)
        try:
            store.set_status("failed", error=error)
        finally:
            store.close()
    return lost_result(task, error)


class Sweep:
    """A sweep directory: its spec, its runs and a one-row-per-run summary."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_sweep_dir(self.path):
            raise SgdscopeError(f"{str(self.path)!r} is not a sweep directory (no {SWEEP_FILE})")
        self.spec = yaml.safe_load((self.path / SWEEP_FILE).read_text())
        self.grid: dict[str, list[Any]] | list[dict[str, Any]] = self.spec.get("grid") or {}
        self.seeds: list[int] | None = self.spec.get("seeds")
        self.grid_keys = grid_keys(self.grid, self.seeds)
        self.points = expand_grid(self.grid, self.seeds)

    @property
    def runs(self) -> list[Run]:
        out = []
        for p in self.points:
            d = self.path / "runs" / point_name(p)
            if is_run_dir(d):
                out.append(load_run(d))
        return out

    @property
    def summary(self) -> pd.DataFrame:
        """One row per grid point: ``run`` (the point's name), the point's values, then
        :func:`~sgdscope.store.summarize_run` of its run (``status`` ``missing`` when the run
        directory does not exist yet, ``failed`` with its ``error`` for a point rejected before
        it started)."""
        rows = []
        rejected_file = self.path / REJECTED_FILE
        rejected = yaml.safe_load(rejected_file.read_text()) if rejected_file.exists() else {}
        for p in self.points:
            d = self.path / "runs" / point_name(p)
            row: dict[str, Any] = {"run": point_name(p), **p}
            if is_run_dir(d):
                row.update(summarize_run(load_run(d)))
            else:  # never started: rejected before work (its error kept), or not run yet
                error = (rejected or {}).get(point_name(p))
                row["status"] = "failed" if error else "missing"
                if error:
                    row["error"] = error
            rows.append(row)
        point_keys = dict.fromkeys(k for p in self.points for k in p)
        return pd.DataFrame(rows, columns=["run", *point_keys, *SUMMARY_FIELDS])


def load_sweep(path: str | Path) -> Sweep:
    """Open a sweep directory for reading."""
    return Sweep(path)
