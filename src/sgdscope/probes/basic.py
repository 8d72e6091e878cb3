"""The cheap probes: gradient norm, parameter norm, distance from θ₀, consecutive-gradient cosine,
learning rate. Each costs O(n) per step."""

from __future__ import annotations

from typing import Any

import torch

from .. import metrics as M
from ._registry import register_probe
from .base import Measurement, Probe, ProbeContext, When


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos(a, b) computed in float64; NaN when either vector is zero."""
    a64, b64 = a.double(), b.double()
    denom = a64.norm() * b64.norm()
    if denom == 0:
        return float("nan")
    return float(a64 @ b64 / denom)


@register_probe("grad_norm")
class GradNormProbe(Probe):
    """‖g_t‖₂ of the mini-batch gradient, stored as ``grad_norm`` at step t."""

    name = "grad_norm"

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "grad")
        return Measurement({M.GRAD_NORM: float(ctx.grad.double().norm())})


@register_probe("param_norm")
class ParamNormProbe(Probe):
    """‖θ_t‖₂, stored as ``param_norm`` at step t."""

    name = "param_norm"

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "theta")
        return Measurement({M.PARAM_NORM: float(ctx.theta.double().norm())})


@register_probe("distance")
class DistanceProbe(Probe):
    """Distance from initialisation ‖θ_t − θ₀‖₂, stored as ``distance`` at step t."""

    name = "distance"

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "theta", "theta0")
        return Measurement({M.DISTANCE: float((ctx.theta.double() - ctx.theta0.double()).norm())})


@register_probe("lr")
class LearningRateProbe(Probe):
    """η_t, stored as ``lr`` at step t."""

    name = "lr"
    needs_vectors = False

    def measure(self, ctx: ProbeContext) -> Measurement:
        return Measurement({M.LR: float(ctx.lr)})


@register_probe("grad_cosine")
class GradCosineProbe(Probe):
    """Consecutive-gradient cosine cos(g_{t-1}, g_t), stored as ``grad_cosine`` at step t.

    The previous gradient is kept at every step (``observe``) so that the cosine is exact even
    when the probe is due only every N steps; it is part of the probe's checkpointed state.
    """

    name = "grad_cosine"

    def __init__(self, every: When | None = None) -> None:
        super().__init__(every)
        self._prev: torch.Tensor | None = None
        self._prev_step: int | None = None
        self._cos: float | None = None

    def observe(self, ctx: ProbeContext) -> None:
        ctx.require(self.name, "grad")
        self._cos = None
        if self._prev is not None and self._prev_step == ctx.step - 1:
            self._cos = cosine(self._prev.to(ctx.grad.device), ctx.grad)
        self._prev = ctx.grad.detach().clone()
        self._prev_step = ctx.step

    def measure(self, ctx: ProbeContext) -> Measurement | None:
        return None if self._cos is None else Measurement({M.GRAD_COSINE: self._cos})

    def state_dict(self) -> dict[str, Any]:
        return {
            "prev": None if self._prev is None else self._prev.cpu(),
            "prev_step": self._prev_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._prev = state.get("prev")
        self._prev_step = state.get("prev_step")
