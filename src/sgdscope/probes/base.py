"""The probe interface: what a measurement gets, when it is due, and what it returns.

A probe is a callback-like object with state. Whoever runs the loop — the Trainer, or a user's own
loop through :class:`~sgdscope.probes.ProbeSet` — calls, in this order:

1. ``on_train_start(ctx)`` once, at θ₀ before the first update (not again after a resume:
   the probe's restored state carries on);
2. at every update t, after the optimizer step (so θ_t, g_t and θ_{t+1} are all known):
   ``observe(ctx)`` (cheap bookkeeping, e.g. keep g_t for the next cosine), then, when
   ``due(ctx.step, ctx.epoch)``, ``measure(ctx)``;
3. ``on_epoch_end(ctx)`` after the last update of each epoch (per-epoch aggregates);
4. ``state_dict()`` at every checkpoint and ``load_state_dict()`` on resume.

Every hook returns a :class:`Measurement` (or None), stored at ``ctx.step``. Step numbering: the
update from θ_t to θ_{t+1} is step t (0-based), so a measurement of g_t, θ_t or the line
θ_t → θ_{t+1} is stored at step t.

Probes that read the top Hessian eigenvectors derive from :class:`BasisProbe`: they get the run's
:class:`~sgdscope.eigenbasis.EigenBasis` as ``ctx.eigenbasis`` and measure with its BatchNorm
mode and data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .._defaults import BN_MODES
from ..errors import (
    BasisMismatchError,
    ConfigError,
    EigenvectorsUnavailableError,
    InvalidArgumentError,
)


@dataclass
class Measurement:
    """What a probe returns: named scalars (floats) and named arrays (numpy or tensors), and the
    warnings of probes that failed at this step (source → one-line reason)."""

    scalars: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)

    def update(self, other: Measurement | None) -> Measurement:
        if other is not None:
            self.scalars.update(other.scalars)
            self.arrays.update(other.arrays)
            self.warnings.update(other.warnings)
        return self

    def __bool__(self) -> bool:
        return bool(self.scalars or self.arrays or self.warnings)


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
    """What a probe may read at one update. Tensors are flat, detached, on the model's device.

    Built by :class:`~sgdscope.probes.ProbeSet` (or by hand, for one probe).

    Attributes:
        model: the model, holding θ_{t+1} during ``measure`` (after the step).
        loss_fn: ``loss_fn(output, target)`` → mean loss over the batch.
        step: t, the index of this update (0-based); ``epoch`` is 0-based too.
        lr: η_t used for this update.
        theta0: θ₀; theta: θ_t; theta_next: θ_{t+1}; each shape (n,).
        grad: g_t, the mini-batch gradient at θ_t (before momentum and weight decay), shape (n,).
        data: the run's :class:`~sgdscope.data.DataBundle` (train / val / test / probe splits),
            or any data the curvature and landscape functions accept.
        optimizer: the optimizer that made the step (for its momentum and threshold).
        eigenbasis: the run's :class:`~sgdscope.eigenbasis.EigenBasis` (None without one).
        batch: the step's mini-batch B_t as given to ``after_step`` (None under full-batch GD).
    """

    model: nn.Module
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    step: int
    epoch: int
    lr: float = math.nan
    theta0: torch.Tensor | None = None
    theta: torch.Tensor | None = None
    theta_next: torch.Tensor | None = None
    grad: torch.Tensor | None = None
    data: Any = None
    optimizer: Any = None
    eigenbasis: Any = None
    batch: Any = None

    def require(self, who: str, *names: str) -> None:
        """Refuse a context missing a field a probe reads (a clear error, not an assert)."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise InvalidArgumentError(
                f"probe {who!r} needs ProbeContext.{', '.join(missing)}; received None. fix: run "
                "it through sgdscope.ProbeSet (after_step fills them), or set them when building "
                "the context (theta/theta_next: flat_params before/after the step, grad: "
                "flat_grads after backward)"
            )


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
            raise InvalidArgumentError(f"every must be >= 1 step, got {every}")
        if log_spaced is not None and (log_spaced < 1 or max_step is None):
            raise InvalidArgumentError("log_spaced needs a positive count and max_step")
        self.every = every
        self.epochs = None if epochs is None else frozenset(int(e) for e in epochs)
        self.steps = set(int(s) for s in steps) if steps else set()
        if log_spaced is not None and max_step is not None:
            grid = np.unique(np.round(np.geomspace(1, max(max_step, 1), log_spaced)).astype(int))
            self.steps |= {0, *(int(s) for s in grid if s < max_step)}
        self._has_step_rule = every is not None or bool(self.steps)

    @property
    def is_default(self) -> bool:
        """True when no rule was given (due at every step)."""
        return self.epochs is None and not self._has_step_rule

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
    #: probes run in ascending ``order`` at each step.
    order: int = 0
    #: True when the probe needs the flat vectors θ_t / g_t / θ_{t+1} in the context.
    needs_vectors: bool = True
    #: True when the probe reads ``ctx.eigenbasis``.
    uses_eigenbasis: bool = False
    #: True when the eigenbasis must belong to the very step the probe measures (the runner then
    #: refreshes it at the probe's due steps too).
    needs_fresh_eigenbasis: bool = False

    def __init__(self, every: When | None = None) -> None:
        self.every = every if every is not None else When()

    def due(self, step: int, epoch: int) -> bool:
        """Whether ``measure`` runs at this step."""
        return self.every(step, epoch)

    @classmethod
    def writes(cls) -> tuple[str, ...]:
        """The names (or name patterns, e.g. ``lambda_{i}``) this probe stores, from the one
        metric schema :mod:`sgdscope.metrics`."""
        from .. import metrics

        return tuple(m.pattern for m in metrics.written_by(cls.name))

    def bind(self, eigenbasis: Any) -> None:
        """Check, before training starts, that this probe can work with the run's eigenbasis."""

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


