"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/run.lock``.

The writer (``run``, ``resume``, a sweep worker) takes the lock before it writes anything and
holds it until it ends. The kernel releases a ``flock`` when its process dies, however it dies
(SIGKILL, OOM, a lost node's processes), so a lock left by a dead process is simply free: the next
writer takes it over, and no pid file can go stale. The file also records who holds it (pid,
host, command, start time) so that a refused second writer can name the first.

Readers (``ls``, ``show``) never block: they test the lock with a shared, non-blocking
``flock`` on a read-only descriptor. A run whose store says ``running`` but whose lock is free
belongs to a process that died: it is shown as ``stale``.

POSIX only (``fcntl``); on NFS, ``flock`` is emulated with byte-range locks by Linux (NFSv4).
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import RunLockedError, StorageError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "run.lock"

#: errnos that mean "this folder cannot be written" rather than a bug.
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def storage_error(exc: OSError, what: str, run_dir: str | Path) -> StorageError | None:
    """The one-line :class:`StorageError` for a full disk or a read-only folder (else None)."""
    run_dir = str(run_dir)
    if exc.errno in _NO_SPACE:
        return StorageError(
            f"no space left on the device while {what} ({run_dir}): free some space, then "
            f"continue with `sgdscope resume {run_dir}`"
        )
    if exc.errno in _NOT_WRITABLE:
        return StorageError(
            f"cannot write {run_dir} while {what}: {os.strerror(exc.errno)}; copy the run to a "
            "writable folder (or make it writable) and run the command there"
        )
    return None


class RunLock:
    """The exclusive lock of one run directory (a context manager).

    Args:
        run_dir: the run directory (must exist).
        wait: seconds to keep trying before refusing; readers hold the lock for microseconds,
            so a short wait keeps an ``ls`` from making a writer fail.
    """

    def __init__(self, run_dir: str | Path, *, wait: float = 2.0) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.wait = wait
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming the process that holds it."""
        if self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            err = storage_error(e, "taking the run's lock", self.run_dir)
            if err is not None:
                raise err from None
            raise
        if fcntl is None:  # pragma: no cover - Windows: no exclusion, but no crash either
            self._fd = fd
            return self
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _describe(_read_holder(self.path))
                    os.close(fd)
                    raise RunLockedError(
                        f"run directory {str(self.run_dir)!r} is in use by {holder}: wait for it "
                        "to end, or stop it first (one process writes a run at a time)"
                    ) from None
                time.sleep(0.05)
        self._fd = fd
        info = {
            "pid": os.getpid(),
            "host": platform.node(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
            "since": _dt.datetime.now().isoformat(timespec="seconds"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError as e:
            self.release()
            err = storage_error(e, "taking the run's lock", self.run_dir)
            if err is not None:
                raise err from None
            raise
        return self

    def release(self) -> None:
        """Let go of the lock (the lock file stays: removing it would race with a new writer)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8").strip() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict[str, Any]) -> str:
    if not info.get("pid"):
        return "another process"
    host = f" on {info['host']}" if info.get("host") and info["host"] != platform.node() else ""
    what = f" ({info['command']}, since {info.get('since', '?')})" if info.get("command") else ""
    return f"process {info['pid']}{host}{what}"


def lock_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """Who holds the run's lock — ``{"pid", "host", "command", "since"}`` — or None when free.

    Never blocks and never writes (works on read-only folders). A run directory without a lock
    file (written before locks existed, or never started) counts as free.
    """
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None:  # pragma: no cover
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path) or {"pid": None}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def is_locked(run_dir: str | Path) -> bool:
    """Whether a live process holds the run directory's lock."""
    return lock_holder(run_dir) is not None
