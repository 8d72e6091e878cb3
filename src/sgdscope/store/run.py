"""Reading a run directory: ``load_run(path)`` → :class:`Run` (config, status, scalars, arrays)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..errors import SgdscopeError
from .sqlite_store import connect

CONFIG_FILE = "config.yaml"
META_FILE = "meta.yaml"
METRICS_FILE = "metrics.sqlite"
CHECKPOINT_DIR = "checkpoints"


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / METRICS_FILE).exists()


class Run:
    """A finished or running run, read from its directory (the store is the only source).

    Attributes:
        path: the run directory.
        config: the resolved config (dict).
        meta: versions, git commit, seed, host.
        status: running | finished | diverged | failed | interrupted.
        scalars: long DataFrame with columns step, epoch, name, value (sorted by step, name).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not is_run_dir(self.path):
            raise SgdscopeError(
                f"{str(self.path)!r} is not a run directory (no {METRICS_FILE} in it)"
            )
        cfg = self.path / CONFIG_FILE
        self.config: dict[str, Any] = yaml.safe_load(cfg.read_text()) if cfg.exists() else {}
        meta = self.path / META_FILE
        self.meta: dict[str, Any] = yaml.safe_load(meta.read_text()) if meta.exists() else {}

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        con = connect(self.path / METRICS_FILE, readonly=True)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    @property
    def info(self) -> dict[str, Any]:
        rows = self._query(
            "SELECT status, created, started, finished, last_step, error, diverged_step FROM run"
        )
        keys = ("status", "created", "started", "finished", "last_step", "error", "diverged_step")
        return dict(zip(keys, rows[0], strict=True)) if rows else {"status": "unknown"}

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


def list_runs(root: str | Path) -> list[Run]:
    """Every run directory directly under ``root`` (or ``root`` itself), newest first."""
    root = Path(root)
    if is_run_dir(root):
        return [Run(root)]
    if not root.is_dir():
        raise SgdscopeError(f"{str(root)!r} is not a directory")
    runs = [Run(p) for p in sorted(root.iterdir()) if p.is_dir() and is_run_dir(p)]
    return sorted(runs, key=lambda r: r.info.get("created") or 0, reverse=True)
