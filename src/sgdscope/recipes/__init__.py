"""Named recipes: one YAML per figure or table of the papers, each with ``small`` and ``paper``
variants.

A recipe file holds ``title``, ``paper`` (A or B), ``reproduces`` (the figure / table),
``description``, ``config`` (a run config), an optional ``grid`` (``{key: [values]}`` or a list of
points: the recipe is then a sweep) and ``variants``: ``small`` runs on embedded data in minutes
on 2 CPU cores; ``paper`` uses the paper's dataset, model and hyper-parameters. A variant lists
``overrides`` (dotted ``key=value``) and may replace the ``grid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .._registry import closest
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

    @property
    def is_sweep(self) -> bool:
        return bool(self.grid) or any(bool((v or {}).get("grid")) for v in self.variants.values())


def _recipe_dir() -> Path:
    return Path(str(resources.files(__package__)))


def _parse(path: Path) -> Recipe:
    data = yaml.safe_load(path.read_text())
    missing = {"title", "paper", "config", "variants"} - set(data)
    if missing:
        raise ConfigError(f"recipe {path}: missing {sorted(missing)}")
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
    )


def list_recipes() -> list[Recipe]:
    """Every packaged recipe, sorted by name."""
    return [_parse(p) for p in sorted(_recipe_dir().glob("*.yaml"))]


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
    from ..config import read_yaml_file

    try:
        data = read_yaml_file(path)
    except ConfigError:  # not readable as YAML: load_config says why, in one line
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
