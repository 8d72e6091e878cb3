"""Optimizers as chains of small transforms (optax's ``chain``, in torch).

A :class:`Transform` maps the list of per-parameter update directions of one step to new ones
(the first input is the list of gradients); :class:`ChainedOptimizer` runs a list of them and the
last one, :func:`scale_by_lr`, writes θ ← θ − η d. Hyper-parameters that torch users expect per
parameter group (``lr``, ``momentum``, ``weight_decay``, ``nesterov``, ``sigma``) live in the
optimizer's ``param_groups``, so learning-rate schedulers and per-group settings work as with
``torch.optim``; per-parameter state (the momentum buffer) lives in ``optimizer.state[p]`` under
torch's own key, so ``state_dict()`` checkpoints it.

The pieces:

- :func:`add_weight_decay` — d ← d + λ θ (L2, coupled, as ``torch.optim.SGD``);
- :func:`momentum` — heavy-ball velocity with exactly ``torch.optim.SGD``'s semantics
  (buffer = first direction, then β·buffer + d; Nesterov d + β·buffer; no dampening);
- :func:`subspace_rescale` — d ← a (I − P_k) d + b P_k d with P_k = V Vᵀ from an eigenbasis
  (Nudged-SGD: a = 1, b = γ; top-only: (0, 1); remove-top: (1, 0)), placed before the momentum
  (rescale the gradient) or after it (rescale the applied velocity, the buffer unscaled);
- :func:`isotropic_noise` — d ← d + σ ξ, ξ ~ N(0, I) from a seeded, checkpointed generator;
- :func:`scale_by_lr` — θ ← θ − η d, the terminal transform (one fused ``add_`` per tensor, as
  torch does, so a chain equals ``torch.optim.SGD`` bit for bit).

Transforms never modify their input tensors in place (a momentum buffer is returned as the update
and must stay intact), and never touch ``p.grad``.

Example:
    >>> opt = ChainedOptimizer(model.parameters(), [add_weight_decay(), momentum(), scale_by_lr()],
    ...                        lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, EigenvectorsUnavailableError, InvalidArgumentError

__all__ = [
    "ChainedOptimizer",
    "StepContext",
    "Transform",
    "add_weight_decay",
    "isotropic_noise",
    "momentum",
    "scale_by_lr",
    "subspace_rescale",
]


@dataclass
class StepContext:
    """What a transform sees at one update.

    Attributes:
        optimizer: the optimizer running the chain (its ``state`` holds per-parameter state).
        params: the parameters updated at this step, in param-group order.
        groups: the param group of each of ``params``.
        step: t, the index of this update (0-based, counted by the optimizer).
    """

    optimizer: ChainedOptimizer
    params: list[torch.Tensor]
    groups: list[dict[str, Any]]
    step: int


class Transform:
    """One piece of an update rule; subclasses override :meth:`update`."""

    #: True when parameters without a gradient must take part (as zero gradients), e.g. a
    #: projection that mixes coordinates across parameters.
    needs_all_params: bool = False
    #: True for the transform that writes the parameters (it must come last).
    terminal: bool = False

    def active(self, step: int) -> bool:
        """Whether the transform changes anything at this step (cheap; decides which
        parameters take part)."""
        return True

    def begin(self, step: int) -> None:
        """Called for every transform before any of them updates at ``step``: work that can fail
        (a basis refresh) happens here, so a failed step changes no state."""

    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        """The new update directions (out of place)."""
        return updates

    def state_dict(self) -> dict[str, Any]:
        """State beyond ``optimizer.state[p]`` (generators, snapshots), for checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _WeightDecay(Transform):
    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        return [
            d.add(p, alpha=g["weight_decay"]) if g["weight_decay"] != 0 else d
            for d, p, g in zip(updates, sc.params, sc.groups, strict=True)
        ]


class _Momentum(Transform):
    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        out = []
        for d, p, g in zip(updates, sc.params, sc.groups, strict=True):
            beta = g["momentum"]
            if beta == 0:
                out.append(d)
                continue
            state = sc.optimizer.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = d.detach().clone()
                state["momentum_buffer"] = buf
            else:
                buf.mul_(beta).add_(d)
            out.append(d.add(buf, alpha=beta) if g["nesterov"] else buf)
        return out


