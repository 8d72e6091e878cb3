"""Probe registry: config entries ``probes: [{name: walk, every: 10, options: {...}}]`` → probes."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._registry import Registry, closest
from ..errors import ConfigError
from .base import Probe, When

PROBES: Registry[Callable[..., Probe]] = Registry("probe")


def register_probe(name: str, **flags: Any) -> Callable:
    """Decorator: register a Probe subclass (or factory) taking ``every: When`` and options.

    Flags: ``needs_hvp=True`` when the probe computes Hessian-vector products.
    """
    return PROBES.register(name, **flags)


def list_probes() -> list[str]:
    return PROBES.names()


def build_probe(name: str, every: When, **options: Any) -> Probe:
    """Build a registered probe, checking option names first."""
    cls = PROBES.get(name)
    target = cls.__init__ if inspect.isclass(cls) else cls
    params = inspect.signature(target).parameters
    accepted = [p for p in params if p not in ("self", "every")]
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not has_var_kw:
        for key in options:
            if key not in accepted:
                hint = closest(key, accepted)
                extra = f"; did you mean {hint!r}?" if hint else ""
                raise ConfigError(
                    f"probes[{name}].options.{key}: unknown option{extra} "
                    f"(valid: {', '.join(accepted) or 'none'})"
                )
    return cls(every=every, **options)
