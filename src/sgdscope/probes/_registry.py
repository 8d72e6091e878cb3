"""Probe registry: config entries ``probes: [{name: walk, every: 10, options: {...}}]`` → probes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._registry import Registry, check_options
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
    check_options(
        cls, options, where=f"probes[{name}].options", what=f"probe {name!r}", reserved=("every",)
    )
    return cls(every=every, **options)
