"""Checks of a config beyond its schema, made before a run directory exists.

The schema (:mod:`sgdscope.config.schema`) checks the sections; registry factories check their
option *names*. This module adds what only the registered factories know: the *types* of their
options (read from their signatures' annotations, so ``model.options.widths=abc`` is refused by
name instead of failing deep inside a constructor), and, once the parts are built, facts about
them: a model with an empty layer (``widths: [0]``), a probe asking for more eigenvalues than
the model has parameters, a probe that is never due in the run's steps.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError
from .build import Parts

#: Longest run for which "is this probe ever due?" is checked step by step.
_MAX_DUE_SCAN = 5_000_000


def _factories(cfg: RunConfig) -> list[tuple[Callable[..., Any], dict[str, Any], str]]:
    """``(factory, options, where)`` for every registered component the config names."""
    from ..data._registry import DATASETS
    from ..models._registry import MODELS
    from ..optim import OPTIMIZERS
    from ..optim.schedules import SCHEDULES
    from ..probes._registry import PROBES

    # Registry.get raises the "unknown ...; did you mean" ConfigError for a wrong name.
    out = [
        (DATASETS.get(cfg.data.name), cfg.data.options, "data.options"),
        (MODELS.get(cfg.model.name), cfg.model.options, "model.options"),
        (OPTIMIZERS.get(cfg.optim.name), cfg.optim.options, "optim.options"),
    ]
    if cfg.schedule.name in SCHEDULES:  # an unknown name is refused by make_schedule
        out.append((SCHEDULES[cfg.schedule.name], cfg.schedule.options, "schedule.options"))
    for i, p in enumerate(cfg.probes):
        out.append((PROBES.get(p.name), p.options, f"probes.{i}.options"))
    return out


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return typing.get_type_hints(target)
    except Exception:  # annotations naming things absent at runtime: no type check
        return {}


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if tp in names:
        return names[tp]
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin in (list, tuple, Sequence, set, frozenset) or (
        isinstance(origin, type) and issubclass(origin, Sequence)
    ):
        inner = [a for a in args if a is not Ellipsis]
        if inner and len(set(inner)) == 1:
            item = _describe(inner[0]).removeprefix("an ").removeprefix("a ")
            return f"a list of {item}s" if not item.endswith("s") else f"a list of {item}"
        return "a list"
    return str(tp).replace("typing.", "").replace("collections.abc.", "")


def check_option_types(cfg: RunConfig) -> None:
    """Refuse option values whose type does not match the factory's annotation.

    Validation is lax (pydantic's default: ``"3"`` passes as an integer, ``[1, 2]`` as a tuple);
    values are checked, never changed.

    Raises:
        ConfigError: ``model.options.widths='abc': expected a list of integers (...)``.
    """
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    for fn, options, where in _factories(cfg):
        hints = _hints(fn)
        for key, value in options.items():
            tp = hints.get(key)
            if tp is None or tp is Any:
                continue
            try:
                adapter = TypeAdapter(tp, config=ConfigDict(arbitrary_types_allowed=True))
            except Exception:  # a type pydantic cannot express: left to the factory
                continue
            try:
                adapter.validate_python(value)
            except ValidationError as e:
                err = e.errors()[0]
                raise ConfigError(
                    f"{where}.{key}={value!r}: expected {_describe(tp)} ({err['msg']}); "
                    "fix the value in the config or the override"
                ) from None


def _due_somewhere(probe: Any, parts: Parts) -> bool:
    spe = max(parts.steps_per_epoch, 1)
    total = parts.total_steps
    if total > _MAX_DUE_SCAN:
        return True  # too long to scan: trust the config
    return any(probe.due(t, t // spe) for t in range(total))


def check_parts(cfg: RunConfig, parts: Parts) -> None:
    """Refuse built parts that cannot give a meaningful run.

    Raises:
        ConfigError: an empty layer; a probe asking for more eigenpairs than there are
            parameters; a measuring probe that is never due within the run's steps.
    """
    from ..probes import Probe

    for name, p in parts.model.named_parameters():
        if p.numel() == 0:
            raise ConfigError(
                f"model {cfg.model.name!r}: parameter {name!r} has shape {tuple(p.shape)} (no "
                f"weights) — check model.options ({cfg.model.options}); layer sizes must be >= 1"
            )
    n = sum(p.numel() for p in parts.model.parameters() if p.requires_grad)
    for i, pc, probe in _probe_pairs(cfg, parts):
        k = getattr(probe, "k", None)
        if isinstance(k, int) and not isinstance(k, bool) and k > n:
            raise ConfigError(
                f"probes.{i}.options.k={k} ({pc.name}): more eigenpairs than the model's {n} "
                f"parameters; use k <= {n}"
            )
        measures = type(probe).measure is not Probe.measure
        if measures and parts.total_steps > 0 and not _due_somewhere(probe, parts):
            rules = {
                r: getattr(pc, r)
                for r in ("every", "epochs", "steps", "log_spaced")
                if getattr(pc, r)
            }
            raise ConfigError(
                f"probes.{i} ({pc.name}) is never due in this run's {parts.total_steps} steps "
                f"({parts.num_epochs} epochs) with {rules}: steps are 0..{parts.total_steps - 1} "
                "and epochs 0-based; change the probe's schedule or remove it"
            )


def _probe_pairs(cfg: RunConfig, parts: Parts) -> list[tuple[int, Any, Any]]:
    """``(config index, config entry, probe)``: build sorts probes by ``order``, so they are
    matched back to their entries by name, in config order."""
    remaining = list(enumerate(cfg.probes))
    out = []
    for probe in parts.probes.probes:
        for j, (i, pc) in enumerate(remaining):
            if getattr(probe, "name", None) == pc.name:
                out.append((i, pc, probe))
                del remaining[j]
                break
    return out
