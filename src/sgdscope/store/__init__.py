"""Run directories: SQLite metrics (``MetricsStore``), reading them back (``load_run``)."""

from .run import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    META_FILE,
    METRICS_FILE,
    Run,
    find_run_dirs,
    is_run_dir,
    list_runs,
    load_run,
)
from .sqlite_store import STATUSES, MetricsStore

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "META_FILE",
    "METRICS_FILE",
    "STATUSES",
    "MetricsStore",
    "Run",
    "find_run_dirs",
    "is_run_dir",
    "list_runs",
    "load_run",
]
