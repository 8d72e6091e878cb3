"""What figures and findings read from runs and sweeps: metric extraction, one place.

A *sweep* here is anything with ``.path``, ``.runs`` (list of :class:`~sgdscope.store.Run`),
``.summary`` (DataFrame) and ``.grid_keys`` — :func:`sgdscope.sweep.load_sweep`'s object, or
:class:`FolderSweep`, a stand-in for a plain folder of run directories.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics as M
from ..errors import SgdscopeError
from ..store import Run, is_run_dir, load_run, summarize_run
from ..store.summary import lambda1 as lambda1
from ..store.summary import scalar_series
from ..store.summary import series as series
from ..store.summary import spectral_norm as spectral_norm
from ..sweep import is_sweep_dir, load_sweep

#: Config keys that differ between runs without being experimental factors.
_IGNORED_KEYS = ("name", "store.root", "train.progress", "device")

LR_KEY = "optim.lr"
BATCH_KEY = "train.batch_size"
SEED_KEY = "seed"


# --------------------------------------------------------------------------- sweeps
def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts to dotted keys (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def is_sweep(obj: Any) -> bool:
    """A sweep object (has runs), as opposed to one :class:`Run`."""
    return not isinstance(obj, Run) and hasattr(obj, "runs")


def _hashable(v: Any) -> Any:
    return repr(v) if isinstance(v, (list, dict)) else v


def infer_grid_keys(runs: list[Run]) -> list[str]:
    """The config keys whose values differ between runs (the sweep's factors)."""
    flats = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flats for k in f})
    out = []
    for k in keys:
        if k in _IGNORED_KEYS or k.startswith("probes"):
            continue
        if len({_hashable(f.get(k)) for f in flats}) > 1:
            out.append(k)
    return out


@dataclass
class FolderSweep:
    """A folder of run directories read as a sweep (``runs/<name>/`` or the folder itself).

    Used when the folder was not written by :mod:`sgdscope.sweep`.
    """

    path: Path
    runs: list[Run]
    grid_keys: list[str] = field(default_factory=list)
    summary_fn: Callable[[], pd.DataFrame] | None = None

    @cached_property
    def summary(self) -> pd.DataFrame:
        return self.summary_fn() if self.summary_fn is not None else sweep_frame(self)


def _run_dirs(path: Path) -> list[Path]:
    base = path / "runs" if (path / "runs").is_dir() else path
    return sorted(p for p in base.iterdir() if p.is_dir() and is_run_dir(p))


def looks_like_sweep(path: str | Path) -> bool:
    """A sweep directory (per :func:`sgdscope.sweep.is_sweep_dir`, or a folder of runs)."""
    path = Path(path)
    if is_sweep_dir(path):
        return True
    return path.is_dir() and not is_run_dir(path) and bool(_run_dirs(path))


def open_target(path: str | Path) -> Any:
    """A :class:`Run` for a run directory, a sweep object for a sweep directory."""
    path = Path(path)
    if is_run_dir(path):
        return load_run(path)
    if not path.exists():
        raise SgdscopeError(f"{str(path)!r} does not exist: pass a run or sweep directory")
    if is_sweep_dir(path):
        sweep = load_sweep(path)
        # Read each run once: the sweep object reopens its runs on every access.
        return FolderSweep(
            Path(sweep.path),
            list(sweep.runs),
            list(sweep.grid_keys),
            summary_fn=lambda: sweep.summary,
        )
    if path.is_dir():
        dirs = _run_dirs(path)
        if dirs:
            runs = [load_run(p) for p in dirs]
            return FolderSweep(path, runs, infer_grid_keys(runs))
    raise SgdscopeError(
        f"{str(path)!r} is neither a run directory (no metrics.sqlite) nor a sweep directory "
        "(no runs/ of run directories): pass the folder `sgdscope run` or `sgdscope sweep` wrote"
    )


def as_sweep(obj: Any) -> Any:
    """A sweep object from a sweep, a sweep or run directory, or a list of runs."""
    if is_sweep(obj):
        return obj
    if isinstance(obj, (str, Path)):
        obj = open_target(obj)
        if is_sweep(obj):
            return obj
    if isinstance(obj, Run):
        obj = [obj]
    runs = list(obj)
    path = Path(runs[0].path).parent if runs else Path(".")
    return FolderSweep(path, runs, infer_grid_keys(runs))


def grid_keys(sweep: Any) -> list[str]:
    keys = list(getattr(sweep, "grid_keys", None) or [])
    return keys or infer_grid_keys(list(sweep.runs))


def run_label(run: Run, keys: Iterable[str]) -> str:
    """``name`` or ``key=value, ...`` over the given keys (short key names)."""
    flat = flatten(run.config)
    parts = [f"{k.rsplit('.', 1)[-1]}={_short(flat.get(k))}" for k in keys if k in flat]
    return ", ".join(parts) or run.name


