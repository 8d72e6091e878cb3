"""Sweeps: a grid of runs executed locally (process pool) or by a registered executor."""

from ..config.grid import expand_grid, grid_keys, point_name, point_overrides
from .executors import EXECUTORS, Executor, LocalExecutor, SerialExecutor
from .sweep import Sweep, is_sweep_dir, load_sweep, run_sweep

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "SerialExecutor",
    "Sweep",
    "expand_grid",
    "grid_keys",
    "is_sweep_dir",
    "load_sweep",
    "point_name",
    "point_overrides",
    "run_sweep",
]
