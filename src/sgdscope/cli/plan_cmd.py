"""``sgdscope plan RECIPE``: what a recipe's runs will cost here, before launching them."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def plan(
    recipe: Annotated[str, typer.Argument(help="recipe name, recipe YAML or config file")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="dotted key=value overrides, as for sgdscope run / sweep"),
    ] = None,
    variant: Annotated[
        str, typer.Option("--variant", "-v", help="recipe variant: small or paper")
    ] = "small",
    device: Annotated[
        str | None,
        typer.Option(
            help="time and plan on this device: auto, cpu, cuda, cuda:N (default: the config's)"
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(help="seeds crossed with the grid, e.g. 0,1,2 or 0-4 (default: the recipe's)"),
    ] = None,
    wall_time: Annotated[
        str,
        typer.Option("--wall-time", help="finish within this wall time: 24h, 90m, 2d, 1-12:00:00"),
    ] = "24h",
    budget: Annotated[
        float, typer.Option(help="seconds each (data, model) calibration may take, about")
    ] = 30.0,
    counts_only: Annotated[
        bool, typer.Option("--counts-only", help="count only: no calibration, no hours")
    ] = False,
    detail: Annotated[
        bool, typer.Option("--detail", help="every run's cost items (default: for one run)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """Estimate a recipe's cost before launching it: hours, peak memory, dominant cost, devices.

    Counts what the runs execute (steps, evaluations, Hessian products, walk forwards, ...) and
    times each unit here with a short calibration (seconds); paper datasets that are absent are
    replaced by synthetic data of the same shapes (nothing is downloaded).

    Example: sgdscope plan b-height --variant paper --device cuda --wall-time 24h
    """
    from ..config.grid import parse_seeds
    from ..planner import plan as plan_fn

    p = plan_fn(
        recipe,
        overrides,
        variant=variant,
        device=device,
        seeds=parse_seeds(seeds) if seeds is not None else None,
        wall_time=wall_time,
        budget=budget,
        calibrate=not counts_only,
    )
    if as_json:
        typer.echo(json.dumps(p.to_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(p.text(detail=detail or None))
