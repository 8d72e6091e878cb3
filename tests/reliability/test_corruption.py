"""Damaged files: a bad newest checkpoint falls back to the previous one (identical end result);
no good checkpoint is one clear line; a garbled config, meta or store never breaks ``ls``."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import signal

import pytest
import torch

from sgdscope.store import load_run
from sgdscope.train import run
from sgdscope.train.checkpoint import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)

from ._helpers import assert_same_run, cli, short_config, spawn, write_config

PWNED = "sgdscope-pwned-marker"


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch /tmp/{PWNED}",))


def _with_header(payload: bytes) -> bytes:
    digest = hashlib.sha256(payload).hexdigest()
    return f"sgdscope-checkpoint 2 sha256={digest} size={len(payload)}\n".encode() + payload


def _malicious() -> bytes:
    buf = io.BytesIO()
    torch.save({"step": 3, "x": _Evil()}, buf)
    return _with_header(buf.getvalue())  # a valid checksum: only weights_only stands in the way


def _flip_byte(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]


DAMAGE = {
    "truncated": lambda d: d[: len(d) // 2],
    "empty": lambda d: b"",
    "random": lambda d: random.Random(0).randbytes(len(d)),
    "bit-flip": _flip_byte,
    "malicious-pickle": lambda d: _malicious(),
    "legacy-garbage": lambda d: b"PK\x03\x04" + b"\x00" * 100,
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run(short_config(), out=tmp_path_factory.mktemp("ref") / "ref")


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """A run SIGKILLed after step 13: last.pt at step 12, previous.pt at step 9."""
    tmp = tmp_path_factory.mktemp("killed")
    out = tmp / "r"
    proc = spawn(
        ["run", write_config(tmp / "c.yaml", short_config()), "--out", out],
        SGDSCOPE_KILL_AT_STEP="13",
    )
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert find_checkpoint(out / "checkpoints").step == 12
    return out


def _copy(killed, tmp_path):
    d = tmp_path / "r"
    shutil.copytree(killed, d)
    return d


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_to_previous(
    kind, killed, reference, tmp_path, capsys
):
    d = _copy(killed, tmp_path)
    last = d / "checkpoints" / CHECKPOINT_NAME
    last.write_bytes(DAMAGE[kind](last.read_bytes()))
    capsys.readouterr()
    assert cli(["resume", d]) == 0
    err = capsys.readouterr().err
    assert "last.pt:" in err and "resuming from previous.pt (step 9)" in err, err
    assert "Traceback" not in err
    assert not os.path.exists(f"/tmp/{PWNED}")
    assert list((d / "checkpoints").glob("last.pt.damaged-*"))  # set aside, not deleted
    assert_same_run(d, reference)


def test_no_usable_checkpoint_is_one_line(killed, tmp_path, capsys):
    d = _copy(killed, tmp_path)
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        (d / "checkpoints" / name).write_bytes(b"garbage")
    rows = len(load_run(d).scalars)
    capsys.readouterr()
    assert cli(["resume", d]) == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and "no usable checkpoint" in lines[0], lines
    assert len(load_run(d).scalars) == rows


def test_stale_temp_files_are_removed_on_resume(killed, reference, tmp_path):
    d = _copy(killed, tmp_path)
    tmp_file = d / "checkpoints" / f".{CHECKPOINT_NAME}.tmp-424242"
    tmp_file.write_bytes(b"\0" * 100_000)  # a checkpoint write cut by SIGKILL
    assert cli(["resume", d]) == 0
    assert not tmp_file.exists()
    assert_same_run(d, reference)


def test_checkpoint_format_round_trip_and_legacy(tmp_path):
    state = {"step": 5, "w": torch.arange(4.0)}
    save_checkpoint(tmp_path, state)
    save_checkpoint(tmp_path, {"step": 6, "w": torch.ones(2)})
    assert load_checkpoint(tmp_path)["step"] == 6
    assert find_checkpoint(tmp_path).step == 6
    assert (tmp_path / PREVIOUS_NAME).exists()
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(state, legacy / CHECKPOINT_NAME)  # sgdscope 0.1: no header
    assert torch.equal(load_checkpoint(legacy)["w"], state["w"])


def test_garbled_config_and_meta_do_not_break_ls(tmp_path, capsys):
    root = tmp_path / "runs"
    good = run(short_config(train__epochs=1), out=root / "good")
    bad_cfg = run(short_config(train__epochs=1), out=root / "bad-config")
    bad_meta = run(short_config(train__epochs=1), out=root / "bad-meta")
    bad_db = run(short_config(train__epochs=1), out=root / "bad-store")
    (bad_cfg / "config.yaml").write_text("optim: {lr: [0.1\n\t: :")
    (bad_meta / "meta.yaml").write_bytes(b"\xff\xfe\x00garbage")
    for f in bad_db.glob("metrics.sqlite*"):
        f.write_bytes(random.Random(1).randbytes(4096))
    capsys.readouterr()
    assert cli(["ls", root]) == 0
    out = capsys.readouterr().out
    for name in ("good", "bad-config", "bad-meta", "bad-store"):
        assert name in out
    assert "config.yaml unreadable" in out and "meta.yaml unreadable" in out
    assert "damaged" in out
    assert load_run(good).status == "finished"
    assert cli(["show", bad_cfg]) == 0
    assert "warning: config.yaml is unreadable (line 2)" in capsys.readouterr().out
    for d in (bad_cfg, bad_db):
        assert cli(["resume", d]) == 2
        lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
