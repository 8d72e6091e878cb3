"""SIGTERM / SIGINT end a run cleanly after the step in flight; a second one stops at once;
Ctrl-C during start-up prints no traceback; a killed run shows as ``stale``."""

from __future__ import annotations

import os
import signal
import time

import pytest

from sgdscope._signals import stop_requested, stop_signals
from sgdscope.errors import RunInterrupted
from sgdscope.store import load_run
from sgdscope.train import run
from sgdscope.train.checkpoint import find_checkpoint

from ._helpers import (
    assert_same_run,
    cli,
    long_config,
    spawn,
    stderr_lines,
    stop,
    wait_for_step,
    write_config,
)

# --------------------------------------------------------------------------- in-process


def test_first_signal_sets_the_flag_second_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with stop_signals("runs/x") as st, st.graceful():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs between bytecodes of the main thread
        assert stop_requested() == signal.SIGTERM
        with pytest.raises(RunInterrupted) as info:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    e = info.value
    assert (e.signum, e.graceful, e.run_dir, e.exit_code) == (signal.SIGINT, False, "runs/x", 130)
    assert "resume with `sgdscope resume runs/x`" in str(e)
    assert stop_requested() is None
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back


def test_outside_the_loop_a_signal_stops_at_once():
    with pytest.raises(RunInterrupted) as info, stop_signals(None):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert info.value.exit_code == 143
    assert "before the run started: nothing was written" in str(info.value)


def test_interruption_pickles_for_sweep_workers():
    import pickle

    e = pickle.loads(pickle.dumps(RunInterrupted(15, "r", 7, True)))
    assert (e.signum, e.run_dir, e.step, e.graceful) == (15, "r", 7, True)


# --------------------------------------------------------------------------- real processes


def _finite_config(steps: int = 1200):
    cfg = long_config()
    cfg["train"].update(steps=steps, checkpoint_every=40)
    return cfg


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(_finite_config(), out=tmp_path_factory.mktemp("ref") / "ref")


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
)
def test_signal_ends_after_the_step_then_resume_is_identical(
    tmp_path, reference, capsys, sig, code
):
    cfg = write_config(tmp_path / "c.yaml", _finite_config())
    out = tmp_path / "r"
    proc = spawn(["run", cfg, "--out", out])
    wait_for_step(out, 60, proc)
    rc, _, err = stop(proc, sig)
    assert rc == code, err
    assert "Traceback" not in err
    last = stderr_lines(err)[-1]
    name = signal.Signals(sig).name
    assert last.startswith(f"interrupted by {name} at step ")
    assert last.endswith(f"resume with `sgdscope resume {out}`")
    r = load_run(out)
    assert r.status == "interrupted"
    step = int(last.split(" at step ")[1].split()[0])
    # The final checkpoint covers every update done: updates 0..step-1 are all in the store.
    assert r.scalar("batch_loss").index.max() == step - 1
    assert cli(["resume", out]) == 0
    assert_same_run(out, reference)


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once(tmp_path):
    # Slow steps (a 20-eigenvalue Lanczos on ~3k parameters each step): the second Ctrl-C lands
    # inside a step.
    cfg = long_config(model__options__widths=[256])
    cfg["eigenbasis"] = {"k": 20, "every": 1, "tol": 1e-8}
    cfg["probes"] = [{"name": "sharpness", "every": 1}]
    out = tmp_path / "r"
    proc = spawn(["run", write_config(tmp_path / "c.yaml", cfg), "--out", out])
    wait_for_step(out, 3, proc)
    proc.send_signal(signal.SIGINT)
    assert "stopping after the step in flight" in proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert stderr_lines(err)[-1].endswith(f"(at once): resume with `sgdscope resume {out}`")
    assert load_run(out).status == "interrupted"
    assert find_checkpoint(out / "checkpoints").path is not None  # resumable from the last one


