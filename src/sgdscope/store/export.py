"""Exports of a run's metrics: CSV, Parquet, JSON Lines and TensorBoard event files.

Every format is long — one record per stored ``(step, name)`` — so "not measured at this step"
and "measured NaN" stay different, and the records are exactly the store's:

- ``csv``: scalars only, columns ``step, epoch, name, value`` (NaN written ``nan``, ±inf
  ``inf``/``-inf``); arrays have no CSV form and are left out.
- ``parquet``: columns ``step, epoch, name, value, dtype, shape, array``. A scalar row has its
  ``value`` and null array columns; an array row has a null ``value``, its numpy ``dtype`` name,
  its ``shape`` and ``array``, the entries in C order as float64 (``np.reshape(array, shape)``).
  The file's metadata key ``sgdscope`` holds the run's path, status and last step.
- ``jsonl``: one JSON object per line; scalars ``{"step", "epoch", "name", "value"}``, arrays
  ``{"step", "epoch", "name", "dtype", "shape", "array"}`` with ``array`` as nested lists. The
  file is strict JSON: NaN and ±inf are the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
  (protobuf's JSON mapping; Python's ``float()`` reads them back).
- ``tensorboard``: a folder with one event file: scalars as float64 (exact), arrays as histograms
  of their finite entries, the config as text.

Reading is one read-only SQLite transaction, so a run that is still training exports a consistent
snapshot of its committed steps and is never written to.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._registry import closest
from ..errors import InvalidArgumentError, SgdscopeError
from .run import CONFIG_FILE, METRICS_FILE, is_run_dir
from .sqlite_store import connect

FORMATS = ("csv", "parquet", "jsonl", "tensorboard")
_SUFFIX = {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl", "tensorboard": ""}


@dataclass(frozen=True)
class Snapshot:
    """A run's committed metrics, read in one transaction.

    Attributes:
        path: the run directory.
        status: the run's status at the time of reading (``running`` for a live run).
        last_step: the last step written.
        scalars: long DataFrame ``step, epoch, name, value``, sorted by step then name.
        arrays: ``(step, epoch, name, array)`` sorted by step then name.
    """

    path: Path
    status: str
    last_step: int | None
    scalars: pd.DataFrame
    arrays: list[tuple[int, int | None, str, np.ndarray]]


def _read_scalars(con: sqlite3.Connection) -> pd.DataFrame:
    rows = con.execute("SELECT step, epoch, name, value FROM scalars ORDER BY step, name")
    df = pd.DataFrame(rows.fetchall(), columns=["step", "epoch", "name", "value"])
    # SQLite keeps a NaN as NULL: a NULL value is a NaN.
    return df.astype({"step": "int64", "value": "float64"})


def _read_arrays(con: sqlite3.Connection) -> list[tuple[int, int | None, str, np.ndarray]]:
    rows = con.execute(
        "SELECT step, epoch, name, dtype, shape, data FROM arrays ORDER BY step, name"
    )
    return [
        (int(s), e, n, np.frombuffer(d, dtype=np.dtype(dt)).reshape(json.loads(sh)))
        for s, e, n, dt, sh, d in rows
    ]


def read_snapshot(run_dir: str | Path) -> Snapshot:
    """Read a run's scalars, arrays and status in one read-only transaction."""
    path = _check_run(run_dir)
    try:
        con = connect(path / METRICS_FILE, readonly=True)
        try:
            con.execute("BEGIN")  # one snapshot for every query below (WAL readers see it whole)
            run = con.execute("SELECT status, last_step FROM run").fetchone() or ("unknown", None)
            scalars = _read_scalars(con)
            arrays = _read_arrays(con)
            con.execute("COMMIT")
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise SgdscopeError(
            f"cannot read {str(path / METRICS_FILE)!r}: {e} (is it a sgdscope run directory?)"
        ) from e
    return Snapshot(path, str(run[0]), run[1], scalars, arrays)


# ------------------------------------------------------------------------- checks
def check_format(fmt: str) -> str:
    """The format name, lower-cased; an unknown one raises with the nearest valid name."""
    name = str(fmt).lower()
    if name in FORMATS:
        return name
    hint = closest(name, FORMATS)
    near = f"; did you mean {hint!r}?" if hint else ""
    raise InvalidArgumentError(
        f"unknown export format {fmt!r}{near} (formats: {', '.join(FORMATS)})"
    )


