"""Grids of runs: expand ``{key: [values]}`` into one override set per run, name each run."""

from __future__ import annotations

import itertools
import re
from typing import Any

from ..errors import ConfigError


def expand_grid(grid: dict[str, list[Any]] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The points of a grid as a list of ``{dotted key: value}``.

    ``grid`` is either a dict ``{key: [values]}`` (the cartesian product, first key slowest) or a
    list of explicit points ``[{key: value, ...}, ...]`` (for comparisons whose runs differ in
    several keys at once, e.g. SGD vs Nudged-SGD with options). An empty or missing grid gives one
    point with no overrides.
    """
    if not grid:
        return [{}]
    if isinstance(grid, list):
        for i, point in enumerate(grid):
            if not isinstance(point, dict):
                raise ConfigError(f"grid[{i}]: must be a mapping of key: value, got {point!r}")
        return [dict(p) for p in grid]
    if not isinstance(grid, dict):
        raise ConfigError("grid: must be a mapping of key: [values] or a list of points")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid.{key}: must be a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def grid_keys(grid: dict[str, list[Any]] | list[dict[str, Any]] | None) -> list[str]:
    """The keys a grid varies, in first-seen order."""
    keys: list[str] = []
    for point in expand_grid(grid):
        keys += [k for k in point if k not in keys]
    return keys


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

    def text(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "-".join(text(x) for x in v)
        if isinstance(v, dict):
            return "-".join(f"{k}{text(x)}" for k, x in v.items())
        return str(v)

    parts = [f"{_short(k)}={text(v)}" for k, v in point.items()]
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
