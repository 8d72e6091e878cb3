"""The SQLite metrics store of one run (WAL mode; one transaction per step).

Tables:
- ``run``: one row — status (running | finished | diverged | failed), times, error, last step.
- ``meta``: key/value facts (versions, git commit, seed, host).
- ``scalars(step, epoch, name, value, seq)``: primary key (step, name).
- ``arrays(step, epoch, name, dtype, shape, data, seq)``: primary key (step, name); ``data`` is the
  raw little-endian bytes of a C-contiguous numpy array.
- ``warnings(step, source, message, seq)``: a probe (or the eigenbasis) that failed at a step and
  why; its metrics are NaN there and training went on. Primary key (step, source).

``seq`` numbers the write transactions. A checkpoint records the last ``seq`` it covers; resuming
deletes every row written after it, so a killed run's partial step is neither lost twice nor
duplicated, and the resumed run rewrites exactly the rows an uninterrupted run would have.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import StorageError

STATUSES = ("created", "running", "finished", "diverged", "failed", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    status TEXT NOT NULL,
    created REAL, started REAL, finished REAL,
    last_step INTEGER, error TEXT, diverged_step INTEGER
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS scalars (
    step INTEGER NOT NULL, epoch INTEGER, name TEXT NOT NULL, value REAL, seq INTEGER NOT NULL,
    PRIMARY KEY (step, name)
);
CREATE TABLE IF NOT EXISTS arrays (
    step INTEGER NOT NULL, epoch INTEGER, name TEXT NOT NULL, dtype TEXT NOT NULL,
    shape TEXT NOT NULL, data BLOB NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (step, name)
);
CREATE TABLE IF NOT EXISTS warnings (
    step INTEGER NOT NULL, source TEXT NOT NULL, message TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (step, source)
);
CREATE INDEX IF NOT EXISTS scalars_name ON scalars (name, step);
CREATE INDEX IF NOT EXISTS arrays_name ON arrays (name, step);
"""


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(a))
    if arr.dtype == object:
        raise TypeError("arrays must be numeric")
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False)


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    else:
        con = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed step survives a killed process (the resume guarantee);
        # a power loss may drop steps since the last sync, so `sync()` runs before every
        # checkpoint. FULL would fsync every step: about +0.3 ms per step on small models.
        con.execute("PRAGMA synchronous=NORMAL")
    return con


class StoreMirror(Protocol):
    """Something told of the store's committed writes (the live TensorBoard mirror)."""

    def on_step(
        self,
        step: int,
        epoch: int,
        scalars: Mapping[str, float],
        arrays: Mapping[str, Any],
        seq: int,
    ) -> None: ...
    def on_truncate(self, seq: int) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def storage_error(e: sqlite3.Error, what: str, path: str | Path) -> StorageError | None:
    """The one-line :class:`StorageError` for SQLite's full-disk / read-only / damaged errors."""
    msg = str(e).lower()
    run_dir = Path(path).parent
    if "full" in msg:
        return StorageError(
            f"no space left on the device while {what} ({run_dir}): free some space, then "
            f"continue with `sgdscope resume {run_dir}`"
        )
    if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
        return StorageError(
            f"cannot write {Path(path).name} in {run_dir} while {what} ({e}): make the folder "
            "writable (or copy the run somewhere writable) and run the command there"
        )
    if "not a database" in msg or "malformed" in msg:
        return StorageError(
            f"{path} is damaged ({e}); the run's metrics cannot be read or extended"
        )
    return None


