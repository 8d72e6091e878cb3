"""Configs and waits shared by the executor tests."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sgdscope.store import load_run
from sgdscope.sweep import run_sweep
from sgdscope.sweep.point import read_attempts
from sgdscope.train.checkpoint import load_checkpoint

from ..helpers import tiny_config

#: A 4-point grid of tiny runs, for "same results whatever the executor".
GRID4 = {"optim.lr": [0.05, 0.1], "seed": [0, 1]}


def long_config(steps: int = 1500, checkpoint_every: int = 100) -> dict[str, Any]:
    """A tiny model trained long enough (a few seconds) to be killed mid-run."""
    cfg = tiny_config(train__steps=steps, train__checkpoint_every=checkpoint_every)
    cfg["data"]["options"]["num_samples"] = 2048
    return cfg


def wait_for(pred: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def last_step(run_dir: Path) -> int:
    """The last step written to a run's store (-1 before the first)."""
    try:
        step = load_run(run_dir).info.get("last_step")
    except Exception:  # the store does not exist yet
        return -1
    return -1 if step is None else int(step)


def checkpoint_step(run_dir: Path) -> int:
    try:
        state = load_checkpoint(run_dir / "checkpoints")
    except Exception:  # being replaced right now
        return -1
    return -1 if state is None else int(state["step"])


def running_pid(sweep_dir: Path, name: str, min_step: int, min_ckpt: int) -> int | None:
    """The pid of the process running ``name`` once it is past ``min_step`` with a checkpoint
    past ``min_ckpt`` (None until then)."""
    recs = read_attempts(sweep_dir, name)
    run_dir = sweep_dir / "runs" / name
    if not recs or last_step(run_dir) < min_step or checkpoint_step(run_dir) < min_ckpt:
        return None
    # A kill after the run's end would test nothing: say so rather than pass or fail obscurely.
    assert load_run(run_dir).status == "running", "the run ended before it could be killed"
    return int(recs[-1]["pid"])


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def assert_same_runs(a: Path, b: Path) -> None:
    """Two sweep (or run) directories hold bit-identical runs and summaries."""
    if (a / "summary.csv").exists():
        assert (a / "summary.csv").read_text() == (b / "summary.csv").read_text()
        names = sorted(p.name for p in (a / "runs").iterdir())
        assert names == sorted(p.name for p in (b / "runs").iterdir())
        pairs = [(a / "runs" / n, b / "runs" / n) for n in names]
    else:
        pairs = [(a, b)]
    for ra_dir, rb_dir in pairs:
        ra, rb = load_run(ra_dir), load_run(rb_dir)
        assert ra.status == rb.status == "finished", (ra_dir, ra.status, rb.status)
        assert ra.scalars.equals(rb.scalars), ra_dir
        assert ra.array_names() == rb.array_names()
        for name in ra.array_names():
            sa, va = ra.array(name)
            sb, vb = rb.array(name)
            np.testing.assert_array_equal(sa, sb)
            np.testing.assert_array_equal(va, vb)


def kill(pid: int, sig: int) -> None:
    os.kill(pid, sig)


def sweep_in_thread(*args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``run_sweep(*args, **kwargs)`` in a thread; its return value lands in the dict."""
    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.setdefault("path", run_sweep(*args, **kwargs)))
    t.start()
    return t, box
