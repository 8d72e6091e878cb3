"""Grids of runs: expand ``{key: [values]}`` into one override set per run, name each run.

Seeds are an axis of their own: ``expand_grid(grid, seeds=[0, 1, 2])`` crosses every grid point
with every seed (seed fastest, so runs are named ``lr=0.1_seed=0``, ``lr=0.1_seed=1``, ...).
Findings judge trends and comparisons across seeds, so a sweep states them once instead of
adding ``seed`` to each grid.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError

SEED_KEY = "seed"


def check_seeds(seeds: Any, where: str = "seeds") -> list[int]:
    """``seeds`` as a list of distinct non-negative ints, else a :class:`ConfigError`."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ConfigError(
            f"{where}: must be a non-empty list of seeds like [0, 1, 2], got {seeds!r}"
        )
    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        raise ConfigError(
            f"{where}: seeds must be non-negative integers, got {bad[0]!r} in {list(seeds)!r}"
        )
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where}: seeds must be distinct, got {list(seeds)!r}")
    return list(seeds)


def parse_seeds(text: str) -> list[int]:
    """Seeds from the command line: ``"0,1,2"``, or ranges ``"0-4"`` (inclusive), or both."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ConfigError(
                f"--seeds: expected comma-separated seeds or ranges like 0,1,2 or 0-4, got {text!r}"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        seeds += range(lo, hi + 1)
    return check_seeds(seeds, "--seeds")


def expand_grid(
    grid: dict[str, list[Any]] | list[dict[str, Any]] | None,
    seeds: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """The points of a grid as a list of ``{dotted key: value}``.

    ``grid`` is either a dict ``{key: [values]}`` (the cartesian product, first key slowest) or a
    list of explicit points ``[{key: value, ...}, ...]`` (for comparisons whose runs differ in
    several keys at once, e.g. SGD vs Nudged-SGD with options). An empty or missing grid gives one
    point with no overrides. ``seeds`` crosses every point with every seed (seed fastest); the
    grid itself must not vary ``seed`` then.
    """
    points = _expand(grid)
    if seeds is None:
        return points
    seeds = check_seeds(seeds)
    if any(SEED_KEY in p for p in points):
        raise ConfigError(
            "the grid varies 'seed' and seeds are given as well: list the seeds once, either as "
            "seeds: [...] or in the grid"
        )
    return [{**p, SEED_KEY: s} for p in points for s in seeds]


def _expand(grid: dict[str, list[Any]] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
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


def grid_keys(
    grid: dict[str, list[Any]] | list[dict[str, Any]] | None,
    seeds: Sequence[int] | None = None,
) -> list[str]:
    """The keys a grid (crossed with ``seeds``) varies, in first-seen order."""
    keys: list[str] = []
    for point in expand_grid(grid, seeds):
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