class BasisProbe(Probe):
    """A probe that reads the top-k Hessian eigenvectors from the run's eigenbasis.

    It measures with the basis's BatchNorm mode and on the basis's data (so the directions and the
    losses along them come from one network and one data set). Giving ``bn_mode`` explicitly is
    allowed only when it equals the basis's (:class:`~sgdscope.errors.BasisMismatchError`
    otherwise: a mix is never silent).

    Args:
        every: when the probe is due.
        bn_mode: None (the basis's), or the basis's mode restated.
        seed: seeds the probe's random directions.
    """

    uses_eigenbasis = True
    order = 0

    def __init__(self, every: When | None = None, *, bn_mode: str | None = None, seed: int = 0):
        super().__init__(every)
        if bn_mode is not None and bn_mode not in BN_MODES:
            raise ConfigError(
                f"probes[{self.name}].options.bn_mode={bn_mode!r}: expected one of {BN_MODES} "
                "or null (the eigenbasis's)"
            )
        self.bn_mode = bn_mode
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)

    @property
    def eigen_k(self) -> int:
        """How many eigenvectors the probe reads (the basis must hold at least that many)."""
        return 1

    def bind(self, eigenbasis: Any) -> None:
        if eigenbasis is None:
            raise ConfigError(
                f"probe {self.name!r} reads the top Hessian eigenvectors: give the run an "
                f"eigenbasis (config: `eigenbasis: {{k: {max(self.eigen_k, 5)}, every: 10}}`; "
                f"Python: ProbeSet([...], eigenbasis=EigenBasis(k={max(self.eigen_k, 5)}, "
                "every=10)))"
            )
        eigenbasis.check_consumer(f"probe {self.name!r}", self.bn_mode)
        if eigenbasis.k < self.eigen_k:
            raise ConfigError(
                f"probe {self.name!r} reads the top {self.eigen_k} eigenvectors but the eigenbasis "
                f"holds k={eigenbasis.k}: raise eigenbasis.k to >= {self.eigen_k} (or lower this "
                "probe's k)"
            )

    # ---- what the probe measures with
    def basis(self, ctx: ProbeContext) -> Any:
        """The context's eigenbasis, checked (clear errors when absent or mismatched)."""
        basis = ctx.eigenbasis
        self.bind(basis)
        if basis.vectors is None:
            raise EigenvectorsUnavailableError(
                f"probe {self.name!r}: the eigenbasis has no vectors yet (never refreshed); it is "
                "refreshed at its due steps by the ProbeSet, or call basis.ensure(step)"
            )
        return basis

    def measure_mode(self, ctx: ProbeContext) -> str:
        """The BatchNorm mode of this probe's evaluations (the basis's)."""
        return self.basis(ctx).bn_mode

    def eigenvectors(self, ctx: ProbeContext, k: int) -> tuple[torch.Tensor, int | None]:
        """The top ``k`` eigenvectors (n, k) on θ's device and dtype, and the step they are from."""
        ctx.require(self.name, "theta")
        assert ctx.theta is not None  # for type checkers; require() raised otherwise
        basis = self.basis(ctx)
        vectors = basis.vectors
        n = ctx.theta.numel()
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise BasisMismatchError(
                f"probe {self.name!r}: the eigenbasis vectors have shape "
                f"{tuple(vectors.shape)}, expected ({n}, k) over the model's trainable parameters"
            )
        if vectors.shape[1] < k:
            raise BasisMismatchError(
                f"probe {self.name!r} needs the top {k} eigenvectors but only "
                f"{vectors.shape[1]} are available: raise eigenbasis.k to >= {k}"
            )
        return vectors[:, :k].to(device=ctx.theta.device, dtype=ctx.theta.dtype), basis.step

    def eval_data(self, ctx: ProbeContext) -> Any:
        """The data this probe evaluates losses on: the eigenbasis's."""
        return self.basis(ctx).data_for()

    def eval_batch_size(self, ctx: ProbeContext) -> int | None:
        return self.basis(ctx).batch_size

    def random_unit(self, like: torch.Tensor) -> torch.Tensor:
        """A fresh random unit vector shaped like ``like`` (Gaussian direction, CPU-seeded)."""
        r = torch.randn(like.numel(), generator=self._gen, dtype=torch.float64)
        r = r / r.norm()
        return r.to(device=like.device, dtype=like.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("generator") is not None:
            self._gen.set_state(state["generator"])
