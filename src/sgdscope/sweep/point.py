"""One grid point of a sweep, as every executor runs it: start, resume or skip its run.

Whatever the executor (a local process, a Ray task, a Slurm job), a point runs through
:func:`execute_point`, so the run directories are the same everywhere. It never raises for a
failed run (the failure is in the run's store and in the returned dict), which isolates failures.

Beside the runs, a sweep directory keeps executor bookkeeping in ``.sgdscope/``:

- ``sessions/<id>``: written by the driver when a sweep (re)starts. A point first reads it back:
  a worker that cannot see it is on a node that does not share the sweep's storage, and refuses
  to run rather than write somewhere the driver never reads.
- ``attempts/<run>.jsonl``: one line per attempt to run a point (session, attempt number, host,
  pid, start time, the checkpoint step it resumed from). The driver's live table reads it to
  show which runs are running and which were retried after their worker was lost.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DivergedError, SgdscopeError

BOOKKEEPING_DIR = ".sgdscope"


class StorageNotSharedError(SgdscopeError):
    """A worker cannot see the sweep directory the driver wrote (storage not shared)."""


@dataclass(frozen=True)
class RunTask:
    """One point of a sweep: the base config, the point's overrides and where its run goes.

    Attributes:
        name: the point's name (``lr=0.1_seed=0``), also its run directory's name.
        base: the base run config (a dict, as in a YAML file).
        overrides: ``key=value`` strings: the sweep's, then the point's.
        run_dir: the run directory (``<sweep>/runs/<name>``).
        sweep_dir: the sweep directory.
        session: the id of the driver's session (see :func:`new_session`).
    """

    name: str
    base: dict[str, Any]
    overrides: list[str]
    run_dir: str
    sweep_dir: str
    session: str = field(default="")


def bookkeeping(sweep_dir: str | Path) -> Path:
    return Path(sweep_dir) / BOOKKEEPING_DIR


def new_session(sweep_dir: str | Path) -> str:
    """Start a driver session: write its marker (fsynced) and return its id."""
    session = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    d = bookkeeping(sweep_dir) / "sessions"
    d.mkdir(parents=True, exist_ok=True)
    path = d / session
    with open(path, "w") as f:
        f.write(socket.gethostname() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return session


def check_storage(sweep_dir: str | Path, session: str) -> None:
    """Raise :class:`StorageNotSharedError` unless this process sees the driver's marker."""
    marker = bookkeeping(sweep_dir) / "sessions" / session
    if not marker.exists():
        raise StorageNotSharedError(
            f"host {socket.gethostname()!r} does not see the sweep directory {str(sweep_dir)!r} "
            "the driver wrote: run directories must be on storage every node mounts at the same "
            "path (NFS, Lustre, GPFS, ...); pass such a path as --out"
        )


def attempts_file(sweep_dir: str | Path, name: str) -> Path:
    return bookkeeping(sweep_dir) / "attempts" / f"{name}.jsonl"


def read_attempts(sweep_dir: str | Path, name: str, session: str | None = None) -> list[dict]:
    """The attempt records of one point (only ``session``'s when given), oldest first."""
    path = attempts_file(sweep_dir, name)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line torn by a kill mid-write
            continue
        if session is None or rec.get("session") == session:
            out.append(rec)
    return out


def _checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's last checkpoint, or None (no run yet, or unreadable)."""
    from ..store import CHECKPOINT_DIR, is_run_dir
    from ..train.checkpoint import load_checkpoint

    if not is_run_dir(run_dir):
        return None
    try:
        state = load_checkpoint(run_dir / CHECKPOINT_DIR)
    except Exception:  # a torn or foreign file: the resume itself will say what is wrong
        return None
    return int(state["step"]) if state is not None else None


def _record_attempt(task: RunTask, from_step: int | None) -> dict[str, Any]:
    prior = read_attempts(task.sweep_dir, task.name, task.session)
    rec = {
        "session": task.session,
        "attempt": len(prior) + 1,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "from_step": from_step,
    }
    path = attempts_file(task.sweep_dir, task.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return rec


def execute_point(task: RunTask) -> dict[str, Any]:
    """Run, resume or skip one point; never raises for a failed run.

    Returns:
        ``{"name", "run_dir", "status", "skipped", "attempt", "seconds"}`` and ``error`` when
        the run failed. ``seconds`` is the wall time spent in this call (the run's own time,
        which executor-overhead measurements subtract).
    """
    from ..store import is_run_dir, load_run
    from ..train import resume_run, run

    t0 = time.perf_counter()
    out = Path(task.run_dir)
    base: dict[str, Any] = {"name": task.name, "run_dir": str(out), "skipped": False}
    try:
        if task.session:
            check_storage(task.sweep_dir, task.session)
        status = load_run(out).status if is_run_dir(out) else None
        if status in ("finished", "diverged"):
            return {**base, "status": status, "skipped": True, "attempt": 0, "seconds": 0.0}
        rec = _record_attempt(task, _checkpoint_step(out) if status else None)
        base["attempt"] = rec["attempt"]
        if status is not None:
            resume_run(out)
        else:
            run(task.base, task.overrides, out=out)
        # The store has the last word (a run stopped by a signal may return as interrupted).
        return {**base, "status": load_run(out).status, "seconds": time.perf_counter() - t0}
    except DivergedError as e:
        return {**base, "status": "diverged", "error": str(e), "seconds": time.perf_counter() - t0}
    except Exception as e:
        return {
            **base,
            "status": "failed",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
            "seconds": time.perf_counter() - t0,
        }


def lost_result(task: RunTask, error: str) -> dict[str, Any]:
    """The result of a point whose worker was lost for good (retries spent, job cancelled)."""
    return {
        "name": task.name,
        "run_dir": task.run_dir,
        "status": "failed",
        "skipped": False,
        "lost": True,
        "error": error,
    }


def set_threads(threads: int) -> None:
    """Use ``threads`` torch/OpenMP threads in this worker (1 everywhere gives identical
    numbers across executors)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
