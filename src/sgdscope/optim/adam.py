"""Adam and AdamW as chains of transforms, equal to ``torch.optim.Adam`` / ``AdamW`` bit for bit.

Adam (Kingma & Ba 2015): m ← β₁ m + (1 − β₁) g, v ← β₂ v + (1 − β₂) g², and
θ ← θ − η m̂ / (√v̂ + ε) with the bias corrections m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ).
Adam's ``weight_decay`` is coupled L2 (g ← g + λθ, before the moments); AdamW's (Loshchilov &
Hutter 2019) is decoupled: θ ← (1 − ηλ) θ, then the Adam step.

The chains: Adam = weight decay → :func:`~sgdscope.optim.transforms.scale_by_adam` → scale by −η;
AdamW = decoupled weight decay → scale_by_adam → scale by −η. They use torch's arithmetic, in
torch's order, and torch's state keys (``step``, ``exp_avg``, ``exp_avg_sq``), so a run equals
``torch.optim.Adam(..., foreach=False)`` step for step, bit for bit (torch's default on the CPU).

The linear-stability threshold of both is (2 + 2β₁)/((1 − β₁)η) (= 38/η at β₁ = 0.9; Cohen et al.
2022, "Adaptive gradient methods at the edge of stability") and bounds the *preconditioned*
sharpness λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) with P = diag(√v̂ + ε) from the optimizer's own state
(``optimizer.preconditioner(params)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..errors import ConfigError
from . import transforms as tf
from ._registry import OptimContext, register_optimizer

__all__ = ["Adam", "AdamW"]


def _check(who: str, lr: Any, betas: Any, eps: Any, weight_decay: Any) -> tuple[float, float]:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
        raise ConfigError(f"{who}: lr must be a finite number >= 0, got {lr!r}")
    try:
        b1, b2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{who}: betas must be two numbers (beta1, beta2), e.g. [0.9, 0.999]; got {betas!r}"
        ) from None
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ConfigError(f"{who}: betas must each be in [0, 1), got ({b1}, {b2})")
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ConfigError(f"{who}: eps must be a number >= 0, got {eps!r}")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ConfigError(f"{who}: weight_decay must be >= 0, got {weight_decay!r}")
    return b1, b2


class Adam(tf.ChainedOptimizer):
    """Adam with coupled L2 weight decay, as ``torch.optim.Adam`` (bit for bit on the CPU).

    Args:
        params: parameters or parameter groups (per-group ``lr``, ``betas``, ``eps``, ...).
        lr: η.
        betas: (β₁, β₂), each in [0, 1).
        eps: ε, added to √v̂.
        weight_decay: λ ≥ 0, added to the gradient as λθ before the moments.
        amsgrad: use the running maximum of v (Reddi et al. 2018), as torch.

    Example:
        >>> opt = Adam(model.parameters(), lr=1e-3)
        >>> loss.backward(); opt.step()
        >>> opt.stability_threshold()          # 38/η: bounds λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²)
    """

    _who = "Adam"

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        b1, b2 = _check(self._who, lr, betas, eps, weight_decay)
        super().__init__(
            params,
            self._chain(),
            lr=lr,
            betas=(b1, b2),
            eps=float(eps),
            weight_decay=float(weight_decay),
            amsgrad=bool(amsgrad),
        )

    @staticmethod
    def _chain() -> list[tf.Transform]:
        return [tf.add_weight_decay(), tf.scale_by_adam(), tf.scale_by_lr()]


class AdamW(Adam):
    """Adam with decoupled weight decay θ ← (1 − ηλ)θ, as ``torch.optim.AdamW`` (bit for bit).

    Arguments as :class:`Adam`; ``weight_decay`` defaults to 0.01 as torch's AdamW.

    Example:
        >>> opt = AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    """

    _who = "AdamW"

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)

    @staticmethod
    def _chain() -> list[tf.Transform]:
        return [tf.decoupled_weight_decay(), tf.scale_by_adam(), tf.scale_by_lr()]


def _no_momentum(ctx: OptimContext, name: str) -> None:
    if ctx.momentum != 0 or ctx.nesterov:
        raise ConfigError(
            f"optim.momentum={ctx.momentum}: {name} has its own first moment; set "
            "optim.momentum=0 (and nesterov=false) and give beta1 in optim.options.betas"
        )


@register_optimizer("adam", preconditioned=True)
def _adam(
    params: list[nn.Parameter],
    ctx: OptimContext,
    betas: list[float] | tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> Adam:
    """Adam with the ``optim`` section's lr and (coupled) weight decay."""
    _no_momentum(ctx, "adam")
    return Adam(params, ctx.lr, tuple(betas), eps, ctx.weight_decay, amsgrad)


@register_optimizer("adamw", preconditioned=True)
def _adamw(
    params: list[nn.Parameter],
    ctx: OptimContext,
    betas: list[float] | tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    amsgrad: bool = False,
) -> AdamW:
    """AdamW with the ``optim`` section's lr and decoupled weight decay (``optim.weight_decay``,
    default 0 in a config, unlike torch's 0.01)."""
    _no_momentum(ctx, "adamw")
    return AdamW(params, ctx.lr, tuple(betas), eps, ctx.weight_decay, amsgrad)
