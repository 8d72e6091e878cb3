"""Sweeps: a grid of runs executed in local processes, on Ray or on Slurm, one summary."""

from ..config.grid import expand_grid, grid_keys, point_name, point_overrides
from ._lifetime import SweepInterrupted
from .executors import EXECUTORS, Executor, LocalExecutor, Outcome, SerialExecutor, make_executor
from .point import RunTask, execute_point
from .ray_executor import RayExecutor  # ray itself is imported only when a sweep starts
from .slurm_executor import SlurmExecutor  # likewise submitit
from .sweep import Sweep, is_sweep_dir, load_sweep, run_sweep

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "Outcome",
    "RayExecutor",
    "RunTask",
    "SerialExecutor",
    "SlurmExecutor",
    "Sweep",
    "SweepInterrupted",
    "execute_point",
    "expand_grid",
    "grid_keys",
    "is_sweep_dir",
    "load_sweep",
    "make_executor",
    "point_name",
    "point_overrides",
    "run_sweep",
]
