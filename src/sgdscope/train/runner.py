"""``run(config)`` and ``resume(run_dir)``: create or reopen a run directory and train into it."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..config import RunConfig, dump_config, load_config
from ..errors import DivergedError, SgdscopeError
from ..store import CONFIG_FILE, META_FILE, METRICS_FILE, MetricsStore, is_run_dir
from ..store.tensorboard import attach_tensorboard
from .trainer import Trainer


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


def _new_run_dir(cfg: RunConfig, out: str | Path | None) -> Path:
    if out is not None:
        path = Path(out)
        if is_run_dir(path):
            raise SgdscopeError(
                f"run directory {str(path)!r} already holds a run: pass --resume to continue it, "
                "or choose another --out"
            )
        return path
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.store.root) / f"{cfg.name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


def _train(
    cfg: RunConfig, run_dir: Path, *, resume: bool, meta: dict[str, Any] | None = None
) -> Path:
    # Opened before the Trainer, so that a failure while building it is recorded too.
    store = MetricsStore(run_dir / METRICS_FILE)
    try:
        if cfg.store.tensorboard:  # live TensorBoard mirror of the scalars (store/tensorboard.py)
            attach_tensorboard(store, run_dir)
        if meta is not None:
            store.set_meta(meta)
        Trainer(cfg, run_dir, resume=resume, store=store).fit()
    except DivergedError:
        raise
    except KeyboardInterrupt:
        store.set_status("interrupted", error="interrupted by the user; resume with --resume")
        raise
    except BaseException as e:
        store.set_status("failed", error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        raise
    finally:
        store.close()
    return run_dir


def run(
    config: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: list[str] | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
) -> Path:
    """Train one run and return its directory.

    Args:
        config: a YAML config path, a dict, a :class:`RunConfig`, or None (defaults). Recipe
            names are resolved one level up, by :func:`sgdscope.run`.
        overrides: dotted ``key=value`` strings applied in order (``["optim.lr=0.05"]``).
        out: the run directory (default ``<store.root>/<name>-<timestamp>``).
        resume: continue the run in ``out`` from its last checkpoint; with no run there yet,
            start it.

    Raises:
        ConfigError: invalid config (before any work starts).
        DivergedError: the loss became NaN/inf; the run's status is ``diverged``.

    Under ``torchrun`` (or an initialised ``torch.distributed``) the run is trained over every
    process, data-parallel: see :mod:`sgdscope.train.distributed`.
    """
    from .distributed import data_parallel, run_data_parallel

    dp = data_parallel()
    if dp is not None:
        return run_data_parallel(dp, config, overrides, out=out, resume=resume)
    if resume:
        if out is None:
            raise SgdscopeError("--resume needs the run directory: pass --out RUN_DIR")
        if is_run_dir(out):
            return resume_run(out)
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    if isinstance(config, RunConfig) and overrides:
        cfg = load_config(cfg.model_dump(mode="json"), overrides)
    run_dir = _new_run_dir(cfg, out)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(dump_config(cfg))
    meta = run_meta(cfg)
    (run_dir / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    return _train(cfg, run_dir, resume=False, meta=meta)


def resume_run(run_dir: str | Path) -> Path:
    """Continue the run in ``run_dir`` from its last checkpoint, with its saved config (under
    torchrun: over every process, see :mod:`sgdscope.train.distributed`)."""
    from .distributed import data_parallel, run_data_parallel

    dp = data_parallel()
    if dp is not None:
        return run_data_parallel(dp, out=run_dir, resume=True, must_exist=True)
    run_dir = Path(run_dir)
    if not is_run_dir(run_dir):
        raise SgdscopeError(f"{str(run_dir)!r} is not a run directory (no {METRICS_FILE})")
    cfg = load_config(run_dir / CONFIG_FILE)
    return _train(cfg, run_dir, resume=True)
