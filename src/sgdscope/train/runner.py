"""``run(config)`` and ``resume(run_dir)``: create or reopen a run directory and train into it.

The order of things is what makes a run safe to start, stop and restart:

1. everything a config can get wrong is checked — the schema, option names and types, the
   dataset's files, the built model and probes — *before* a run directory is created, so a
   rejected config leaves nothing behind (and nothing to ``--resume``);
2. the run directory's exclusive lock (:class:`~sgdscope.store._lock.RunLock`) is taken before
   anything is written into it: a second process on the same directory refuses with one line;
3. a resume first verifies the checkpoints (the newest good one is used; a damaged newest one
   is set aside) and refuses, rather than restarting from step 0, when metrics exist but no
   checkpoint does;
4. SIGINT / SIGTERM end the run after the step in flight with a final checkpoint
   (:mod:`sgdscope._signals`); a full disk or a read-only folder ends it with one line
   (:class:`~sgdscope.errors.StorageError`), its status recorded where the disk allows.
"""

from __future__ import annotations

import datetime as _dt
import errno
import logging
import os
import platform
import shutil
import subprocess
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .._signals import _StopSignals, raise_if_stop_requested, stop_signals
from ..config import RunConfig, dump_config, load_config
from ..errors import (
    ConfigError,
    DivergedError,
    RunInterrupted,
    SgdscopeError,
    StorageError,
)
from ..store import CHECKPOINT_DIR, CONFIG_FILE, META_FILE, METRICS_FILE, MetricsStore, is_run_dir
from ..store._lock import RunLock, storage_error
from ..store.tensorboard import attach_tensorboard
from ._validate import check_option_types, check_parts
from .build import Parts, build_parts
from .checkpoint import CHECKPOINT_NAME, find_checkpoint, remove_temp_files
from .trainer import Trainer

_log = logging.getLogger("sgdscope")

#: Config keys that may differ when ``run --resume`` reopens a run: they do not change its
#: numbers (where it is stored, what it is called, where the data files lie, the progress bar).
_RESUME_FREE_KEYS = ("name", "device", "train.progress", "store.root", "data.root", "data.download")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def run_meta(cfg: RunConfig) -> dict[str, Any]:
    """Versions, git commit, seed and machine facts saved beside the config."""
    from .._version import __version__

    return {
        "sgdscope": __version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "seed": cfg.seed,
        "host": platform.node(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }


# ----------------------------------------------------------------------------- checks
def prepare(cfg: RunConfig) -> Parts:
    """Check ``cfg`` completely and build its parts; nothing is written.

    Raises:
        ConfigError: a wrong option type, an unknown name, an empty layer, a probe never due...
        DatasetNotFoundError: the dataset's files are absent (and ``data.download`` is off).
    """
    check_option_types(cfg)
    try:
        # Warnings raised while building (torch's "zero-element tensor" for an empty layer) are
        # held back until the checks below have had their say, then passed on unchanged.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parts = build_parts(cfg)
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError) as e:
        if isinstance(e, SgdscopeError):
            raise
        # A constructor refused a value the config handed it (a negative width, Nesterov
        # without momentum...): the config's fault in all likelihood; say which and how.
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        raise ConfigError(
            f"the run could not be built from this config ({type(e).__name__}: {msg}); check "
            "the options of the model, optimizer, schedule and probes (if the config is right, "
            "this is a bug: rerun with SGDSCOPE_DEBUG=1 and report the traceback)"
        ) from e
    check_parts(cfg, parts)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return parts


def _check_out(path: Path) -> None:
    """Refuse an ``--out`` that cannot become a new run directory (no lock needed yet)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"--out {str(path)!r} is an existing file, not a directory: choose another --out"
        )
    if is_run_dir(path):
        raise ConfigError(
            f"run directory {str(path)!r} already holds a run: pass --resume to continue it "
            f"(`sgdscope resume {path}`), or choose another --out"
        )
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"--out {str(path)!r}: {str(parent)!r} is a file, not a directory")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["optim.lr: 0.1 (saved) vs 0.05"]`` for every key that changes a run's numbers."""
    a, b = _flat(saved), _flat(new)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key in _RESUME_FREE_KEYS or a.get(key) == b.get(key):
            continue
        diffs.append(f"{key}: {a.get(key)!r} (saved) vs {b.get(key)!r}")
    return diffs


