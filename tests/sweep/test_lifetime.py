"""Issue 11, item 3: killing the ``sweep`` process (SIGKILL or SIGTERM) leaves no worker running.

Local workers are the sweep's children (the kernel kills them when it dies); Ray's workers are
the Ray instance's, which the sweep started and which ends with it."""

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from sgdscope.sweep.point import read_attempts

from .sweep_cases import alive, last_step, long_config, wait_for

NAMES = ["lr=0.05", "lr=0.1"]


def _start_sweep(tmp_path, executor):
    recipe = tmp_path / "long.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "title": "long runs",
                "paper": "A",
                "config": long_config(steps=100_000, checkpoint_every=50),
                "grid": {"optim.lr": [0.05, 0.1]},
                "variants": {"small": {}},
            }
        )
    )
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sgdscope", "sweep", str(recipe), "-o", str(out)]
    cmd += ["-e", executor] + (["-w", "2"] if executor == "local" else [])
    # Files, not pipes: a surviving worker would hold a pipe open. A session of its own, so
    # the signal reaches the sweep alone, as `kill PID` would.
    with open(tmp_path / "stdout", "w") as so, open(tmp_path / "stderr", "w") as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, start_new_session=True)
    return proc, out


def _worker_pids(out):
    pids = []
    for n in NAMES:
        recs = read_attempts(out, n)
        if not recs or last_step(out / "runs" / n) < 20:
            return None
        pids.append(int(recs[-1]["pid"]))
    return pids


_RAY = pytest.mark.skipif(not importlib.util.find_spec("ray"), reason="ray is not installed")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=[pytest.mark.slow, _RAY])])
def test_no_worker_outlives_the_sweep(tmp_path, sig, executor):
    proc, out = _start_sweep(tmp_path, executor)
    pids: list[int] = []
    try:
        pids = wait_for(lambda: _worker_pids(out), "both runs to be under way", timeout=180)
        assert all(alive(p) for p in pids) and proc.pid not in pids
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        wait_for(lambda: not any(alive(p) for p in pids), "the workers to end", timeout=20)
    finally:
        for p in [proc.pid, *pids]:  # whatever the outcome, leave nothing running
            if alive(p):
                os.kill(p, signal.SIGKILL)
        proc.wait(timeout=60)
    # Nothing writes the runs any more.
    steps = [last_step(out / "runs" / n) for n in NAMES]
    time.sleep(1.0)
    assert [last_step(out / "runs" / n) for n in NAMES] == steps
    err = (tmp_path / "stderr").read_text()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        # Besides the live lines ("sweep: lr=...") and Ray's own start-up warning, one line.
        lines = [
            line
            for line in err.splitlines()
            if not line.startswith("sweep: lr=") and "WARNING authentication_token" not in line
        ]
        assert len(lines) == 1 and lines[0].startswith("sweep interrupted (SIGTERM)"), err
    else:
        assert proc.returncode == -signal.SIGKILL
