"""Named recipes: one YAML per figure or table of the papers, each with ``small`` and ``paper``
variants.

A recipe file holds ``title``, ``paper`` (A or B), ``reproduces`` (the figure / table),
``description``, ``config`` (a run config), an optional ``grid`` (``{key: [values]}`` or a list of
points: the recipe is then a sweep) and ``variants``: ``small`` runs on embedded data in minutes
on 2 CPU cores; ``paper`` uses the paper's dataset, model and hyper-parameters. A variant lists
``overrides`` (dotted ``key=value``) and may replace the ``grid``.

Recipes marked ``demo: true`` are the experiments ``sgdscope demo`` runs: variants ``small`` (the
demo) and ``quick`` (a few steps per run, a smoke test), no ``paper`` variant.

``paper_variant`` says how faithful the ``paper`` variant is: ``complete`` (every setting the paper
states is used; the rest are documented choices) or a list of what differs from the paper and
why. Each value of a paper variant cites its source in a YAML comment (the paper's section,
figure or table, the authors' released code) or is marked as our choice. ``published`` holds the
paper's own numbers for the runs a recipe reproduces (read by the report).

``seeds: [0, 1, 2]`` (top level, or per variant to replace it) makes seeds a sweep axis crossed
with the grid: ``sgdscope sweep`` runs every grid point at every seed (``--seeds`` replaces the
list). ``sgdscope run`` on a recipe without a grid trains once, at the config's own ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .._registry import closest
from ..config.grid import check_seeds
from ..errors import ConfigError

VARIANTS = ("small", "paper")


@dataclass
class Recipe:
    name: str
    title: str
    paper: str
    reproduces: str
    description: str
    config: dict[str, Any]
    grid: Any = None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None
    demo: bool = False
    seeds: list[int] | None = None
    paper_variant: str | list[str] | None = None

    @property
    def paper_complete(self) -> bool | None:
        """True when the paper variant is complete, False when it lists differences, None when
        the recipe does not say (or has no paper variant)."""
        if self.paper_variant is None:
            return None
        return self.paper_variant == "complete"

    def resolve(self, variant: str = "small") -> tuple[dict[str, Any], Any, list[str]]:
        """``(config, grid, overrides)`` of a variant."""
        if variant not in self.variants:
            raise ConfigError(
                f"recipe {self.name!r} has no variant {variant!r} "
                f"(available: {', '.join(self.variants)})"
            )
        v = self.variants[variant] or {}
        grid = v.get("grid", self.grid)
        return dict(self.config), grid, list(v.get("overrides", []))

    def variant_seeds(self, variant: str = "small") -> list[int] | None:
        """The seeds a variant sweeps over: its own ``seeds``, else the recipe's, else None (one
        run per grid point at the config's ``seed``)."""
        self.resolve(variant)  # the same error for an unknown variant
        v = self.variants[variant] or {}
        return list(v["seeds"]) if v.get("seeds") is not None else self.seeds

    @property
    def is_sweep(self) -> bool:
        return (
            bool(self.grid)
            or len(self.seeds or []) > 1
            or any(
                bool((v or {}).get("grid")) or len((v or {}).get("seeds") or []) > 1
                for v in self.variants.values()
            )
        )


def _recipe_dir() -> Path:
    return Path(str(resources.files(__package__)))


def _parse(path: Path) -> Recipe:
    data = yaml.safe_load(path.read_text())
    missing = {"title", "paper", "config", "variants"} - set(data)
    if missing:
        raise ConfigError(f"recipe {path}: missing {sorted(missing)}")
    for name, v in (data["variants"] or {}).items():
        _seeds((v or {}).get("seeds"), f"recipe {path.stem}: variants.{name}.seeds")
    return Recipe(
        name=path.stem,
        title=data["title"],
        paper=str(data["paper"]),
        reproduces=str(data.get("reproduces", "")),
        description=" ".join(str(data.get("description", "")).split()),
        config=data["config"],
        grid=data.get("grid"),
        variants=data["variants"],
        path=path,
        demo=bool(data.get("demo", False)),
        seeds=_seeds(data.get("seeds"), f"recipe {path.stem}: seeds"),
        paper_variant=_paper_variant(data.get("paper_variant"), path.stem),
    )


def _paper_variant(value: Any, name: str) -> str | list[str] | None:
    ok = value is None or value == "complete"
    if isinstance(value, list):
        ok = bool(value) and all(isinstance(v, str) and v.strip() for v in value)
    if not ok:
        raise ConfigError(
            f"recipe {name}: paper_variant: expected 'complete' or a non-empty list of "
            f"differences (strings), got {value!r}"
        )
    return [" ".join(v.split()) for v in value] if isinstance(value, list) else value


def _seeds(value: Any, where: str) -> list[int] | None:
    return None if value is None else check_seeds(value, where)


def list_recipes(*, demo: bool | None = None) -> list[Recipe]:
    """Every packaged recipe, sorted by name (``demo=True``: only the demo's, ``False``: only
    the papers' figures and tables)."""
    recipes = [_parse(p) for p in sorted(_recipe_dir().glob("*.yaml"))]
    return recipes if demo is None else [r for r in recipes if r.demo == demo]


def recipe_names() -> list[str]:
    return [p.stem for p in sorted(_recipe_dir().glob("*.yaml"))]


def get_recipe(name: str) -> Recipe:
    """A recipe by name (``a-eigenvalues``) or by path to a recipe YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return _parse(path)
    candidate = _recipe_dir() / f"{name}.yaml"
    if candidate.exists():
        return _parse(candidate)
    hint = closest(name, recipe_names())
    extra = f"; did you mean {hint!r}?" if hint else ""
    raise ConfigError(f"unknown recipe {name!r}{extra} (list them with `sgdscope recipes`)")


def is_recipe_file(path: Path) -> bool:
    """Whether a YAML file is a recipe (has ``variants`` and ``config``) rather than a config."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "variants" in data and "config" in data


def resolve_source(
    source: str | Path, variant: str = "small"
) -> tuple[dict[str, Any] | Path, Any, list[str]]:
    """What ``sgdscope run/sweep SOURCE`` means: a plain config file, or a recipe (name or file).

    Returns ``(config, grid, overrides)``; a plain config file has no grid and no overrides.
    """
    path = Path(source)
    if path.exists() and not is_recipe_file(path):
        return path, None, []
    if not path.exists() and path.suffix in (".yaml", ".yml"):
        raise ConfigError(f"config file {str(path)!r} not found")
    recipe = get_recipe(str(source))
    return recipe.resolve(variant)


def resolve_seeds(source: str | Path, variant: str = "small") -> list[int] | None:
    """The seeds ``sgdscope sweep SOURCE`` crosses with the grid: a recipe variant's, None for a
    plain config file (or a recipe without seeds)."""
    path = Path(source)
    if path.exists() and not is_recipe_file(path):
        return None
    return get_recipe(str(source)).variant_seeds(variant)
