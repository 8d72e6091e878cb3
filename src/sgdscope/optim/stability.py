"""The linear-stability threshold and the preconditioner of any optimizer, chained or torch's.

:class:`~sgdscope.optim.ChainedOptimizer` reports both itself
(:meth:`~sgdscope.optim.ChainedOptimizer.stability_threshold`,
:meth:`~sgdscope.optim.ChainedOptimizer.preconditioner`); these functions also read
``torch.optim.SGD`` (momentum, Nesterov, dampening) and ``torch.optim.Adam`` / ``AdamW``, so a
probe in a user's own loop with a torch optimizer gets the same numbers.

Thresholds (the largest curvature λ along which the update linearised on a quadratic does not
diverge): GD/SGD 2/η; heavy-ball momentum β (torch semantics, dampening τ) (2 + 2β)/((1 − τ)η);
Nesterov 2(1 + β)/((1 + 2β)η); Adam/AdamW (2 + 2β₁)/((1 − β₁)η) against the preconditioned
sharpness λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) with P = diag(√v̂ + ε) (Cohen et al. 2021, 2022).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .transforms import ChainedOptimizer, adam_preconditioner

__all__ = ["is_preconditioned", "preconditioner", "stability_threshold"]


def _is_torch_adam(optimizer: Any) -> bool:
    return isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))


def stability_threshold(optimizer: Any, group: int = 0) -> float:
    """The optimizer's linear-stability threshold for param group ``group`` (NaN if unknown).

    Args:
        optimizer: a :class:`~sgdscope.optim.ChainedOptimizer`, ``torch.optim.SGD``,
            ``torch.optim.Adam`` / ``AdamW``, or anything else (NaN).
        group: the param group whose hyper-parameters (η, β) are used.

    Returns:
        The threshold in curvature units (loss / param²): compare with λ₁(H), or with the
        preconditioned sharpness when :func:`is_preconditioned`.
    """
    if isinstance(optimizer, ChainedOptimizer):
        return optimizer.stability_threshold(group)
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return math.nan
    g = groups[group]
    lr = float(g.get("lr", math.nan))
    if not lr > 0:
        return math.inf if lr == 0 else math.nan
    if isinstance(optimizer, torch.optim.SGD):
        beta = float(g.get("momentum", 0.0) or 0.0)
        damp = float(g.get("dampening", 0.0) or 0.0) if beta else 0.0
        if g.get("nesterov"):
            return 2.0 * (1 + beta) / ((1 + 2 * beta) * (1 - damp) * lr)
        return (2.0 + 2.0 * beta) / ((1 - damp) * lr)
    if _is_torch_adam(optimizer):
        beta1 = float(g["betas"][0])
        return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)
    return math.nan


def is_preconditioned(optimizer: Any) -> bool:
    """True when the optimizer's threshold bounds the preconditioned sharpness (Adam, AdamW)."""
    if isinstance(optimizer, ChainedOptimizer):
        return optimizer.preconditioned
    return _is_torch_adam(optimizer)


def preconditioner(optimizer: Any, params: Iterable[torch.Tensor]) -> list[torch.Tensor] | None:
    """The diagonal P = √v̂ + ε of each of ``params`` from the optimizer's second moment after
    its last step (shaped like each parameter; 1 for a parameter it has no state for), or None
    (not a preconditioned optimizer, or no step yet)."""
    if isinstance(optimizer, ChainedOptimizer):
        return optimizer.preconditioner(params)
    if not _is_torch_adam(optimizer):
        return None
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    out, found = [], False
    for p in params:
        state = optimizer.state.get(p, {})
        g = group_of.get(id(p))
        if g is None or "exp_avg_sq" not in state:
            out.append(torch.ones_like(p))
            continue
        v = state["max_exp_avg_sq"] if g.get("amsgrad") else state["exp_avg_sq"]
        out.append(adam_preconditioner(v, float(state["step"]), float(g["betas"][1]), g["eps"]))
        found = True
    return out if found else None