class _IsotropicNoise(Transform):
    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._generators: dict[str, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generators[key] = gen
        return gen

    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        out = []
        for d, p, g in zip(updates, sc.params, sc.groups, strict=True):
            sigma = g.get("sigma", 0.0)
            if sigma == 0:
                out.append(d)
                continue
            xi = torch.randn(
                p.shape, generator=self._generator(p.device), device=p.device, dtype=p.dtype
            )
            out.append(xi.mul_(sigma).add_(d))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "rng": {k: g.get_state() for k, g in self._generators.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self._generators = {}
        for key, gen_state in (state.get("rng") or {}).items():
            gen = torch.Generator(device=key)
            gen.set_state(gen_state)
            self._generators[key] = gen

    def __repr__(self) -> str:
        return f"isotropic_noise(seed={self.seed})"


class _ScaleByLR(Transform):
    terminal = True

    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        for p, d, g in zip(sc.params, updates, sc.groups, strict=True):
            p.add_(d, alpha=-g["lr"])
        return updates


class _SubspaceRescale(Transform):
    """a (I − P_k) d + b P_k d with P_k from the first k columns of a basis's vectors.

    The directions are taken from the basis at the steps where the basis is due (it refreshes
    itself there, at the model's current θ_t, before this update), and at the first active step.
    Each parameter's rows are found by identity, so any order of parameter groups is right.
    """

    needs_all_params = True

    def __init__(self, basis: Any, coef_perp: float, coef_top: float, k: int, burn_in: int):
        self.basis = basis
        self.a = float(coef_perp)
        self.b = float(coef_top)
        self.k = int(k)
        self.burn_in = int(burn_in)
        self._vectors: torch.Tensor | None = None
        self._vectors_step: int | None = None

    @property
    def is_identity(self) -> bool:
        """True when d' = d at every step (γ = 1, or no directions and a = 1)."""
        return (self.a == 1.0 and self.b == 1.0) or (self.k == 0 and self.a == 1.0)

    @property
    def needs_basis(self) -> bool:
        return not self.is_identity and self.k > 0

    def active(self, step: int) -> bool:
        return not self.is_identity and step >= self.burn_in

    @property
    def vectors(self) -> torch.Tensor | None:
        """The directions V (n, k) in use, or None before the first active step."""
        return self._vectors

    def _directions(self, step: int) -> torch.Tensor:
        basis = self.basis
        if basis.due(step):
            basis.update(step)
            self._take(basis)
        elif self._vectors is None:
            if basis.vectors is None:
                basis.ensure(step)
            self._take(basis)
        if self._vectors is None:
            raise EigenvectorsUnavailableError(
                f"step {step}: the basis has no directions yet; attach it to the model, loss "
                "and data (basis.attach(model, loss_fn, data)) so it can refresh, or give "
                "directions with basis.set(V)"
            )
        return self._vectors

    def _take(self, basis: Any) -> None:
        if basis.vectors is None:
            return
        if basis.vectors.shape[1] < self.k:
            raise InvalidArgumentError(
                f"the basis holds {basis.vectors.shape[1]} directions but k={self.k} are used; "
                f"fix: a basis with k >= {self.k}"
            )
        self._vectors = basis.vectors[:, : self.k]
        self._vectors_step = basis.step

    def begin(self, step: int) -> None:
        if self.active(step) and self.k > 0:
            self._directions(step)

    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        if not self.active(sc.step):
            return updates
        if self.k == 0:  # P = 0: d' = a d
            return [d.mul(self.a) for d in updates]
        v = self._directions(sc.step)  # done by begin() already: idempotent within a step
        layout = self.basis._require_layout()
        if not layout.covers(sc.params):
            raise InvalidArgumentError(
                "the optimizer's parameters must be exactly the trainable parameters of the "
                "model its basis is attached to (the projection mixes all of them); fix: pass "
                "model.parameters() (in any grouping and order)"
            )
        rows = [v[r] for r in layout.rows_of(sc.params)]
        coef = sum(r.T @ d.reshape(-1) for r, d in zip(rows, updates, strict=True))
        a, b = self.a, self.b
        out = []
        for r, d in zip(rows, updates, strict=True):
            if a == 0.0:
                new = (r @ coef).mul_(b) if b != 1.0 else r @ coef
            elif a == 1.0:  # every registered variant: d + (b − 1) P d
                new = torch.addmv(d.reshape(-1), r, coef, alpha=b - 1.0)
            else:  # a d + (b − a) P d
                new = torch.addmv(d.reshape(-1).mul(a), r, coef, alpha=b - a)
            out.append(new.view_as(d))
        return out

    def state_dict(self) -> dict[str, Any]:
        v = self._vectors
        return {
            "vectors": None if v is None else v.detach().cpu().clone(),
            "vectors_step": self._vectors_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        v = state.get("vectors")
        if v is not None and self.basis.layout is not None:
            v = v.to(device=self.basis.layout.device, dtype=self.basis.layout.dtype)
        self._vectors = v
        self._vectors_step = state.get("vectors_step")

    def __repr__(self) -> str:
        return f"subspace_rescale(a={self.a:g}, b={self.b:g}, k={self.k}, burn_in={self.burn_in})"


def add_weight_decay() -> Transform:
    """d ← d + λ θ with λ = the group's ``weight_decay`` (skipped when 0)."""
    return _WeightDecay()


def momentum() -> Transform:
    """Heavy-ball momentum with the group's ``momentum`` β and ``nesterov`` flag, exactly as
    ``torch.optim.SGD`` (no dampening); the buffer is ``optimizer.state[p]["momentum_buffer"]``."""
    return _Momentum()


def isotropic_noise(seed: int) -> Transform:
    """d ← d + σ ξ with σ = the group's ``sigma`` and ξ ~ N(0, I) from a generator per device
    seeded with ``seed`` (checkpointed with the optimizer)."""
    return _IsotropicNoise(seed)


def scale_by_lr() -> Transform:
    """θ ← θ − η d with η = the group's ``lr``: the terminal transform of every chain."""
    return _ScaleByLR()


def subspace_rescale(
    basis: Any, *, coef_perp: float, coef_top: float, k: int, burn_in: int = 0
) -> Transform:
    """d ← a (I − P_k) d + b P_k d, P_k = V Vᵀ from the first ``k`` directions of ``basis``.

    Args:
        basis: an :class:`~sgdscope.eigenbasis.EigenBasis` or
            :class:`~sgdscope.eigenbasis.RandomBasis` attached to the model; refreshed here at its
            due steps (counted by the optimizer).
        coef_perp: a, the factor outside the subspace.
        coef_top: b, the factor inside it.
        k: number of directions used (<= the basis's k; 0: identity).
        burn_in: the transform is the identity for steps < burn_in.
    """
    return _SubspaceRescale(basis, coef_perp, coef_top, k, burn_in)


class ChainedOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose update is a chain of :class:`Transform` s.

    Args:
        params: parameters or parameter groups.
        transforms: the chain; the last must be :func:`scale_by_lr`.
        **defaults: per-group hyper-parameters the transforms read (``lr``, ``momentum``,
            ``weight_decay``, ``nesterov``, ``sigma``, ...).
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        transforms: Sequence[Transform],
        **defaults: Any,
    ) -> None:
        transforms = list(transforms)
        if not transforms or not transforms[-1].terminal:
            raise InvalidArgumentError(
                "a transform chain must end with scale_by_lr() (the step that writes θ)"
            )
        if any(t.terminal for t in transforms[:-1]):
            raise InvalidArgumentError("scale_by_lr() must be the last transform of the chain")
        lr = defaults.get("lr")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
            raise ConfigError(f"lr must be a finite number >= 0, got {lr!r}")
        super().__init__(params, defaults)
        self.transforms = transforms
        self._step = 0

    @property
    def step_count(self) -> int:
        """Updates made so far (the index of the next one)."""
        return self._step

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update from the parameters' ``.grad``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        t = self._step
        everything = any(tf.needs_all_params and tf.active(t) for tf in self.transforms)
        params: list[torch.Tensor] = []
        groups: list[dict[str, Any]] = []
        updates: list[torch.Tensor] = []
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    if not (everything and p.requires_grad):
                        continue
                    updates.append(torch.zeros_like(p))
                else:
                    updates.append(p.grad)
                params.append(p)
                groups.append(g)
        for tf in self.transforms:
            tf.begin(t)
        sc = StepContext(self, params, groups, t)
        for tf in self.transforms:
            updates = tf.update(updates, sc)
        self._step = t + 1
        return loss

    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state plus each transform's own state and the step counter."""
        state = super().state_dict()
        state["chain"] = {
            "step": self._step,
            "transforms": [t.state_dict() for t in self.transforms],
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        chain = state.pop("chain", None)
        super().load_state_dict(state)
        if chain is None:
            return
        saved = chain.get("transforms", [])
        if len(saved) != len(self.transforms):
            raise InvalidArgumentError(
                f"checkpointed optimizer has {len(saved)} transforms, this one "
                f"{len(self.transforms)}: resume with the same optimizer"
            )
        for tf, s in zip(self.transforms, saved, strict=True):
            tf.load_state_dict(s)
        self._step = int(chain.get("step", 0))

    def __repr__(self) -> str:
        chain = ", ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([{chain}], groups={len(self.param_groups)})"
