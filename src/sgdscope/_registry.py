"""A registry by name with "did you mean" suggestions (models, datasets, probes, optimizers)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def closest(name: str, choices: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The valid choice nearest to ``name`` (None when nothing is close)."""
    match = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.5)
    return match[0] if match else None


class Registry(Generic[T]):
    """Maps names to factories. ``flags`` hold capabilities (e.g. ``needs_hvp=True``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._flags: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **flags: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            self._flags[name] = flags
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            hint = closest(name, list(self._items))
            extra = f"; did you mean {hint!r}?" if hint else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{extra} (available: {', '.join(self.names())})"
            ) from None

    def flags(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._flags[name])

    def names(self, filter: str | None = None) -> list[str]:
        names = sorted(self._items)
        return [n for n in names if filter is None or filter in n]

    def __contains__(self, name: object) -> bool:
        return name in self._items