def _short(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- one run
# Array names are read once per Run (weak keys: the cache goes with the Run); scalars are read
# through the run summary's per-Run cache, so figures, findings and the summary share one read.
_ARRAY_NAMES: weakref.WeakKeyDictionary[Run, frozenset[str]] = weakref.WeakKeyDictionary()


def scalar_names(run: Run) -> list[str]:
    """Names of the scalars with at least one finite value."""
    return list(scalar_series(run))


def array_or_none(run: Run, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    names = _ARRAY_NAMES.get(run)
    if names is None:
        names = _ARRAY_NAMES[run] = frozenset(run.array_names())
    if name not in names:
        return None
    return run.array(name)


def total_steps(run: Run) -> int:
    """The number of updates the run made (its largest step)."""
    return int(summarize_run(run)["last_step"])


def lr_value(run: Run) -> float:
    """η (the config's; schedules are shown from the ``lr`` scalar)."""
    return float(run.config.get("optim", {}).get("lr", math.nan))


def batch_value(run: Run) -> float:
    """S as a number; full batch (GD) is +inf, larger than any mini-batch."""
    s = run.config.get("train", {}).get("batch_size", math.nan)
    return math.inf if s == "full" else float(s)


def is_gd(run: Run) -> bool:
    return run.config.get("train", {}).get("batch_size") == "full" and optim_name(run) == "sgd"


def optim_name(run: Run) -> str:
    return str(run.config.get("optim", {}).get("name", "sgd"))


def optim_option(run: Run, key: str) -> Any:
    return (run.config.get("optim", {}).get("options") or {}).get(key)


def schedule_name(run: Run) -> str:
    return str(run.config.get("schedule", {}).get("name", "constant"))


def lr_at(run: Run, steps: np.ndarray) -> np.ndarray:
    """η_t at the given steps: the ``lr`` scalar where stored, else the config's η."""
    lr = series(run, M.LR)
    if lr is None:
        return np.full(len(steps), lr_value(run))
    return np.interp(steps, lr.index.to_numpy(float), lr.to_numpy(float))


def eigenvalues(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps (S,), top-k eigenvalues (S, k), descending) from ``eigenvalues`` or ``lambda_i``."""
    arr = array_or_none(run, M.EIGENVALUES)
    if arr is not None and arr[1].dtype != object and arr[1].ndim == 2:
        return arr[0], arr[1].astype(float)
    index = {n: i for n in scalar_names(run) if (i := M.parse_lambda(n)) is not None}
    if not index:
        return None
    names = sorted(index, key=index.__getitem__)
    w = run.wide(names).dropna(how="all")
    return w.index.to_numpy(np.int64), w[names].to_numpy(float)


def sweep_frame(sweep: Any) -> pd.DataFrame:
    """One row per run: ``run``, each grid key, ``seed``, ``optim.lr``, ``train.batch_size``
    (numeric, full → inf), ``optim.name``, ``schedule.name``, then
    :func:`~sgdscope.store.summarize_run`'s fields (``status``, ``diverged``, ``final_*``,
    ``peak_*``, ``mean_*``, ...)."""
    keys = grid_keys(sweep)
    rows = []
    for r in sweep.runs:
        flat = flatten(r.config)
        row: dict[str, Any] = {"run": r.name}
        for k in keys:
            row[k] = flat.get(k)
        row[LR_KEY] = lr_value(r)
        row[BATCH_KEY] = batch_value(r)
        row.setdefault(SEED_KEY, r.config.get(SEED_KEY))
        row["optim.name"] = optim_name(r)
        row["schedule.name"] = schedule_name(r)
        row.update(summarize_run(r))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the SGD runs
#: Statuses whose runs are not evidence: their numbers stop where training broke.
UNUSABLE_STATUSES = ("diverged", "failed")


@dataclass(frozen=True)
class RunSelection:
    """A subset of a sweep's runs, with the reason each other run was left out.

    Attributes:
        runs: the runs selected, in the sweep's order.
        frame: :func:`sweep_frame` restricted to those runs (same order).
        keys: the sweep's grid keys.
        excluded: run name → why it was left out.
    """

    runs: list[Run]
    frame: pd.DataFrame
    keys: list[str]
    excluded: dict[str, str]


def sgd_runs(sweep: Any, *, frame: pd.DataFrame | None = None) -> RunSelection:
    """The runs that the papers' η / S comparisons are about, for figures and findings alike.

    Kept: plain SGD (``optim.name == "sgd"``, full batch included: GD is S = ∞) whose status is
    not diverged or failed, with the most common schedule among those (other optimizers and
    schedules have their own figures and findings; mixing schedules would confound η).
    ``frame``: the sweep's :func:`sweep_frame`, when the caller has it already.
    """
    sweep = as_sweep(sweep)
    frame = sweep_frame(sweep) if frame is None else frame
    excluded: dict[str, str] = {}
    keep = []
    for i, row in frame.iterrows():
        if row["optim.name"] != "sgd":
            excluded[row["run"]] = f"optimizer {row['optim.name']}, not plain SGD"
        elif row["status"] in UNUSABLE_STATUSES:
            excluded[row["run"]] = f"status {row['status']}"
        else:
            keep.append(i)
    if keep:
        schedules = frame.loc[keep, "schedule.name"]
        common = schedules.mode().iloc[0]
        for i in list(keep):
            if schedules[i] != common:
                excluded[frame.at[i, "run"]] = f"schedule {schedules[i]}, not {common}"
                keep.remove(i)
    runs = list(sweep.runs)
    return RunSelection(
        [runs[i] for i in keep],
        frame.loc[keep].reset_index(drop=True),
        grid_keys(sweep),
        excluded,
    )
