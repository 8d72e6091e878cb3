"""A run SIGKILLed at a random step and resumed ends identical to an uninterrupted run."""

import os
import random
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sgdscope.store import load_run
from sgdscope.train import resume_run, run

from ..helpers import tiny_config


def _cfg():
    # 8 steps/epoch, 3 epochs, a checkpoint every 3 steps: kills land between checkpoints, on
    # them and at epoch ends. The gradient-cosine probe carries state across steps.
    return tiny_config(train__epochs=3, train__checkpoint_every=3)


def _killed_run(tmp_path, kill_step):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(_cfg()))
    out = tmp_path / f"killed-{kill_step}"
    env = dict(os.environ, SGDSCOPE_KILL_AT_STEP=str(kill_step), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "sgdscope", "run", str(cfg_path), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return out


def _compare(done, ref):
    a, b = load_run(done), load_run(ref)
    assert a.status == b.status == "finished"
    assert a.scalars.equals(b.scalars)
    for name in b.array_names():
        np.testing.assert_array_equal(a.array(name)[1], b.array(name)[1])
    con = sqlite3.connect(done / "metrics.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    dups = con.execute(
        "SELECT COUNT(*) FROM (SELECT step, name FROM scalars GROUP BY step, name "
        "HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    assert dups == 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(_cfg(), out=tmp_path_factory.mktemp("ref") / "ref")


# Three different kill steps drawn at random (seeded so a failure is reproducible).
KILL_STEPS = sorted(random.Random(2026).sample(range(1, 23), 3))


@pytest.mark.parametrize("kill_step", KILL_STEPS)
def test_sigkill_then_resume_is_identical(tmp_path, reference, kill_step):
    out = _killed_run(tmp_path, kill_step)
    partial = load_run(out)
    # Killed: never reached "finished"; its store still says running, but no process holds it.
    assert partial.status == "stale" and partial.info["stored_status"] == "running"
    assert partial.scalar("batch_loss").index.max() == kill_step
    resume_run(out)
    _compare(out, reference)


def test_resume_via_cli_flag(tmp_path, reference):
    out = _killed_run(tmp_path, 11)
    run(None, out=out, resume=True)
    _compare(out, reference)
