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
from .summary import SUMMARY_FIELDS, summarize_run

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "META_FILE",
    "METRICS_FILE",
    "STATUSES",
    "SUMMARY_FIELDS",
    "MetricsStore",
    "Run",
    "find_run_dirs",
    "is_run_dir",
    "list_runs",
    "load_run",
    "summarize_run",
]
