"""The probe interface: what a measurement gets, when it is due, and what it returns.

A probe is a callback-like object. The Trainer (or a user's own loop) calls, in this order:

1. ``on_train_start(ctx)`` once, at θ₀ before the first update (not again after a resume:
   the probe's restored state carries on);
2. at every update t, after the optimizer step (so θ_t, g_t and θ_{t+1} are all known):
   ``observe(ctx)`` (cheap bookkeeping, e.g. keep g_t for the next cosine), then, when
   ``due(ctx.step, ctx.epoch)``, ``measure(ctx)``;
3. ``on_epoch_end(ctx)`` after the last update of each epoch (per-epoch aggregates);
4. ``state_dict()`` at every checkpoint and ``load_state_dict()`` on resume.

Every hook returns a :class:`Measurement` (or None); the Trainer writes it at ``ctx.step``.
Step numbering: the update from θ_t to θ_{t+1} is step t (0-based), so a measurement of g_t,
θ_t or the line θ_t → θ_{t+1} is stored at step t.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Measurement:
    """What a probe returns: named scalars (floats) and named arrays (numpy or tensors)."""

    scalars: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)

    def update(self, other: Measurement | None) -> Measurement:
        if other is not None:
            self.scalars.update(other.scalars)
            self.arrays.update(other.arrays)
        return self

    def __bool__(self) -> bool:
        return bool(self.scalars or self.arrays)


def flat_params(model: nn.Module) -> torch.Tensor:
    """All trainable parameters of ``model`` as one flat, detached vector (a copy), shape (n,)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def flat_grads(model: nn.Module) -> torch.Tensor:
    """The ``.grad`` of every trainable parameter as one flat vector (zeros where None)."""
    return torch.cat(
        [
            (p.grad.detach() if p.grad is not None else torch.zeros_like(p)).reshape(-1)
            for p in model.parameters()
            if p.requires_grad
        ]
    )


@dataclass
class ProbeContext:
    """Everything a probe may read at one update. Tensors are flat, detached, on the model's device.

    Attributes:
        model: the model, holding θ_{t+1} during ``measure`` (after the step).
        loss_fn: ``loss_fn(output, target)`` → mean loss over the batch.
        step: t, the index of this update (0-based); ``epoch`` is 0-based too.
        lr: η_t used for this update.
        batch: the mini-batch ``(x, y)`` of this update (all of train for full-batch GD: None).
        loss: the mini-batch loss L_{B_t}(θ_t).
        grad: g_t, the mini-batch gradient at θ_t (before momentum and weight decay), shape (n,).
        theta: θ_t; theta_next: θ_{t+1}; theta0: θ₀; each shape (n,).
        data: the run's :class:`~sgdscope.data.DataBundle` (train / val / test / probe splits).
        optimizer: the optimizer that made the step.
        shared: a dict probes use to hand results to each other and to optimizers (e.g. the
            SharpnessProbe puts ``"eigenvectors"`` (n × k) and ``"eigenvalues"`` here).
        epoch_end: True on the last update of an epoch.
        config: the run's resolved config (or None outside the Trainer).
    """

    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    step: int
    epoch: int
    lr: float
    theta0: torch.Tensor
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    loss: float = math.nan
    grad: torch.Tensor | None = None
    theta: torch.Tensor | None = None
    theta_next: torch.Tensor | None = None
    data: Any = None
    optimizer: Any = None
    shared: dict[str, Any] = field(default_factory=dict)
    epoch_end: bool = False
    step_in_epoch: int = 0
    steps_per_epoch: int = 0
    config: Any = None


class When:
    """When a probe is due: every N steps, at chosen epochs, at log-spaced steps, or explicit steps.

    A step is due when any of the given rules selects it; with no rule, every step is due.

    Args:
        every: due when ``step % every == 0``.
        epochs: restrict the other rules to these (0-based) epochs; alone: every step of them.
        log_spaced: due at about this many log-spaced steps in ``[0, max_step]`` (needs max_step).
        steps: explicit steps.
        max_step: total number of updates (for log spacing).
    """

    def __init__(
        self,
        every: int | None = None,
        *,
        epochs: Sequence[int] | None = None,
        log_spaced: int | None = None,
        steps: Sequence[int] | None = None,
        max_step: int | None = None,
    ) -> None:
        if every is not None and every < 1:
            raise ValueError(f"every must be >= 1 step, got {every}")
        if log_spaced is not None and (log_spaced < 1 or max_step is None):
            raise ValueError("log_spaced needs a positive count and max_step")
        self.every = every
        self.epochs = None if epochs is None else frozenset(int(e) for e in epochs)
        self.steps = set(int(s) for s in steps) if steps else set()
        if log_spaced is not None and max_step is not None:
            grid = np.unique(np.round(np.geomspace(1, max(max_step, 1), log_spaced)).astype(int))
            self.steps |= {0, *(int(s) for s in grid if s < max_step)}
        self._has_step_rule = every is not None or bool(self.steps)

    def __call__(self, step: int, epoch: int) -> bool:
        if self.epochs is not None and epoch not in self.epochs:
            return False
        if not self._has_step_rule:
            return True
        return (self.every is not None and step % self.every == 0) or step in self.steps

    def __repr__(self) -> str:
        return f"When(every={self.every}, epochs={self.epochs}, steps={sorted(self.steps)[:8]})"


class Probe:
    """Base class: no-op hooks. Subclasses set ``name`` and override ``measure`` (and state)."""

    name: str = "probe"
    #: probes run in ascending ``order`` at each step (the SharpnessProbe runs first, so the
    #: eigenvectors it shares are fresh for alignment probes of the same step).
    order: int = 0
    #: True when the probe needs full flat vectors θ_t / g_t / θ_{t+1} in the context.
    needs_vectors: bool = True

    def __init__(self, every: When | None = None) -> None:
        self.every = every if every is not None else When()

    def due(self, step: int, epoch: int) -> bool:
        """Whether ``measure`` runs at this step."""
        return self.every(step, epoch)

    def on_train_start(self, ctx: ProbeContext) -> Measurement | None:
        """Called once at θ₀ before the first update (not again after a resume)."""
        return None

    def observe(self, ctx: ProbeContext) -> Measurement | None:
        """Called at every update, due or not: cheap bookkeeping."""
        return None

    def measure(self, ctx: ProbeContext) -> Measurement | None:
        """Called at the updates where the probe is due; returns what to store at ``ctx.step``."""
        return None

    def on_epoch_end(self, ctx: ProbeContext) -> Measurement | None:
        """Called after the last update of each epoch: per-epoch aggregates."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Probe state to checkpoint (tensors, numbers, lists); restored by ``load_state_dict``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
