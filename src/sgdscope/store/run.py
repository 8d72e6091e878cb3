"""Reading a run directory: ``load_run(path)`` → :class:`Run` (config, status, scalars, arrays)."""

from __future__ import annotations

import json
import os
import sqlite3
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..errors import SgdscopeError
from ._lock import lock_holder
from .sqlite_store import connect

CONFIG_FILE = "config.yaml"
META_FILE = "meta.yaml"
METRICS_FILE = "metrics.sqlite"
CHECKPOINT_DIR = "checkpoints"


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / METRICS_FILE).exists()


#: Stored statuses that claim a live writer; without the run's lock held they are ``stale``.
_LIVE = ("created", "running")


def _read_yaml(path: Path, problems: list[str]) -> dict[str, Any]:
    """A run's YAML file as a dict; a missing or unreadable one gives {} and a problem line."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problems.append(f"{path.name} is unreadable{where}: {type(e).__name__}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name} does not hold a mapping")
        return {}
    return data


class Run:
    """A finished or running run, read from its directory (the store is the only source).

    Reading never fails on a damaged run: an unreadable ``config.yaml`` or ``meta.yaml`` gives
    an empty dict and a line in :attr:`problems`; an unreadable store gives status ``damaged``.

    Attributes:
        path: the run directory.
        config: the resolved config (dict).
        meta: versions, git commit, seed, host.
        status: running | finished | diverged | failed | interrupted, or ``stale`` (stored as
            running but its process is gone: killed, out of memory, node lost), or ``damaged``.
        scalars: long DataFrame with columns step, epoch, name, value (sorted by step, name).
        problems: what could not be read, one line each.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_run_dir(self.path):
            raise SgdscopeError(
                f"{str(self.path)!r} is not a run directory (no {METRICS_FILE} in it)"
            )
        self.problems: list[str] = []
        self.config: dict[str, Any] = _read_yaml(self.path / CONFIG_FILE, self.problems)
        self.meta: dict[str, Any] = _read_yaml(self.path / META_FILE, self.problems)

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            con = connect(self.path / METRICS_FILE, readonly=True)
            try:
                return con.execute(sql, args).fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError as e:
            if "unable to open" not in str(e) and "readonly" not in str(e):
                raise
        # A read-only folder without the WAL's -shm file: SQLite cannot open the database in
        # WAL mode there; immutable=1 reads the main file as it is (committed, checkpointed data).
        con = sqlite3.connect(f"file:{self.path / METRICS_FILE}?immutable=1", uri=True)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    @property
    def info(self) -> dict[str, Any]:
        """status (see the class doc), created, started, finished, last_step, error, ...;
        ``stored_status`` is the status as written in the store."""
        keys = ("status", "created", "started", "finished", "last_step", "error", "diverged_step")
        try:
            rows = self._query(
                "SELECT status, created, started, finished, last_step, error, diverged_step "
                "FROM run"
            )
        except sqlite3.Error as e:
            return {"status": "damaged", "stored_status": None, "error": f"{METRICS_FILE}: {e}"}
        info: dict[str, Any] = (
            dict(zip(keys, rows[0], strict=True)) if rows else {"status": "unknown"}
        )
        info["stored_status"] = info["status"]
        if info["status"] in _LIVE and self.holder is None:
            info["status"] = "stale"
        return info

    @property
    def holder(self) -> dict[str, Any] | None:
        """The live process writing this run — ``{"pid", "host", "command", "since"}`` — or
        None when none is (finished, or its process died)."""
        return lock_holder(self.path)

    @property
    def status(self) -> str:
        return str(self.info["status"])

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def scalars(self) -> pd.DataFrame:
        rows = self._query("SELECT step, epoch, name, value FROM scalars ORDER BY step, name")
        df = pd.DataFrame(rows, columns=["step", "epoch", "name", "value"])
        return df.astype({"step": "int64", "value": "float64"})

    def wide(self, names: list[str] | None = None) -> pd.DataFrame:
        """Scalars pivoted to one row per step and one column per name."""
        df = self.scalars if names is None else self.scalars[self.scalars.name.isin(names)]
        return df.pivot_table(index="step", columns="name", values="value", aggfunc="first")

    def scalar(self, name: str) -> pd.Series:
        """One scalar's values indexed by step."""
        df = self.scalars[self.scalars.name == name]
        return pd.Series(df.value.to_numpy(), index=df.step.to_numpy(), name=name)

    def last(self) -> dict[str, float]:
        """The latest value of every scalar."""
        df = self.scalars.sort_values("step").groupby("name").tail(1)
        return dict(zip(df.name, df.value, strict=True))

    def array_names(self) -> list[str]:
        return [r[0] for r in self._query("SELECT DISTINCT name FROM arrays ORDER BY name")]

    @property
    def warnings(self) -> pd.DataFrame:
        """The probes that failed at a step (their metrics are NaN there) and why: columns
        step, source, message (empty for a run without failures or an older store)."""
        has = self._query("SELECT name FROM sqlite_master WHERE type='table' AND name='warnings'")
        rows = (
            self._query("SELECT step, source, message FROM warnings ORDER BY step, source")
            if has
            else []
        )
        return pd.DataFrame(rows, columns=["step", "source", "message"])

    def array(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)``: the steps (S,) and the arrays stacked (S, *shape).

        Arrays whose shape changes across steps come back as an object array of arrays.
        """
        rows = self._query(
            "SELECT step, dtype, shape, data FROM arrays WHERE name = ? ORDER BY step", (name,)
        )
        if not rows:
            raise KeyError(f"no array {name!r} in run {self.name} (have: {self.array_names()})")
        steps = np.array([r[0] for r in rows], dtype=np.int64)
        arrs = [np.frombuffer(r[3], dtype=np.dtype(r[1])).reshape(json.loads(r[2])) for r in rows]
        if len({a.shape for a in arrs}) == 1:
            return steps, np.stack(arrs)
        out = np.empty(len(arrs), dtype=object)
        out[:] = arrs
        return steps, out

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"


def load_run(path: str | Path) -> Run:
    """Open a run directory for reading."""
    return Run(path)


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every run directory under ``root`` at any depth (sweeps, demos), sorted by path.

    A run directory is not searched further; hidden folders and ``checkpoints/`` are skipped.
    """
    root = Path(root)
    if is_run_dir(root):
        return [root]
    if not root.is_dir():
        raise SgdscopeError(f"{str(root)!r} is not a directory")
    found = []
    for here, dirs, _files in os.walk(root):
        dirs.sort()
        keep = []
        for d in dirs:
            p = Path(here) / d
            if d.startswith(".") or d == CHECKPOINT_DIR:
                continue
            if is_run_dir(p):
                found.append(p)
            else:
                keep.append(d)
        dirs[:] = keep
    return sorted(found)


def list_runs(root: str | Path, *, recursive: bool = True) -> list[Run]:
    """The runs under ``root`` (or ``root`` itself), newest first.

    Args:
        root: a folder of runs, a sweep or demo folder, or one run directory.
        recursive: look at every depth (default), not only directly under ``root``.
    """
    root = Path(root)
    if recursive:
        paths = find_run_dirs(root)
    elif is_run_dir(root):
        paths = [root]
    elif root.is_dir():
        paths = [p for p in sorted(root.iterdir()) if p.is_dir() and is_run_dir(p)]
    else:
        raise SgdscopeError(f"{str(root)!r} is not a directory")
    runs = [Run(p) for p in paths]
    created = {r.path: r.info.get("created") or 0 for r in runs}
    return sorted(runs, key=lambda r: created[r.path], reverse=True)
