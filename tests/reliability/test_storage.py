"""A full disk and a read-only run directory end with exit 2 and one line; the status is
recorded where the disk allows; once space is back (or the folder writable), resume finishes
identical. Made real with a small tmpfs (root only; skipped with the reason otherwise)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from sgdscope.store import load_run
from sgdscope.train import run

from ._helpers import assert_same_run, cli, long_config, short_config, spawn, write_config


def _mount(path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["mount", *options, str(path)], capture_output=True, text=True, check=False
    )


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size_kb)`` -> a fresh tmpfs folder of that size; unmounted at the end."""
    mounted = []

    def mount(size_kb: int):
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a tmpfs (a real full / read-only file system)")
        path = tmp_path / f"fs{len(mounted)}"
        path.mkdir()
        res = _mount(path, "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs")
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _finite(steps: int):
    cfg = long_config()
    cfg["train"].update(steps=steps, checkpoint_every=100)
    return cfg


def _one_error_line(capsys) -> str:
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "internal error" not in lines[0], lines
    return lines[0]


def test_full_disk_is_one_line_then_resume_is_identical(tmp_path, tmpfs, capsys):
    cfg = _finite(2500)
    ref = run(cfg, out=tmp_path / "ref")
    fs = tmpfs(320)
    out = fs / "r"
    capsys.readouterr()
    assert cli(["run", write_config(tmp_path / "c.yaml", cfg), "--out", out]) == 2
    line = _one_error_line(capsys)
    assert "no space left on the device" in line and f"sgdscope resume {out}" in line, line
    status = load_run(out).status
    assert status in ("failed", "stale"), status  # recorded, or (disk too full) not "running"
    assert not list((out / "checkpoints").glob(".last.pt.tmp-*"))  # no half checkpoint left
    assert _mount(fs, "-o", "remount,size=64m").returncode == 0  # space is back
    assert cli(["resume", out]) == 0
    assert_same_run(out, ref)


def test_full_disk_before_the_first_step_leaves_nothing(tmp_path, tmpfs, capsys):
    fs = tmpfs(12)  # room for the folder and a few files, not for the store
    out = fs / "r"
    assert cli(["run", write_config(tmp_path / "c.yaml", short_config()), "--out", out]) == 2
    line = _one_error_line(capsys)
    assert "no space left on the device" in line or "disk" in line, line
    assert not out.exists() or not (out / "metrics.sqlite").exists()


def test_read_only_run_directory(tmp_path, tmpfs, capsys):
    ref = run(short_config(), out=tmp_path / "ref")
    fs = tmpfs(64 * 1024)
    out = fs / "r"
    proc = spawn(
        ["run", write_config(tmp_path / "c.yaml", short_config()), "--out", out],
        SGDSCOPE_KILL_AT_STEP="10",
    )
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    res = _mount(fs, "-o", "remount,ro")
    assert res.returncode == 0, res.stderr
    capsys.readouterr()
    assert cli(["resume", out]) == 2
    line = _one_error_line(capsys)
    assert "Read-only file system" in line and str(out) in line, line
    assert cli(["ls", fs]) == 0  # reading works on a read-only folder
    assert "stale" in capsys.readouterr().out
    assert cli(["show", out]) == 0
    capsys.readouterr()
    assert cli(["run", write_config(tmp_path / "d.yaml", short_config()), "--out", fs / "new"]) == 2
    assert "Read-only file system" in _one_error_line(capsys)
    assert _mount(fs, "-o", "remount,rw").returncode == 0
    assert cli(["resume", out]) == 0
    assert_same_run(out, ref)
    shutil.rmtree(out)
