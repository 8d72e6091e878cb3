"""The top-level entry points that understand recipes: ``sgdscope.run``.

:mod:`sgdscope.train` trains from configs only; resolving a recipe name (or a recipe file) into
a config, its grid and its variant's overrides happens here, above both train and sweep, so the
arrows between them go one way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import RunConfig
from .config.grid import grid_keys
from .errors import ConfigError


def run(
    source: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: list[str] | None = None,
    *,
    variant: str = "small",
    out: str | Path | None = None,
    resume: bool = False,
    device: str | None = None,
) -> Path:
    """Train one run from a recipe or a config and return its run directory.

    Args:
        source: a recipe name (``"b-walk-sgd"``), a recipe or config YAML file, a config dict, a
            :class:`~sgdscope.config.RunConfig`, or None (all defaults).
        overrides: dotted ``key=value`` strings applied in order after the recipe's own.
        variant: the recipe variant, ``small`` (embedded data) or ``paper``.
        out: the run directory (default ``<store.root>/<name>-<timestamp>``).
        resume: continue the run in ``out`` from its last checkpoint (start it when absent);
            the source must describe that run (a different config is refused).
        device: overrides the config's ``device`` (``cpu``, ``cuda``, ``cuda:1``, ``auto``).

    Raises:
        ConfigError: an invalid config or a recipe that is a sweep (use :func:`run_sweep`).
    """
    from .train import run as train_run

    config: Any = source
    overrides = list(overrides or [])
    if isinstance(source, (str, Path)):
        from .recipes import resolve_source

        config, grid, base = resolve_source(source, variant)
        if grid:
            raise ConfigError(
                f"recipe {str(source)!r} is a sweep over {', '.join(grid_keys(grid))}: run it "
                f"with `sgdscope sweep {source}` (sgdscope.run_sweep), or pin the grid's keys "
                "with overrides"
            )
        overrides = base + overrides
    return train_run(config, overrides, out=out, resume=resume, device=device)
