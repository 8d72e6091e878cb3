"""Optimizer registry: ``optim.name`` in a config → a ``torch.optim.Optimizer``.

A factory receives the parameters, an :class:`OptimContext` (the common settings, the run's
model / loss / data for optimizers that need per-sample gradients, and the run's eigenbasis for
those that step along its directions) and the ``optim.options`` of the config.

Flags: ``needs_hvp`` (computes Hessian-vector products), ``uses_eigenbasis`` (reads the run's
eigenbasis), ``full_batch`` (the Trainer feeds it the full-batch gradient).
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
    """What an optimizer factory may use besides its own options.

    Attributes:
        lr, momentum, weight_decay, nesterov: the ``optim`` section.
        seed: the run's seed.
        model, loss_fn, data: the run's model, loss and :class:`~sgdscope.data.DataBundle`.
        device: the run's device.
        eigenbasis: the run's :class:`~sgdscope.eigenbasis.EigenBasis` (attached), or None.
        steps_per_epoch: updates per epoch (to resolve schedules given in epochs).
    """

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    seed: int = 0
    model: nn.Module | None = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    data: Any = None
    device: torch.device | None = None
    eigenbasis: Any = None
    steps_per_epoch: int | None = None


def register_optimizer(name: str, **flags: Any) -> Callable:
    """Decorator: register ``fn(params, ctx: OptimContext, **options) -> Optimizer``.

    Flags: ``needs_hvp=True`` (uses Hessian-vector products), ``uses_eigenbasis=True`` (reads
    ``ctx.eigenbasis``), ``full_batch=True`` (the Trainer feeds it the full-batch gradient).
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
