"""Helpers of the reliability suite: the CLI in a subprocess or in-process, tiny configs, waits.

Subprocesses run ``python -m sgdscope`` exactly as a user would (real signals, real exit
codes); each costs the start-up of torch (~2-4 s on a loaded 2-core machine), so the fast suite
uses few of them and the in-process :func:`cli` for the rest.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sgdscope.cli import main
from sgdscope.store import load_run

from ..helpers import tiny_config


def cli(args: list[str]) -> int:
    """Run the CLI in this process; returns its exit status."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", SGDSCOPE_DEBUG="", **extra)


def spawn(args: list[Any], **extra_env: str) -> subprocess.Popen:
    """Start ``python -m sgdscope ARGS`` in its own process group (signals reach only it)."""
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # This process was started in the background (SIGINT ignored, which children inherit):
        # the children must meet Ctrl-C as a user's foreground command does.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return subprocess.Popen(
        [sys.executable, "-m", "sgdscope", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra_env),
        start_new_session=True,
    )


def run_cli(args: list[Any], timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    p = spawn(args, **extra_env)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def long_config(**over: Any) -> dict[str, Any]:
    """A run of many cheap steps (interrupted long before it ends)."""
    cfg = tiny_config(**over)
    cfg["train"].update(epochs=None, steps=200_000, checkpoint_every=50)
    cfg["probes"] = [{"name": "grad_cosine"}]
    return cfg


def short_config(**over: Any) -> dict[str, Any]:
    """A complete run in a second or two (3 epochs of 8 steps, a checkpoint every 3 steps)."""
    return tiny_config(**{"train__epochs": 3, "train__checkpoint_every": 3, **over})


def last_step(run_dir: Path) -> int:
    """The last step written to a run's store (-1 when none yet); never blocks the writer."""
    db = run_dir / "metrics.sqlite"
    if not db.exists():
        return -1
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT MAX(step) FROM scalars").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return -1
    return -1 if row[0] is None else int(row[0])


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while last_step(run_dir) < step:
        if proc.poll() is not None:
            _, err = proc.communicate()  # reads and closes its pipes
            raise AssertionError(f"process ended early ({proc.returncode}): {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_dir} did not reach step {step} in {timeout} s")
        time.sleep(0.1)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    """Wait for the process; ``(returncode, stdout, stderr)`` (its pipes closed)."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 120):
    """Send ``sig`` to the process (by its pid) and collect its output."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def assert_same_run(done: Path, ref: Path) -> None:
    """Every scalar and array of ``done`` equals ``ref``'s; no duplicated rows; sound store."""
    a, b = load_run(done), load_run(ref)
    assert a.status == b.status == "finished", (a.status, b.status)
    assert a.scalars.equals(b.scalars)
    assert a.array_names() == b.array_names()
    for name in b.array_names():
        np.testing.assert_array_equal(a.array(name)[1], b.array(name)[1])
    con = sqlite3.connect(done / "metrics.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
