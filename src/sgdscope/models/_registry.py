"""The model registry: ``build_model(name, input_shape, num_classes, **options)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .._registry import Registry, check_options

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(name: str, **flags: Any) -> Callable:
    """Decorator: register ``fn(input_shape, num_classes, **options) -> nn.Module``."""
    return MODELS.register(name, **flags)


def list_models(filter: str | None = None) -> list[str]:
    return MODELS.names(filter)


def build_model(
    name: str, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> nn.Module:
    """Build a registered model for inputs of ``input_shape`` and ``num_classes`` outputs."""
    fn = MODELS.get(name)
    check_options(
        fn,
        options,
        where="model.options",
        what=f"model {name!r}",
        reserved=("input_shape", "num_classes"),
    )
    return fn(tuple(input_shape), int(num_classes), **options)


def num_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
