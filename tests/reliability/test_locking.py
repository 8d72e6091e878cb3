"""One writer per run directory: a second process refuses with one line naming the first; a lock
left by a dead process is taken over; no concurrent use loses, duplicates or mislabels rows."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys

import pytest
import yaml

from sgdscope.store import load_run
from sgdscope.store._lock import RunLock, lock_holder
from sgdscope.train import run

from ._helpers import (
    assert_same_run,
    cli,
    finish,
    long_config,
    short_config,
    spawn,
    stderr_lines,
    stop,
    wait_for_step,
    write_config,
)

# A lock holder without sgdscope's imports (starts in milliseconds).
_HOLDER = (
    "import fcntl, json, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "os.ftruncate(fd, 0)\n"
    "os.write(fd, json.dumps({'pid': os.getpid(), 'command': 'holder'}).encode())\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def holder():
    procs = []

    def start(run_dir):
        p = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(run_dir / "run.lock")],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout.readline().strip() == "locked"
        procs.append(p)
        return p

    yield start
    for p in procs:  # only the processes this fixture started, by pid
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stdout.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(short_config(), out=tmp_path_factory.mktemp("ref") / "ref")


def _lines(capsys):
    captured = capsys.readouterr()
    return [line for line in captured.err.splitlines() if line.strip()]


def test_lock_is_exclusive_and_released():
    # Two RunLock objects in one process behave like two processes (flock is per open file).
    import tempfile
    from pathlib import Path

    from sgdscope.errors import RunLockedError

    d = Path(tempfile.mkdtemp())
    try:
        with RunLock(d):
            assert lock_holder(d)["pid"] > 0
            with pytest.raises(RunLockedError, match=r"is in use by process \d+"):
                RunLock(d, wait=0.1).acquire()
        assert lock_holder(d) is None
        with RunLock(d):  # free again
            pass
    finally:
        shutil.rmtree(d)


def test_second_writer_refused_then_takes_over_after_holder_dies(tmp_path, holder, capsys):
    out = run(short_config(), out=tmp_path / "r")
    p = holder(out)
    assert cli(["resume", out]) == 2
    (line,) = _lines(capsys)
    assert line.startswith(f"error: run directory '{out}' is in use by process {p.pid}")
    assert cli(["run", write_config(tmp_path / "c.yaml", short_config()), "--out", out]) == 2
    (line,) = _lines(capsys)
    assert "already holds a run" in line
    assert load_run(out).status == "finished"  # never marked failed by a refused writer
    p.kill()  # SIGKILL, by pid: the kernel releases its flock
    p.wait()
    assert cli(["resume", out]) == 0
    assert load_run(out).status == "finished"


def test_resume_of_a_run_being_written_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    proc = spawn(["run", write_config(tmp_path / "c.yaml", long_config()), "--out", out])
    try:
        wait_for_step(out, 30, proc)
        assert cli(["resume", out]) == 2
        (line,) = _lines(capsys)
        assert f"is in use by process {proc.pid}" in line
        assert load_run(out).status == "running"
    finally:
        rc, _, err = stop(proc, signal.SIGTERM)
    assert rc == 143, err
    assert load_run(out).status == "interrupted"


def test_two_resumes_at_once(tmp_path, reference):
    out = tmp_path / "r"
    proc = spawn(
        ["run", write_config(tmp_path / "c.yaml", short_config()), "--out", out],
        SGDSCOPE_KILL_AT_STEP="9",
    )
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    a, b = spawn(["resume", out]), spawn(["resume", out])
    results = [finish(p)[::2] for p in (a, b)]
    codes = sorted(rc for rc, _ in results)
    for rc, err in results:
        assert "Traceback" not in err and "internal error" not in err, err
        if rc == 2:
            assert "is in use by process" in err
    assert codes in ([0, 0], [0, 2]), results  # [0, 0]: the second came after the first ended
    assert_same_run(out, reference)


@pytest.mark.slow
def test_two_configs_into_one_out(tmp_path):
    out = tmp_path / "r"
    cfgs = []
    for lr in (0.1, 0.05):
        cfg = short_config(optim__lr=lr)
        cfg["probes"] = [{"name": "lr"}, {"name": "grad_norm"}]
        cfgs.append(write_config(tmp_path / f"c{lr}.yaml", cfg))
    procs = [spawn(["run", c, "--out", out]) for c in cfgs]
    results = [finish(p)[::2] for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    for rc, err in results:
        if rc == 2:
            (line,) = stderr_lines(err)
            assert "is in use by process" in line or "already holds a run" in line
    r = load_run(out)
    assert r.status == "finished"
    saved_lr = yaml.safe_load((out / "config.yaml").read_text())["optim"]["lr"]
    assert set(r.scalar("lr").unique()) == {saved_lr}  # config and metrics describe one run
    con = sqlite3.connect(out / "metrics.sqlite")
    assert con.execute("SELECT COUNT(*) FROM scalars WHERE name='batch_loss'").fetchone()[0] == 24
    con.close()


def test_deleted_checkpoints_refuse_instead_of_restarting(tmp_path, capsys):
    out = tmp_path / "r"
    proc = spawn(
        ["run", write_config(tmp_path / "c.yaml", short_config()), "--out", out],
        SGDSCOPE_KILL_AT_STEP="13",
    )
    proc.communicate(timeout=300)
    rows = len(load_run(out).scalars)
    shutil.rmtree(out / "checkpoints")
    assert cli(["resume", out]) == 2
    (line,) = _lines(capsys)
    assert "holds metrics but no checkpoint" in line
    assert len(load_run(out).scalars) == rows  # nothing deleted


def test_run_resume_with_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    proc = spawn(
        ["run", write_config(tmp_path / "c.yaml", short_config()), "--out", out],
        SGDSCOPE_KILL_AT_STEP="5",
    )
    proc.communicate(timeout=300)
    other = write_config(tmp_path / "d.yaml", short_config(optim__lr=0.05))
    assert cli(["run", other, "--out", out, "--resume"]) == 2
    (line,) = _lines(capsys)
    assert "holds a run with another config (optim.lr: 0.1 (saved) vs 0.05)" in line
    assert cli(["run", tmp_path / "c.yaml", "--out", out, "--resume", "--device", "cpu"]) == 0
    assert load_run(out).status == "finished"
