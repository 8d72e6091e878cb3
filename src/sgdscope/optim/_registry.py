"""Optimizer registry: ``optim.name`` in a config → a ``torch.optim.Optimizer``.

A factory receives the parameters, an :class:`OptimContext` (the common settings and the run's
model / loss / data, for optimizers that need Hessian-vector products or per-sample gradients)
and the ``optim.options`` of the config.

Optimizers may define ``prepare(step: int, epoch: int, shared: dict) -> None``: the Trainer calls
it before every ``step()`` (``shared`` is the probes' shared dict, holding e.g. the latest
``"eigenvectors"`` of the SharpnessProbe).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._registry import Registry, check_options

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


@dataclass
class OptimContext:
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    seed: int = 0
    model: nn.Module | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    data: Any = None
    device: torch.device | None = None


def register_optimizer(name: str, **flags: Any) -> Callable:
    """Decorator: register ``fn(params, ctx: OptimContext, **options) -> Optimizer``.

    Flags: ``needs_hvp=True`` (uses Hessian-vector products), ``full_batch=True`` (the Trainer
    feeds it the full-batch gradient).
    """
    return OPTIMIZERS.register(name, **flags)


def list_optimizers() -> list[str]:
    return OPTIMIZERS.names()


def build_optimizer(
    name: str, params: list[nn.Parameter], ctx: OptimContext, **options: Any
) -> torch.optim.Optimizer:
    fn = OPTIMIZERS.get(name)
    check_options(
        fn, options, where="optim.options", what=f"optimizer {name!r}", reserved=("params", "ctx")
    )
    return fn(params, ctx, **options)


@register_optimizer("sgd")
def _sgd(params: list[nn.Parameter], ctx: OptimContext) -> torch.optim.Optimizer:
    """Plain torch SGD (momentum, weight decay and Nesterov from the ``optim`` section)."""
    return torch.optim.SGD(
        params,
        lr=ctx.lr,
        momentum=ctx.momentum,
        weight_decay=ctx.weight_decay,
        nesterov=ctx.nesterov,
    )
