"""A registry by name with "did you mean" suggestions (models, datasets, probes, optimizers)."""

from __future__ import annotations

import difflib
import inspect
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


def check_options(
    fn: Callable[..., Any],
    options: dict[str, Any],
    *,
    where: str,
    what: str,
    reserved: tuple[str, ...] = (),
) -> None:
    """Refuse option names that ``fn`` does not take, naming the nearest valid one.

    Args:
        fn: the factory (or class) whose keyword parameters are the valid options.
        options: the options given (a config's ``options`` mapping).
        where: the config path of the mapping, e.g. ``"model.options"``.
        what: what the options are for, e.g. ``"model 'mlp'"``.
        reserved: parameters filled by sgdscope itself, not options.
    """
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p in params if p not in ("self", *reserved)]
    for key in options:
        if key not in accepted:
            hint = closest(key, accepted)
            extra = f"; did you mean {hint!r}?" if hint else ""
            raise ConfigError(
                f"{where}.{key}: unknown option for {what}{extra} "
                f"(valid: {', '.join(accepted) or 'none'})"
            )
