"""Plain SGD (momentum, weight decay, Nesterov) as a chain of transforms.

Equal to ``torch.optim.SGD`` (no dampening) bit for bit: weight decay → momentum → scale by −η,
with the same arithmetic and the momentum buffer under torch's key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from ..errors import ConfigError
from . import transforms as tf
from ._registry import OptimContext, register_optimizer


class SGD(tf.ChainedOptimizer):
    """Stochastic gradient descent: θ ← θ − η v, v = β v + (g + λ θ) (Nesterov optional).

    Args:
        params: parameters or parameter groups.
        lr: η.
        momentum: β in [0, 1).
        weight_decay: λ >= 0 (coupled L2, as ``torch.optim.SGD``).
        nesterov: Nesterov momentum (needs β > 0).
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if not 0 <= momentum < 1:
            raise ConfigError(f"SGD: momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ConfigError(f"SGD: weight_decay must be >= 0, got {weight_decay}")
        if nesterov and momentum <= 0:
            raise ConfigError(f"SGD: nesterov=True needs momentum > 0 (got {momentum})")
        super().__init__(
            params,
            [tf.add_weight_decay(), tf.momentum(), tf.scale_by_lr()],
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )


@register_optimizer("sgd")
def _sgd(params: list[nn.Parameter], ctx: OptimContext) -> SGD:
    """SGD with the ``optim`` section's lr, momentum, weight decay and Nesterov flag."""
    return SGD(
        params,
        lr=ctx.lr,
        momentum=ctx.momentum,
        weight_decay=ctx.weight_decay,
        nesterov=ctx.nesterov,
    )
