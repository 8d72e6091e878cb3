"""The cost of a recipe before launching it: :func:`plan` (``sgdscope plan RECIPE``).

It counts what every run will execute, from the config and the data sizes alone
(:mod:`._counts`), prices each unit with a short calibration on the current device
(:mod:`._calibrate`: the run's real model at θ₀, its real data or a synthetic stand-in of the same
shapes, a real eigenbasis refresh), and adds up per run: hours, peak memory, the dominant cost,
and the devices a sweep needs to finish in a given wall time (:class:`Plan`).
"""

from ._counts import Work, Workload, count_run
from ._data import DataSizes
from ._plan import parse_wall_time, plan
from ._result import CostItem, Plan, RunPlan

__all__ = [
    "CostItem",
    "DataSizes",
    "Plan",
    "RunPlan",
    "Work",
    "Workload",
    "count_run",
    "parse_wall_time",
    "plan",
]
