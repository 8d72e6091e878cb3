"""Checkpoints: everything needed to continue a run bit-for-bit, written atomically, checksummed.

A checkpoint holds the model, optimizer and probe states, θ₀, the data-order state of the epoch
in flight, every RNG state (torch CPU/CUDA, numpy, python) and the store's last transaction
``seq``. It is written to a temp file, fsynced, then renamed over ``last.pt``; the checkpoint it
replaces becomes ``previous.pt``. So a kill at any moment leaves a complete checkpoint, and a
newest checkpoint that is damaged later (a truncated copy, bit rot, a stray write) leaves the
previous one to fall back on.

File format: one header line ``sgdscope-checkpoint 2 sha256=<hex> size=<bytes>`` followed by the
``torch.save`` payload; the payload's SHA-256 is verified before it is unpickled, with
``torch.load(weights_only=True)`` (only tensors and plain Python containers are accepted, so a
malicious file cannot run code). Files without the header (sgdscope 0.1) load unverified.
Read them with :func:`load_checkpoint`, not ``torch.load``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import StorageError
from ..store._lock import storage_error

CHECKPOINT_NAME = "last.pt"
PREVIOUS_NAME = "previous.pt"
_MAGIC = b"sgdscope-checkpoint 2 "
_log = logging.getLogger("sgdscope")


def capture_rng() -> dict[str, Any]:
    """All global RNG states as tensors and plain Python values (weights_only-loadable)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "internal": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        # A run resumed on a node with fewer GPUs (a requeued job) restores the ones it has.
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


class CheckpointError(StorageError):
    """No usable checkpoint: every candidate is missing, damaged or unreadable."""


def _encode(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(_cpu(state), buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    return _MAGIC + f"sha256={digest} size={len(payload)}\n".encode() + payload


def _decode(path: Path) -> dict[str, Any]:
    """Read, verify and unpickle one checkpoint file; raise ValueError saying what is wrong."""
    data = path.read_bytes()
    if not data:
        raise ValueError("empty file")
    if data.startswith(_MAGIC):
        end = data.find(b"\n")
        fields = dict(
            kv.split("=", 1) for kv in data[len(_MAGIC) : end].decode("ascii", "replace").split()
        )
        payload = data[end + 1 :]
        if str(len(payload)) != fields.get("size"):
            raise ValueError(f"truncated: {len(payload)} of {fields.get('size')} bytes")
        if hashlib.sha256(payload).hexdigest() != fields.get("sha256"):
            raise ValueError("checksum mismatch (the file was altered or damaged)")
    else:
        payload = data  # sgdscope 0.1: a bare torch.save file, not checksummed
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure: damaged, foreign or unsafe content
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"unreadable ({first[:160]})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError("not an sgdscope checkpoint")
    return state


def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` to ``directory/last.pt``, keeping the one before as
    ``previous.pt``; returns the path.

    Raises:
        StorageError: the disk is full or the folder is read-only (the temp file is removed and
            the existing checkpoints are untouched).
    """
    directory = Path(directory)
    final = directory / CHECKPOINT_NAME
    tmp = directory / f".{CHECKPOINT_NAME}.tmp-{os.getpid()}"
    blob = _encode(state)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            os.replace(final, directory / PREVIOUS_NAME)
        os.replace(tmp, final)
        # fsync the directory so the renames themselves are durable.
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as e:
        # A failed write (full disk) or a second Ctrl-C mid-write: no half file stays behind.
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        err = (
            storage_error(e, "writing a checkpoint", directory.parent)
            if isinstance(e, OSError)
            else None
        )
        if err is not None:
            raise err from None
        raise
    return final


@dataclass
class CheckpointChoice:
    """Which checkpoint a resume would use, and what was wrong with the ones skipped.

    Attributes:
        path: the usable checkpoint (None when there is none).
        step: its step (updates done), or None.
        problems: ``"last.pt: checksum mismatch ..."`` for each file present but unusable.
    """

    path: Path | None
    step: int | None = None
    problems: list[str] = field(default_factory=list)


def _newest_good(directory: Path) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """(path, decoded state, problems) of the newest checkpoint that verifies, last.pt first;
    (None, None, problems) when none does."""
    problems = []
    for name in (CHECKPOINT_NAME, PREVIOUS_NAME):
        path = directory / name
        if not path.is_file():
            continue
        try:
            return path, _decode(path), problems
        except (OSError, ValueError) as e:
            problems.append(f"{name}: {e}")
    return None, None, problems


def find_checkpoint(directory: str | Path) -> CheckpointChoice:
    """Verify the checkpoints in ``directory`` newest first; the first good one is chosen."""
    path, state, problems = _newest_good(Path(directory))
    return CheckpointChoice(path, None if state is None else int(state["step"]), problems)


def remove_temp_files(directory: str | Path) -> list[Path]:
    """Delete ``.last.pt.tmp-*`` files left by a process killed while writing (call under the
    run's lock, when no other process can be writing one)."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for p in directory.glob(f".{CHECKPOINT_NAME}.tmp-*"):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The newest good checkpoint in ``directory``; None when there is no checkpoint file.

    ``last.pt`` is verified first; when it is damaged, ``previous.pt`` is used and a warning is
    logged (``sgdscope`` logger).

    Raises:
        CheckpointError: checkpoint files exist but none is usable.
    """
    directory = Path(directory)
    path, state, problems = _newest_good(directory)
    if state is not None:
        if problems:
            _log.warning(
                "checkpoint %s; resuming from %s (step %s)",
                "; ".join(problems),
                path.name,
                state["step"],
            )
        return state
    if problems:
        raise CheckpointError(
            f"no usable checkpoint in {directory} ({'; '.join(problems)}): the run cannot "
            "continue exactly; start it again under another --out"
        )
    return None
