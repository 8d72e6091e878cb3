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

``published:`` (top level, optional) holds the paper's own numbers for the figure or table, so
that the report prints "paper | ours | ratio" beside each other::

    published:
      source: "Xing et al. 2018, Table 1"
      rows:
        - {label: "VGG-11, epoch 1", metric: epoch_barriers, at: {model.name: vgg11, epoch: 1},
           value: 0}

Each row: ``label`` (what the paper's cell is), ``metric`` (a name of :mod:`sgdscope.metrics`,
e.g. ``epoch_barriers``, ``lambda_1``, or a field of the run summary
:data:`sgdscope.store.summary.SUMMARY_FIELDS`, e.g. ``final_test_acc``), ``at`` (which runs and
steps: dotted config keys such as ``model.name`` or ``optim.lr`` select runs; ``epoch`` (1-based,
as the papers count) or ``step`` select where a per-epoch or per-step metric is read, else its last
value), ``value`` (the paper's number), and optionally ``unit`` and ``note``. See
:class:`Published`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .._registry import closest
from ..config.grid import check_seeds
from ..errors import ConfigError

VARIANTS = ("small", "paper")

#: Keys of ``at`` that select where a metric is read rather than which runs.
POSITION_KEYS = ("epoch", "step")
_ROW_KEYS = {"label", "metric", "at", "value", "unit", "note"}


@dataclass(frozen=True)
class PublishedRow:
    """One number the paper reports.

    Attributes:
        label: the paper's cell, in words (``"VGG-11, epoch 1"``).
        metric: a metric name (:mod:`sgdscope.metrics`) or a run-summary field.
        at: dotted config keys → values selecting the runs, plus optionally ``epoch`` (1-based)
            or ``step`` selecting where the metric is read.
        value: the paper's number.
        unit: its unit, when worth saying.
        note: anything a reader must know (how the number was read off a figure, ...).
    """

    label: str
    metric: str
    at: dict[str, Any]
    value: float
    unit: str | None = None
    note: str | None = None

    @property
    def selectors(self) -> dict[str, Any]:
        """The config keys of ``at`` (which runs)."""
        return {k: v for k, v in self.at.items() if k not in POSITION_KEYS}

    @property
    def epoch(self) -> int | None:
        return self.at.get("epoch")

    @property
    def step(self) -> int | None:
        return self.at.get("step")


@dataclass(frozen=True)
class Published:
    """A recipe's ``published:`` section: where the numbers come from and the numbers."""

    source: str
    rows: tuple[PublishedRow, ...]


def _is_metric(name: str) -> bool:
    from .. import metrics as M
    from ..store.summary import SUMMARY_FIELDS

    return M.describe(name) is not None or name in SUMMARY_FIELDS


def parse_published(data: Any, where: str) -> Published | None:
    """Validate a recipe's ``published:`` section (None when absent).

    Raises:
        ConfigError: a missing or unknown key, a metric that is neither a metric name nor a
            summary field, an ``epoch`` below 1, a non-numeric value.
    """
    if data is None:
        return None
    if not isinstance(data, Mapping) or set(data) != {"source", "rows"}:
        got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ConfigError(
            f"{where}: published must be a mapping with exactly 'source' and 'rows', got {got}; "
            'write published: {source: "Author et al. 2018, Table 1", rows: [...]}'
        )
    if not isinstance(data["source"], str) or not data["source"].strip():
        raise ConfigError(f"{where}: published.source must be a non-empty string (the citation)")
    rows = data["rows"]
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{where}: published.rows must be a non-empty list of rows")
    return Published(data["source"], tuple(_row(r, f"{where}: published.rows[{i}]")
                                           for i, r in enumerate(rows)))  # fmt: skip


def _row(row: Any, where: str) -> PublishedRow:
    if not isinstance(row, Mapping):
        raise ConfigError(f"{where} must be a mapping with label, metric, at, value; got {row!r}")
    unknown = set(row) - _ROW_KEYS
    missing = {"label", "metric", "value"} - set(row)
    if unknown or missing:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown)} / missing keys {sorted(missing)}; a row has "
            "label, metric, value and optionally at, unit, note"
        )
    metric = row["metric"]
    if not isinstance(metric, str) or not _is_metric(metric):
        raise ConfigError(
            f"{where}: metric {metric!r} is neither a metric name (sgdscope.metrics, e.g. "
            "epoch_barriers) nor a run-summary field (e.g. final_test_acc)"
        )
    value = row["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: value must be a finite number, got {value!r}")
    at = row.get("at") or {}
    if not isinstance(at, Mapping) or not all(isinstance(k, str) for k in at):
        raise ConfigError(f"{where}: at must map dotted config keys (or epoch / step) to values")
    for key in POSITION_KEYS:
        v = at.get(key)
        low = 1 if key == "epoch" else 0
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise ConfigError(
                f"{where}: at.{key} must be an integer ≥ {low} ({key}s "
                f"{'as the paper counts them, 1-based' if key == 'epoch' else 'are updates'}), "
                f"got {v!r}"
            )
    if "epoch" in at and "step" in at:
        raise ConfigError(f"{where}: give at.epoch or at.step, not both")
    for key in ("label", "unit", "note"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise ConfigError(f"{where}: {key} must be a string, got {row[key]!r}")
    return PublishedRow(
        label=row["label"],
        metric=metric,
        at=dict(at),
        value=float(value),
        unit=row.get("unit"),
        note=row.get("note"),
    )


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
    published: Published | None = None
    #: the finding ids (``A.alignment``, ``beyond.eos_gd.hovers``) this recipe is designed to
    #: judge; other rules may apply to its runs too, but only these are its verdicts.
    findings: list[str] = field(default_factory=list)

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
        published=parse_published(data.get("published"), f"recipe {path.stem}"),
        findings=_findings(data.get("findings"), path.stem),
    )


def _findings(value: Any, name: str) -> list[str]:
    """The ``findings:`` list: finding ids as strings (checked against the judge's rules by the
    recipe tests, so that loading a recipe never imports the report package)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            f"recipe {name}: findings: expected a list of finding ids such as A.alignment, "
            f"got {value!r}"
        )
    return list(value)


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


def resolve_seeds(source: str | Path, variant: str = "small") -> list[int] | None:
    """The seeds ``sgdscope sweep SOURCE`` crosses with the grid: a recipe variant's, None for a
    plain config file (or a recipe without seeds)."""
    path = Path(source)
    if path.exists() and not is_recipe_file(path):
        return None
    return get_recipe(str(source)).variant_seeds(variant)