# ----------------------------------------------------------------------------- directories
def _claim_new_dir(cfg: RunConfig, out: str | Path | None) -> tuple[Path, RunLock, list[Path]]:
    """Create (or reuse an empty) run directory and take its lock.

    Returns ``(run_dir, lock, created)``: ``created`` lists the folders this call made, deepest
    first, so that an error before the run writes its store can undo them.
    """
    if out is not None:
        path = Path(out)
        _check_out(path)
        created = [p for p in [path, *path.parents] if not p.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _os_error(e, "creating the run directory", path) from None
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(cfg.store.root) / f"{cfg.name}-{stamp}"
        path, i = base, 1
        while True:
            created = [p for p in [path, *path.parents] if not p.exists()]
            try:
                path.mkdir(parents=True)  # not exist_ok: two runs in one second get two names
                break
            except FileExistsError:
                path = base.with_name(f"{base.name}-{i}")
                i += 1
            except OSError as e:
                raise _os_error(e, "creating the run directory", path) from None
    # Locked by another process, or holding a run: the directory is someone else's. Nothing is
    # removed then, even a folder this call created (another process may be using it already).
    lock = RunLock(path).acquire()
    if is_run_dir(path):  # checked again under the lock: another process may have just made it
        lock.release()
        raise ConfigError(
            f"run directory {str(path)!r} already holds a run: pass --resume to continue it "
            f"(`sgdscope resume {path}`), or choose another --out"
        )
    return path, lock, created


def _undo_new_dir(path: Path, created: list[Path]) -> None:
    """Remove what a run that failed before writing its store left (the caller holds the lock)."""
    if created and created[0] == path:
        shutil.rmtree(path, ignore_errors=True)
        for parent in created[1:]:  # only if empty: a parallel run may have started inside
            try:
                parent.rmdir()
            except OSError:
                break
        return
    for name in (CONFIG_FILE, META_FILE, "run.lock"):  # an --out folder that existed before
        try:
            (path / name).unlink(missing_ok=True)
        except OSError:
            pass


def _os_error(e: OSError, what: str, path: Path) -> BaseException:
    err = storage_error(e, what, path)
    if err is not None:
        return err
    if e.errno == errno.ENOTDIR:
        return ConfigError(
            f"cannot create the run directory {str(path)!r}: a part of the path is a file, not a "
            "folder; choose another --out (or store.root)"
        )
    return e


def _open_store(run_dir: Path) -> MetricsStore:
    try:
        return MetricsStore(run_dir / METRICS_FILE)
    except OSError as e:
        raise _os_error(e, "opening the metrics store", run_dir) from None


# ----------------------------------------------------------------------------- training
def _train(
    cfg: RunConfig,
    run_dir: Path,
    parts: Parts,
    store: MetricsStore,
    stop: _StopSignals,
    *,
    resume: bool,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Train into the open store and record how it ended (the caller holds the lock)."""
    try:
        if cfg.store.tensorboard:  # live TensorBoard mirror of the scalars (store/tensorboard.py)
            attach_tensorboard(store, run_dir)
        if meta is not None:
            store.set_meta(meta)
        trainer = Trainer(cfg, run_dir, resume=resume, store=store, parts=parts)
        with stop.graceful():
            trainer.fit()
    except DivergedError:
        raise
    except RunInterrupted as e:
        e.run_dir = str(run_dir)
        _record(store, "interrupted", f"interrupted by {e.signal_name}; resume with --resume")
        raise
    except KeyboardInterrupt as e:
        _record(store, "interrupted", "interrupted; resume with --resume")
        raise RunInterrupted(2, str(run_dir), None, False) from e
    except StorageError as e:
        _record(store, "failed", str(e))
        raise
    except BaseException as e:
        err = storage_error(e, "training", run_dir) if isinstance(e, OSError) else None
        _record(
            store,
            "failed",
            str(err) if err else f"{type(e).__name__}: {e}\n{traceback.format_exc()}",
        )
        if err is not None:
            raise err from None
        raise
    finally:
        store.close()
    return run_dir


def _record(store: MetricsStore, status: str, error: str) -> None:
    """Record the final status if the disk allows it (a full disk may refuse even that)."""
    try:
        store.set_status(status, error=error)
    except Exception as e:  # the status stays as it was; `ls` shows the run as stale
        _log.warning("could not record status %r in %s: %s", status, store.path, e)


def run(
    config: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: list[str] | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
) -> Path:
    """Train one run and return its directory.

    Args:
        config: a YAML config path, a dict, a :class:`RunConfig`, or None (defaults). Recipe
            names are resolved one level up, by :func:`sgdscope.run`.
        overrides: dotted ``key=value`` strings applied in order (``["optim.lr=0.05"]``).
        out: the run directory (default ``<store.root>/<name>-<timestamp>``).
        resume: continue the run in ``out`` from its last checkpoint; with no run there yet,
            start it. A config given must be the run's own (keys that do not change the
            numbers — name, device, data.root, ... — may differ); None means the saved one.
        device: overrides the config's ``device`` (``cpu``, ``cuda``, ``cuda:1``, ``auto``).

    Raises:
        ConfigError: invalid config (before any directory is created), or ``--out`` taken.
        RunLockedError: another process is writing ``out``.
        StorageError: full disk, read-only folder, no usable checkpoint to resume from.
        DivergedError: the loss became NaN/inf; the run's status is ``diverged``.
        RunInterrupted: SIGINT / SIGTERM; the run's status is ``interrupted``.

    Under ``torchrun`` (or an initialised ``torch.distributed``) the run is trained over every
    process, data-parallel: see :mod:`sgdscope.train.distributed`.
    """
    from .distributed import data_parallel, run_data_parallel

    given = list(overrides or [])
    overrides = given + ([f"device={device}"] if device is not None else [])
    dp = data_parallel()
    if dp is not None:
        return run_data_parallel(dp, config, overrides, out=out, resume=resume)
    if resume and out is None:
        raise ConfigError("--resume needs the run directory: pass --out RUN_DIR")
    if resume and config is None and not given and is_run_dir(out):
        return resume_run(out, device=device)  # no config given: the run's own
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    if isinstance(config, RunConfig) and overrides:
        cfg = load_config(cfg.model_dump(mode="json"), overrides)
    if resume and out is not None and is_run_dir(out):
        saved = _saved_config(Path(out))
        diffs = config_differences(saved, cfg.model_dump(mode="json"))
        if diffs:
            raise ConfigError(
                f"{str(out)!r} holds a run with another config ({'; '.join(diffs[:3])}"
                f"{'; ...' if len(diffs) > 3 else ''}): continue it as it is with `sgdscope "
                f"resume {out}`, or start this config under another --out"
            )
        return resume_run(out, device=device)
    parts = prepare(cfg)
    raise_if_stop_requested(None)  # a Ctrl-C that Python dropped while we were building
    run_dir, lock, created = _claim_new_dir(cfg, out)
    try:
        with stop_signals(str(run_dir)) as stop:
            meta = run_meta(cfg)
            try:
                (run_dir / CONFIG_FILE).write_text(dump_config(cfg))
                (run_dir / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
                store = _open_store(run_dir)
                raise_if_stop_requested(None)
            except BaseException as e:
                _undo_new_dir(run_dir, created)
                if isinstance(e, RunInterrupted):
                    e.run_dir = None  # nothing was started: nothing to resume
                if isinstance(e, OSError) and not isinstance(e, SgdscopeError):
                    raise _os_error(e, "writing the config", run_dir) from None
                raise
            return _train(cfg, run_dir, parts, store, stop, resume=False, meta=meta)
    finally:
        lock.release()


def _saved_config(run_dir: Path) -> dict[str, Any]:
    return load_config(run_dir / CONFIG_FILE).model_dump(mode="json")


def resume_run(run_dir: str | Path, *, device: str | None = None) -> Path:
    """Continue the run in ``run_dir`` from its last good checkpoint, with its saved config.

    Args:
        run_dir: the run directory.
        device: run on this device instead of the saved config's (the saved config is kept).

    Raises:
        RunLockedError: another process is writing the run.
        StorageError: no usable checkpoint although metrics exist, a full disk, a read-only
            folder.

    Under torchrun the run continues over every process (:mod:`sgdscope.train.distributed`).
    """
    from .distributed import data_parallel, run_data_parallel

    dp = data_parallel()
    if dp is not None:
        return run_data_parallel(dp, out=run_dir, resume=True, must_exist=True)
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        what = "does not exist" if not run_dir.exists() else f"has no {METRICS_FILE}"
        raise ConfigError(f"{str(run_dir)!r} is not a run directory (it {what})")
    with RunLock(run_dir), stop_signals(str(run_dir)) as stop:
        cfg = load_config(run_dir / CONFIG_FILE)
        if device is not None:
            cfg = load_config(cfg.model_dump(mode="json"), [f"device={device}"])
        parts = prepare(cfg)
        raise_if_stop_requested(str(run_dir))
        _check_checkpoints(run_dir)
        return _train(cfg, run_dir, parts, _open_store(run_dir), stop, resume=True)


def _check_checkpoints(run_dir: Path) -> None:
    """Under the lock: remove stale temp files, set a damaged newest checkpoint aside, and
    refuse to restart from step 0 over existing metrics."""
    ckpt = run_dir / CHECKPOINT_DIR
    try:
        remove_temp_files(ckpt)
    except OSError as e:
        raise _os_error(e, "cleaning up checkpoints", run_dir) from None
    choice = find_checkpoint(ckpt)
    if choice.problems and choice.path is not None:
        bad = ckpt / CHECKPOINT_NAME
        if choice.path != bad and bad.exists():
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            aside = ckpt / f"{CHECKPOINT_NAME}.damaged-{stamp}"
            try:
                os.replace(bad, aside)
            except OSError as e:
                raise _os_error(e, "setting a damaged checkpoint aside", run_dir) from None
            _log.warning(
                "%s: %s; moved to %s, resuming from %s (step %d)",
                run_dir,
                "; ".join(choice.problems),
                aside.name,
                choice.path.name,
                choice.step,
            )
    if choice.path is None:
        rows = _last_seq(run_dir)
        if choice.problems:
            raise StorageError(
                f"{run_dir}: no usable checkpoint ({'; '.join(choice.problems)}): the run cannot "
                "continue exactly; start it again under another --out"
            )
        # Rows of the first transaction only (step 0, written just before the first checkpoint,
        # as in a process killed between the two): restarting from step 0 writes them again,
        # the same, so nothing is lost. Later rows without a checkpoint would be deleted.
        if rows > 1:
            raise StorageError(
                f"{run_dir} holds metrics but no checkpoint ({CHECKPOINT_DIR}/ is missing or "
                "empty): resuming would restart from step 0 and delete them; start the config "
                "again under another --out (or restore the checkpoints)"
            )


def _last_seq(run_dir: Path) -> int:
    from ..store.sqlite_store import connect

    con = connect(run_dir / METRICS_FILE, readonly=True)
    try:
        row = con.execute(
            "SELECT MAX(m) FROM (SELECT COALESCE(MAX(seq), 0) AS m FROM scalars "
            "UNION ALL SELECT COALESCE(MAX(seq), 0) FROM arrays)"
        ).fetchone()
        return int(row[0] or 0)
    except Exception:
        return 0
    finally:
        con.close()


__all__ = ["config_differences", "prepare", "resume_run", "run", "run_meta"]