@pytest.mark.parametrize("delay", [0.4, pytest.param(1.5, marks=pytest.mark.slow)])
def test_ctrl_c_during_start_up_prints_one_line_and_leaves_nothing(tmp_path, delay):
    cfg = write_config(tmp_path / "c.yaml", long_config())
    out = tmp_path / "r"
    proc = spawn(["run", cfg, "--out", out])
    time.sleep(delay)
    rc, _, err = stop(proc, signal.SIGINT)
    assert "Traceback" not in err
    lines = stderr_lines(err)
    if out.exists() and (out / "metrics.sqlite").exists():  # the machine was faster: it ran
        assert rc == 130 and lines[-1].startswith("interrupted by SIGINT")
        return
    assert rc == 130, err
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err
    assert not out.exists()


def test_killed_run_is_stale_in_ls_and_show_and_resumes(tmp_path, capsys):
    cfg = _finite_config(steps=600)
    out = tmp_path / "runs" / "r"
    proc = spawn(["run", write_config(tmp_path / "c.yaml", cfg), "--out", out])
    wait_for_step(out, 60, proc)
    assert load_run(out).status == "running"
    rc, _, _ = stop(proc, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert load_run(out).info["stored_status"] == "running"
    capsys.readouterr()
    assert cli(["ls", tmp_path / "runs"]) == 0
    assert "stale" in capsys.readouterr().out
    assert cli(["show", out]) == 0
    assert "status: stale" in capsys.readouterr().out
    # The lock the dead process held is free: resume takes it over and finishes.
    assert cli(["resume", out]) == 0
    assert load_run(out).status == "finished"


# --------------------------------------------------------------------------- lost interrupts


class _InterruptInFinalizer:
    def __del__(self):
        raise KeyboardInterrupt  # as if Ctrl-C landed while Python ran this finaliser


def test_interrupt_dropped_in_a_finalizer_is_recorded(capsys):
    from sgdscope._signals import catch_lost_interrupts, take_lost_interrupt

    with catch_lost_interrupts():
        obj = _InterruptInFinalizer()
        del obj  # CPython would print "Exception ignored in ..." and go on
        assert stop_requested() == signal.SIGINT
        assert take_lost_interrupt() == signal.SIGINT
        assert stop_requested() is None
    assert "Exception ignored" not in capsys.readouterr().err


def test_cli_reports_a_dropped_interrupt_with_130(capsys):
    from sgdscope._signals import catch_lost_interrupts
    from sgdscope.cli._errors import run_guarded

    def command():
        obj = _InterruptInFinalizer()
        del obj
        return 0

    with catch_lost_interrupts():
        assert run_guarded(command) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_run_honours_a_dropped_interrupt_before_creating_anything(tmp_path):
    from sgdscope._signals import catch_lost_interrupts

    with catch_lost_interrupts(), pytest.raises(RunInterrupted) as info:
        obj = _InterruptInFinalizer()
        del obj
        run(long_config(), out=tmp_path / "r")
    assert info.value.run_dir is None and not (tmp_path / "r").exists()
    assert stop_requested() is None  # honoured once: a later run in this process is not hit


def test_interrupt_inside_a_string_exec_still_exits_130(tmp_path):
    # CPython quirk: under `python -m`, a KeyboardInterrupt that ended a string exec (as in
    # dataclasses during imports) turns any exit into a death by SIGINT unless cleared.
    mod = tmp_path / "ki_in_exec.py"
    mod.write_text(
        "import sys\n"
        "from sgdscope.cli._errors import run_guarded\n"
        "sys.exit(run_guarded(lambda: exec('raise KeyboardInterrupt', {})))\n"
    )
    import subprocess
    import sys

    p = subprocess.run(
        [sys.executable, "-m", "ki_in_exec"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (p.returncode, p.stderr) == (130, "interrupted\n")


def test_a_signal_ignored_on_purpose_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in `nohup cmd &`
    try:
        with stop_signals("r") as st, st.graceful():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # handled
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
