"""Grids of runs: expand ``{key: [values]}`` into one override set per run, name each run."""

from __future__ import annotations

import itertools
import re
from typing import Any

from ..errors import ConfigError


def expand_grid(grid: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """The cartesian product of ``grid`` as a list of ``{dotted key: value}`` (first key slowest).

    An empty or missing grid gives one point with no overrides.
    """
    if not grid:
        return [{}]
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}: must be a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def _short(key: str) -> str:
    aliases = {
        "optim.lr": "lr",
        "train.batch_size": "bs",
        "seed": "seed",
        "optim.name": "opt",
        "optim.options.gamma": "gamma",
        "schedule.name": "sched",
        "model.name": "model",
    }
    return aliases.get(key, key.split(".")[-1])


def point_name(point: dict[str, Any]) -> str:
    """A file-system-safe run name for a grid point, e.g. ``lr=0.05_bs=128_seed=0``."""
    if not point:
        return "run"
    parts = [f"{_short(k)}={v}" for k, v in point.items()]
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join(parts))


def point_overrides(point: dict[str, Any]) -> list[str]:
    """``key=value`` override strings for a grid point (values in YAML flow syntax)."""
    import yaml

    out = []
    for k, v in point.items():
        text = yaml.safe_dump(v, default_flow_style=True).strip()
        if text.endswith("\n..."):
            text = text[: -len("\n...")]
        text = text.removesuffix("...").strip()
        out.append(f"{k}={text}")
    return out
