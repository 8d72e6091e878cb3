"""The optimizer's linear-stability threshold at a probe's step (shared by the curvature probes)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..optim.stability import is_preconditioned, preconditioner, stability_threshold
from .base import ProbeContext


def momentum_of(optimizer: Any) -> float:
    """β of a heavy-ball optimizer (its first param group's ``momentum``; 0 without one)."""
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return 0.0
    return float(groups[0].get("momentum", 0.0) or 0.0)


def threshold_at(ctx: ProbeContext) -> tuple[float, bool]:
    """``(threshold, preconditioned)`` of the update at ``ctx.step``, at η_t = ``ctx.lr``.

    The threshold is the optimizer's own (:func:`sgdscope.optim.stability_threshold`), rescaled
    to η_t (every threshold is ∝ 1/η) in case the context's lr differs from the group's; for an
    optimizer it does not know, (2 + 2β)/η_t with β its ``momentum`` (plain GD without one).
    ``preconditioned`` says that it bounds λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) rather than λ₁(H).
    """
    lr = float(ctx.lr)
    opt = ctx.optimizer
    if opt is not None:
        thr = stability_threshold(opt)
        groups = getattr(opt, "param_groups", None) or [{}]
        lr_opt = float(groups[0].get("lr", math.nan))
        if math.isfinite(thr) and lr_opt > 0 and math.isfinite(lr) and lr > 0:
            return thr * lr_opt / lr, is_preconditioned(opt)
    if not (math.isfinite(lr) and lr > 0):
        return math.nan, False
    return (2.0 + 2.0 * momentum_of(opt)) / lr, False


def flat_preconditioner(ctx: ProbeContext) -> torch.Tensor | None:
    """The optimizer's diagonal preconditioner P flat over the model's trainable parameters (in
    model order), or None (no preconditioning optimizer, or no step yet)."""
    params = [p for p in ctx.model.parameters() if p.requires_grad]
    diag = preconditioner(ctx.optimizer, params)
    if diag is None:
        return None
    return torch.cat([d.detach().reshape(-1) for d in diag])