@contextmanager
def _guarded(what: str, path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as e:
        err = storage_error(e, what, path)
        if err is None:
            raise
        raise err from None


class MetricsStore:
    """Writer for ``metrics.sqlite``. Use :meth:`write_step` once per step (one transaction).

    A full disk, a read-only folder or a damaged file raise :class:`~sgdscope.errors.StorageError`
    with one line saying what to do (the step in flight is rolled back).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with _guarded("opening the metrics store", self.path):
            self.con = connect(self.path)
            self.con.executescript(_SCHEMA)
            if self.con.execute("SELECT COUNT(*) FROM run").fetchone()[0] == 0:
                self.con.execute(
                    "INSERT INTO run (id, status, created) VALUES (1, 'created', ?)", (time.time(),)
                )
            self.seq = int(
                self.con.execute(
                    "SELECT MAX(m) FROM (SELECT COALESCE(MAX(seq), 0) AS m FROM scalars "
                    "UNION ALL SELECT COALESCE(MAX(seq), 0) FROM arrays "
                    "UNION ALL SELECT COALESCE(MAX(seq), 0) FROM warnings)"
                ).fetchone()[0]
                or 0
            )
        self._mirrors: list[StoreMirror] = []

    def add_mirror(self, mirror: StoreMirror) -> None:
        """Tell ``mirror`` of every step committed, truncation, sync and close from now on."""
        self._mirrors.append(mirror)

    def set_meta(self, values: Mapping[str, Any]) -> None:
        with _guarded("writing the run's facts", self.path), self.con:
            self.con.execute("BEGIN")
            self.con.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )

    def set_status(
        self,
        status: str,
        *,
        error: str | None = None,
        last_step: int | None = None,
        diverged_step: int | None = None,
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        now = time.time()
        sets = ["status = ?"]
        args: list[Any] = [status]
        if status == "running":
            sets.append("started = COALESCE(started, ?)")
            args.append(now)
            sets.append("error = NULL")
        if status in ("finished", "diverged", "failed", "interrupted"):
            sets.append("finished = ?")
            args.append(now)
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        if last_step is not None:
            sets.append("last_step = ?")
            args.append(last_step)
        if diverged_step is not None:
            sets.append("diverged_step = ?")
            args.append(diverged_step)
        with _guarded(f"recording status {status!r}", self.path):
            self.con.execute(f"UPDATE run SET {', '.join(sets)} WHERE id = 1", args)

    def write_step(
        self,
        step: int,
        epoch: int,
        scalars: Mapping[str, float] | None = None,
        arrays: Mapping[str, Any] | None = None,
        warnings: Mapping[str, str] | None = None,
    ) -> int:
        """Write one step's scalars, arrays and warnings (source → reason) in one transaction;
        returns its ``seq``."""
        scalars = scalars or {}
        arrays = arrays or {}
        warnings = warnings or {}
        if not scalars and not arrays and not warnings:
            return self.seq
        seq = self.seq + 1
        srows = [(step, epoch, k, float(v), seq) for k, v in scalars.items()]
        arows = []
        for k, v in arrays.items():
            a = _to_numpy(v)
            arows.append((step, epoch, k, a.dtype.str, json.dumps(list(a.shape)), a.tobytes(), seq))
        wrows = [(step, str(k), str(v), seq) for k, v in warnings.items()]
        with _guarded(f"writing the metrics of step {step}", self.path):
            self._write(seq, srows, arows, step, wrows)
        self.seq = seq
        for m in self._mirrors:  # after the commit: a mirror never holds an uncommitted step
            m.on_step(step, epoch, scalars, arrays, seq)
        return seq

    def _write(
        self, seq: int, srows: list[tuple], arows: list[tuple], step: int, wrows: list[tuple]
    ) -> None:
        self.con.execute("BEGIN IMMEDIATE")
        try:
            self.con.executemany(
                "INSERT INTO scalars (step, epoch, name, value, seq) VALUES (?, ?, ?, ?, ?)", srows
            )
            self.con.executemany(
                "INSERT INTO arrays (step, epoch, name, dtype, shape, data, seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                arows,
            )
            self.con.executemany(
                "INSERT INTO warnings (step, source, message, seq) VALUES (?, ?, ?, ?)", wrows
            )
            self.con.execute("UPDATE run SET last_step = ? WHERE id = 1", (step,))
            self.con.execute("COMMIT")
        except BaseException:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            raise

    def sync(self) -> None:
        """Make every committed step durable on disk (called before each checkpoint)."""
        with _guarded("syncing the metrics to disk", self.path):
            self.con.execute("PRAGMA wal_checkpoint(FULL)")
        for m in self._mirrors:
            m.flush()

    def truncate_after(self, seq: int) -> int:
        """Delete rows written after transaction ``seq`` (resume); returns the number deleted."""
        with _guarded("removing rows after the checkpoint", self.path):
            self.con.execute("BEGIN IMMEDIATE")
            n = self.con.execute("DELETE FROM scalars WHERE seq > ?", (seq,)).rowcount
            n += self.con.execute("DELETE FROM arrays WHERE seq > ?", (seq,)).rowcount
            n += self.con.execute("DELETE FROM warnings WHERE seq > ?", (seq,)).rowcount
            self.con.execute("COMMIT")
        self.seq = seq
        for m in self._mirrors:
            m.on_truncate(seq)
        return n

    def close(self) -> None:
        try:
            for m in self._mirrors:
                m.close()
        finally:
            self._mirrors = []
            self.con.close()
