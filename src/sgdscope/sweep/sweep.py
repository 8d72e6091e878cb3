"""Run a grid of configs into one sweep directory and summarise it as a pandas frame.

A sweep directory holds ``sweep.yaml`` (base config, grid, overrides), ``runs/<point-name>/``
(ordinary run directories), ``summary.csv`` (one row per run) and, when points were rejected
before they could start (a config error found while building them: no run directory is made),
``rejected.yaml`` with each such point's error. Re-running a sweep skips runs
already finished, resumes runs that were killed, and records a failed run without stopping the
others.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..config import load_config
from ..config.grid import expand_grid, grid_keys, point_name, point_overrides
from ..errors import DivergedError, SgdscopeError
from ..store import Run, is_run_dir, load_run
from .executors import EXECUTORS

SWEEP_FILE = "sweep.yaml"
SUMMARY_FILE = "summary.csv"
REJECTED_FILE = "rejected.yaml"
FINAL_METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "distance",
    "param_norm",
)


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

    Returns:
        The sweep directory; read it with :func:`load_sweep`.
    """
    out = Path(out)
    overrides = list(overrides or [])
    points = expand_grid(grid)
    # Validate every point before any work starts.
    for p in points:
        load_config(config, overrides + point_overrides(p))
    out.mkdir(parents=True, exist_ok=True)
    spec = {"config": config, "grid": grid or {}, "overrides": overrides}
    sweep_file = out / SWEEP_FILE
    if sweep_file.exists():
        old = yaml.safe_load(sweep_file.read_text())
        if old != spec:
            raise SgdscopeError(
                f"{str(out)!r} holds a different sweep (config, grid or overrides differ); "
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
    # the summary reads; a point rejected before it started has no store: its error is kept in
    # rejected.yaml instead.
    rejected: dict[str, str] = {}
    for res in ex.map_unordered(_execute, tasks):
        if res.get("status") == "failed" and not is_run_dir(res["run_dir"]):
            rejected[Path(res["run_dir"]).name] = str(res.get("error", ""))
    rejected_file = out / REJECTED_FILE
    if rejected:
        rejected_file.write_text(yaml.safe_dump(rejected, sort_keys=True))
    else:
        rejected_file.unlink(missing_ok=True)
    summary = load_sweep(out).summary
    summary.to_csv(out / SUMMARY_FILE, index=False)
    return out


def _peak(run: Run, name: str) -> tuple[float, float]:
    s = run.scalar(name)
    if s.empty:
        return float("nan"), float("nan")
    return float(s.max()), float(s.idxmax())


class Sweep:
    """A sweep directory: its spec, its runs and a one-row-per-run summary."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_sweep_dir(self.path):
            raise SgdscopeError(f"{str(self.path)!r} is not a sweep directory (no {SWEEP_FILE})")
        self.spec = yaml.safe_load((self.path / SWEEP_FILE).read_text())
        self.grid: dict[str, list[Any]] | list[dict[str, Any]] = self.spec.get("grid") or {}
        self.grid_keys = grid_keys(self.grid)
        self.points = expand_grid(self.grid)

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
        rows = []
        rejected_file = self.path / REJECTED_FILE
        rejected = yaml.safe_load(rejected_file.read_text()) if rejected_file.exists() else {}
        for p in self.points:
            d = self.path / "runs" / point_name(p)
            row: dict[str, Any] = {"run": point_name(p), **p}
            if not is_run_dir(d):
                error = (rejected or {}).get(point_name(p))
                row["status"] = "failed" if error else "missing"
                row["error"] = error or ""
                rows.append(row)
                continue
            r = load_run(d)
            info = r.info
            row["status"] = info["status"]
            row["error"] = (info.get("error") or "").splitlines()[0] if info.get("error") else ""
            last = r.last()
            for m in FINAL_METRICS:
                row[m] = last.get(m, float("nan"))
            row["peak_lambda_1"], row["peak_lambda_1_step"] = _peak(r, "lambda_1")
            cos = r.scalar("grad_cosine")
            row["mean_grad_cosine"] = float(cos.mean()) if not cos.empty else float("nan")
            h = r.scalar("height")
            row["mean_height"] = float(h.mean()) if not h.empty else float("nan")
            rows.append(row)
        return pd.DataFrame(rows)


def load_sweep(path: str | Path) -> Sweep:
    """Open a sweep directory for reading."""
    return Sweep(path)