def _check_run(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not path.exists():
        raise SgdscopeError(f"{str(path)!r} does not exist")
    if not is_run_dir(path):
        hint = " (a folder of runs: use export_runs)" if path.is_dir() else ""
        raise SgdscopeError(f"{str(path)!r} is not a run directory (no {METRICS_FILE}){hint}")
    return path


@contextlib.contextmanager
def _writable(path: Path) -> Iterator[None]:
    """Turn a filesystem failure while writing ``path`` into one line for the user."""
    try:
        yield
    except OSError as e:
        reason = e.strerror or str(e)
        raise SgdscopeError(f"cannot write {str(path)!r}: {reason}; choose another --out") from e


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory at or below ``root`` (sweeps, demos, nested folders), sorted."""
    root = Path(root)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if METRICS_FILE in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a run's own folders hold no runs
        else:
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return sorted(found)


# ------------------------------------------------------------------------- writers
def _finite_or_name(x: float) -> float | str:
    if math.isfinite(x):
        return x
    if math.isnan(x):
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def _json_array(a: np.ndarray) -> Any:
    if a.dtype.kind == "f":
        if np.isfinite(a).all():
            return a.tolist()
        obj = np.vectorize(_finite_or_name, otypes=[object])(a)
        return obj.tolist()
    return a.tolist()


def _records(snap: Snapshot) -> Iterator[tuple[tuple[int, str, int], dict[str, Any]]]:
    """Scalar and array records with their sort key (step, name, scalars first)."""
    for step, epoch, name, value in snap.scalars.itertuples(index=False):
        rec = {"step": int(step), "epoch": _int(epoch), "name": name, "value": float(value)}
        yield (int(step), name, 0), rec
    for step, epoch, name, a in snap.arrays:
        yield (step, name, 1), {"step": step, "epoch": _int(epoch), "name": name, "array": a}


def _int(v: Any) -> int | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)


def _sorted_records(snap: Snapshot) -> list[dict[str, Any]]:
    return [r for _, r in sorted(_records(snap), key=lambda kr: kr[0])]


def _write_csv(snap: Snapshot, out: Path) -> None:
    df = snap.scalars.astype({"epoch": "Int64"})
    df.to_csv(out, index=False, na_rep="nan")


def _write_jsonl(snap: Snapshot, out: Path) -> None:
    with out.open("w", encoding="utf-8") as f:
        for r in _sorted_records(snap):
            if "array" in r:
                a = r.pop("array")
                r.update(dtype=a.dtype.name, shape=list(a.shape), array=_json_array(a))
            else:
                r["value"] = _finite_or_name(r["value"])
            f.write(json.dumps(r, allow_nan=False) + "\n")


def _write_parquet(snap: Snapshot, out: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise SgdscopeError(
            "the parquet format needs pyarrow, which is not installed: "
            "pip install 'sgdscope[parquet]'"
        ) from e
    cols: dict[str, list[Any]] = {k: [] for k in ("step", "epoch", "name", "value", "dtype")}
    cols |= {"shape": [], "array": []}
    for r in _sorted_records(snap):
        for k in ("step", "epoch", "name"):
            cols[k].append(r[k])
        a = r.get("array")
        cols["value"].append(None if a is not None else r["value"])
        cols["dtype"].append(None if a is None else a.dtype.name)
        cols["shape"].append(None if a is None else list(a.shape))
        cols["array"].append(None if a is None else _float64_flat(a))
    schema = pa.schema(
        [
            ("step", pa.int64()),
            ("epoch", pa.int64()),
            ("name", pa.string()),
            ("value", pa.float64()),
            ("dtype", pa.string()),
            ("shape", pa.list_(pa.int64())),
            ("array", pa.list_(pa.float64())),
        ],
        metadata={"sgdscope": json.dumps(_about(snap))},
    )
    # from_pandas=False: a float NaN stays a NaN value, only None becomes null.
    table = pa.Table.from_pydict(cols, schema=schema)
    pq.write_table(table, out)


def _float64_flat(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in "biuf":
        raise InvalidArgumentError(
            f"cannot export an array of dtype {a.dtype.name} to parquet: expected real numbers"
        )
    return a.astype(np.float64).ravel()


def _about(snap: Snapshot) -> dict[str, Any]:
    return {"run": str(snap.path), "status": snap.status, "last_step": snap.last_step}


def _write_tensorboard(snap: Snapshot, out: Path) -> None:
    from .tensorboard import EventWriter, clear_event_files

    out.mkdir(parents=True, exist_ok=True)
    clear_event_files(out)  # a re-export replaces its events rather than doubling them
    w = EventWriter(out)
    try:
        cfg = snap.path / CONFIG_FILE
        if cfg.exists():
            w.text(0, "config", "```yaml\n" + cfg.read_text() + "\n```")
        for step, group in snap.scalars.groupby("step", sort=True):
            w.scalars(int(step), dict(zip(group["name"], group["value"], strict=True)))
        scalar_names = set(snap.scalars["name"])
        for step, _, name, a in snap.arrays:
            w.histogram(step, f"{name}/array" if name in scalar_names else name, a)
    finally:
        w.close()


_WRITERS = {
    "csv": _write_csv,
    "parquet": _write_parquet,
    "jsonl": _write_jsonl,
    "tensorboard": _write_tensorboard,
}


def _atomic_write(fmt: str, snap: Snapshot, out: Path) -> None:
    """Write a file format to a temporary name beside ``out``, then rename it into place."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        _WRITERS[fmt](snap, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------- public API
def default_out(path: str | Path, fmt: str, *, one_run: bool) -> Path:
    """Where an export goes without ``out``: beside ``path``, ``RUN.csv`` or ``PATH-FORMAT/``."""
    fmt = check_format(fmt)
    p = Path(path).resolve()
    if one_run and fmt != "tensorboard":
        return p.with_name(p.name + _SUFFIX[fmt])
    return p.with_name(f"{p.name}-{fmt}")


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write one run's metrics in ``fmt`` (csv, parquet, jsonl or tensorboard).

    Args:
        run_dir: the run directory (it may still be training: its committed steps are read in
            one snapshot, and nothing in it is written).
        fmt: ``csv`` (scalars), ``parquet`` and ``jsonl`` (scalars and arrays), ``tensorboard``
            (a folder of event files). The layouts are in this module's docstring.
        out: the file to write (a folder for tensorboard). An existing folder, for the file
            formats, receives ``<run name>.<format>``. Default: beside the run, ``RUN.csv`` /
            ``RUN-tensorboard/``.

    Returns:
        The path written. An existing file of that name is replaced.

    Raises:
        InvalidArgumentError: an unknown format (with the nearest valid one).
        SgdscopeError: ``run_dir`` is not a run directory; ``out`` cannot be written.
    """
    fmt = check_format(fmt)
    path = _check_run(run_dir)
    if out is None:
        target = default_out(path, fmt, one_run=True)
    else:
        target = Path(out)
        if fmt != "tensorboard" and target.is_dir():
            target = target / (path.resolve().name + _SUFFIX[fmt])
    snap = read_snapshot(path)
    with _writable(target):
        if fmt == "tensorboard":
            _write_tensorboard(snap, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(fmt, snap, target)
    return target


def export_runs(root: str | Path, fmt: str, out: str | Path | None = None) -> list[Path]:
    """Export every run at or below ``root`` (a sweep, a demo, any folder of runs).

    Each run goes to ``out/<its path under root><suffix>`` (a folder per run for tensorboard,
    which then shows each run under its path). Default ``out``: ``<root>-<format>/`` beside root.

    Returns:
        The paths written, in the order of the runs' paths.
    """
    fmt = check_format(fmt)
    root = Path(root)
    if not root.exists():
        raise SgdscopeError(f"{str(root)!r} does not exist")
    if not root.is_dir():
        raise SgdscopeError(f"{str(root)!r} is not a run directory or a folder of runs")
    runs = find_runs(root)
    if not runs:
        raise SgdscopeError(
            f"no runs in {str(root)!r} (no folder at or below it holds a {METRICS_FILE})"
        )
    base = Path(out) if out is not None else default_out(root, fmt, one_run=False)
    written = []
    for run in runs:
        rel = run.relative_to(root)
        if rel == Path("."):
            target = base / (run.resolve().name + _SUFFIX[fmt])
        else:
            target = base / rel.parent / (rel.name + _SUFFIX[fmt])
        written.append(export_run(run, fmt, target))
    return written
