"""Run a grid of configs into one sweep directory and summarise it as a pandas frame.

A sweep directory holds ``sweep.yaml`` (base config, grid, overrides), ``runs/<point-name>/``
(ordinary run directories) and ``summary.csv`` (one row per run). Re-running a sweep skips runs
already finished, resumes runs that were killed, and records a failed run without stopping the
others.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..config import load_config
from ..config.grid import expand_grid, grid_keys, point_name, point_overrides
from ..errors import DivergedError, SgdscopeError
from ..store import SUMMARY_FIELDS, Run, is_run_dir, load_run, summarize_run
from .executors import EXECUTORS

SWEEP_FILE = "sweep.yaml"
SUMMARY_FILE = "summary.csv"


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_FILE).exists()


@dataclass
class _Task:
    base: dict[str, Any]
    overrides: list[str]
    run_dir: str


def _execute(task: _Task) -> dict[str, Any]:
    """Run (or resume, or skip) one grid point; never raises: failures become rows."""
    from ..train import resume_run, run

    out = Path(task.run_dir)
    try:
        if is_run_dir(out):
            status = load_run(out).status
            if status == "finished":
                return {"run_dir": str(out), "status": "finished", "skipped": True}
            if status == "diverged":
                return {"run_dir": str(out), "status": "diverged", "skipped": True}
            resume_run(out)
        else:
            run(task.base, task.overrides, out=out)
        return {"run_dir": str(out), "status": "finished", "skipped": False}
    except DivergedError as e:
        return {"run_dir": str(out), "status": "diverged", "skipped": False, "error": str(e)}
    except Exception as e:
        return {
            "run_dir": str(out),
            "status": "failed",
            "skipped": False,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }


def run_sweep(
    config: dict[str, Any],
    grid: dict[str, list[Any]] | list[dict[str, Any]] | None,
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    workers: int = 1,
    executor: str = "local",
    seeds: Sequence[int] | None = None,
) -> Path:
    """Run every point of ``grid`` on top of ``config`` (+ ``overrides``) into ``out``.

    Args:
        config: the base run config (a dict, as in a YAML file).
        grid: ``{"optim.lr": [0.01, 0.1], "seed": [0, 1]}`` — one run per combination — or a
            list of explicit points ``[{"optim.name": "sgd"}, {"optim.name": "nsgd", ...}]``.
        out: the sweep directory (created; reused to skip finished runs).
        overrides: ``key=value`` strings applied to every run before the grid point's values.
        workers: parallel worker processes (each with one torch thread).
        executor: ``local`` (process pool) or ``serial``, or a registered cluster executor.
        seeds: seeds crossed with every grid point (``[0, 1, 2]``: three runs per point, named
            ``..._seed=N``); None runs each point once at the config's ``seed``.

    Returns:
        The sweep directory; read it with :func:`load_sweep`.
    """
    out = Path(out)
    overrides = list(overrides or [])
    points = expand_grid(grid, seeds)
    # Validate every point before any work starts.
    for p in points:
        load_config(config, overrides + point_overrides(p))
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
    tasks = [
        _Task(config, overrides + point_overrides(p), str(out / "runs" / point_name(p)))
        for p in points
    ]
    ex = EXECUTORS.get(executor)(workers)
    # Each run's outcome (finished, diverged, failed with its error) is in its own store, which
    # the summary reads; the executor is only drained here.
    for _ in ex.map_unordered(_execute, tasks):
        pass
    summary = load_sweep(out).summary
    summary.to_csv(out / SUMMARY_FILE, index=False)
    return out


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
        directory does not exist yet)."""
        rows = []
        for p in self.points:
            d = self.path / "runs" / point_name(p)
            row: dict[str, Any] = {"run": point_name(p), **p}
            row.update(summarize_run(load_run(d)) if is_run_dir(d) else {"status": "missing"})
            rows.append(row)
        point_keys = dict.fromkeys(k for p in self.points for k in p)
        return pd.DataFrame(rows, columns=["run", *point_keys, *SUMMARY_FIELDS])


def load_sweep(path: str | Path) -> Sweep:
    """Open a sweep directory for reading."""
    return Sweep(path)
