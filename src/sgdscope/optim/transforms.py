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
- :func:`scale_by_adam` — d ← m̂ / (√v̂ + ε), Adam's bias-corrected moments (Kingma & Ba 2015)
  with exactly ``torch.optim.Adam``'s arithmetic and state keys (``step``, ``exp_avg``,
  ``exp_avg_sq``); it leaves the division by √v̂ + ε *pending* so that the terminal step divides
  once, as torch's fused ``addcdiv_`` does (a chain equals ``torch.optim.Adam`` bit for bit);
- :func:`decoupled_weight_decay` — θ ← (1 − η λ) θ before the step (AdamW, Loshchilov & Hutter
  2019), exactly as ``torch.optim.AdamW``;
- :func:`scale_by_lr` — θ ← θ − η d, the terminal transform (one fused ``add_`` per tensor, as
  torch does, so a chain equals ``torch.optim.SGD`` bit for bit).

**Stability thresholds.** Each transform contributes a factor to the chain's linear-stability
threshold (:meth:`ChainedOptimizer.stability_threshold`): the largest curvature λ along which the
update, linearised on a quadratic, does not diverge. :func:`scale_by_lr` gives 2/η, heavy-ball
momentum β multiplies by (1 + β) (Nesterov: (1 + β)/(1 + 2β)), Adam's first moment β₁ (an average
with dampening 1 − β₁) by (1 + β₁)/(1 − β₁); so SGD: 2/η, momentum: (2 + 2β)/η, Adam:
(2 + 2β₁)/((1 − β₁)η) = 38/η at β₁ = 0.9. For a preconditioning transform (Adam) the threshold
bounds the preconditioned sharpness λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²), P = diag(√v̂ + ε), not λ₁(H)
(:attr:`ChainedOptimizer.preconditioned`). Weight decay is left out (as in Cohen et al.): with
coupled L2 λ_wd the exact SGD bound on λ(H) is (2 + 2β)/η − λ_wd.

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
    "decoupled_weight_decay",
    "isotropic_noise",
    "momentum",
    "scale_by_adam",
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
        pending: a division still to be applied to each update, or None: the direction of
            parameter i is ``updates[i] / (pending[i][0] · pending[i][1])`` (a tensor and a
            scalar). :func:`scale_by_adam` leaves its division by √v̂ + ε (and the bias
            correction of m) pending, so that the terminal step applies it in one fused
            ``addcdiv_`` as torch does; the chain resolves it (:meth:`resolve`) before any
            transform that does not accept it.
    """

    optimizer: ChainedOptimizer
    params: list[torch.Tensor]
    groups: list[dict[str, Any]]
    step: int
    pending: list[tuple[torch.Tensor, float]] | None = None

    def resolve(self, updates: list[torch.Tensor]) -> list[torch.Tensor]:
        """The updates with the pending division applied (and no division pending after)."""
        if self.pending is None:
            return updates
        out = [
            torch.div(d, den).div_(c) if c != 1.0 else torch.div(d, den)
            for d, (den, c) in zip(updates, self.pending, strict=True)
        ]
        self.pending = None
        return out


class Transform:
    """One piece of an update rule; subclasses override :meth:`update`."""

    #: True when parameters without a gradient must take part (as zero gradients), e.g. a
    #: projection that mixes coordinates across parameters.
    needs_all_params: bool = False
    #: True for the transform that writes the parameters (it must come last).
    terminal: bool = False
    #: True when the transform handles ``StepContext.pending`` itself (else the chain resolves
    #: the pending division before calling it).
    accepts_pending: bool = False
    #: True when the transform preconditions the update (the stability threshold then bounds
    #: the preconditioned sharpness; :meth:`preconditioner` gives P).
    preconditions: bool = False

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

    def stability_factor(self, group: dict[str, Any]) -> float:
        """This transform's factor in the chain's linear-stability threshold (1: no effect)."""
        return 1.0

    def preconditioner(
        self, optimizer: ChainedOptimizer, p: torch.Tensor, group: dict[str, Any]
    ) -> torch.Tensor | None:
        """The diagonal of P for parameter ``p`` (shaped like p) of a preconditioning transform
        at its last update; None before the first update (or when it does not precondition)."""
        return None

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

    def stability_factor(self, group: dict[str, Any]) -> float:
        beta = float(group.get("momentum", 0.0) or 0.0)
        if group.get("nesterov"):
            # θ' = θ − η(g + β v'), v' = β v + g: on a quadratic the iteration matrix has the
            # eigenvalue −1 at ηλ = 2(1 + β)/(1 + 2β).
            return (1.0 + beta) / (1.0 + 2.0 * beta)
        return 1.0 + beta


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
    accepts_pending = True

    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        if sc.pending is None:
            for p, d, g in zip(sc.params, updates, sc.groups, strict=True):
                p.add_(d, alpha=-g["lr"])
            return updates
        # θ ← θ − (η / c) · d / den: torch.optim.Adam's `param.addcdiv_(exp_avg, denom,
        # value=-step_size)` with step_size = lr / bias_correction1.
        for p, d, g, (den, c) in zip(sc.params, updates, sc.groups, sc.pending, strict=True):
            p.addcdiv_(d, den, value=-(g["lr"] / c))
        return updates

    def stability_factor(self, group: dict[str, Any]) -> float:
        lr = float(group["lr"])
        return 2.0 / lr if lr > 0 else math.inf


class _ScaleByAdam(Transform):
    """Adam's moments with torch.optim.Adam's arithmetic (single-tensor path), division pending."""

    preconditions = True

    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        out = []
        pending = []
        for d, p, g in zip(updates, sc.params, sc.groups, strict=True):
            beta1, beta2 = g["betas"]
            state = sc.optimizer.state[p]
            if len(state) == 0 or "exp_avg" not in state:
                # torch keeps the step as a float tensor on the CPU (checkpoint-compatible).
                state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if g.get("amsgrad"):
                    state["max_exp_avg_sq"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
            step_t = state["step"]
            step_t += 1
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg.lerp_(d, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(d, d, value=1 - beta2)
            step = float(step_t.item())
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            bias_correction2_sqrt = bias_correction2**0.5
            second = exp_avg_sq
            if g.get("amsgrad"):
                torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                second = state["max_exp_avg_sq"]
            denom = (second.sqrt() / bias_correction2_sqrt).add_(g["eps"])
            out.append(exp_avg)
            pending.append((denom, bias_correction1))
        sc.pending = pending
        return out

    def stability_factor(self, group: dict[str, Any]) -> float:
        # m' = β₁ m + (1 − β₁) g: heavy-ball momentum β₁ with the step scaled by (1 − β₁).
        beta1 = float(group["betas"][0])
        return (1.0 + beta1) / (1.0 - beta1)

    def preconditioner(
        self, optimizer: ChainedOptimizer, p: torch.Tensor, group: dict[str, Any]
    ) -> torch.Tensor | None:
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state:
            return None
        return adam_preconditioner(
            state["exp_avg_sq"] if not group.get("amsgrad") else state["max_exp_avg_sq"],
            float(state["step"]),
            float(group["betas"][1]),
            float(group["eps"]),
        )

    def __repr__(self) -> str:
        return "scale_by_adam()"


def adam_preconditioner(
    exp_avg_sq: torch.Tensor, step: float, beta2: float, eps: float
) -> torch.Tensor:
    """P = √v̂ + ε with v̂ = v / (1 − β₂ᵗ), Adam's bias-corrected second moment (same shape).

    Args:
        exp_avg_sq: v, the running average of squared gradients after ``step`` updates.
        step: t, the number of updates v has seen (≥ 1).
        beta2: β₂.
        eps: ε.
    """
    if step < 1:
        raise InvalidArgumentError(
            f"the preconditioner needs at least one update of the second moment, got step={step}"
        )
    return (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class _DecoupledWeightDecay(Transform):
    """θ ← (1 − η λ) θ in place, before the terminal step (torch.optim.AdamW's order)."""

    accepts_pending = True

    def update(self, updates: list[torch.Tensor], sc: StepContext) -> list[torch.Tensor]:
        for p, g in zip(sc.params, sc.groups, strict=True):
            wd = g["weight_decay"]
            if wd != 0:
                p.mul_(1 - g["lr"] * wd)
        return updates

    def __repr__(self) -> str:
        return "decoupled_weight_decay()"


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
        state: dict[str, Any] = {
            "vectors": None if v is None else v.detach().cpu().clone(),
            "vectors_step": self._vectors_step,
        }
        if _owned_by_the_optimizer(self.basis):
            state["basis"] = self.basis.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("basis") is not None and _owned_by_the_optimizer(self.basis):
            self.basis.load_state_dict(state["basis"])
        v = state.get("vectors")
        if v is not None and self.basis.layout is not None:
            v = v.to(device=self.basis.layout.device, dtype=self.basis.layout.dtype)
        self._vectors = v
        self._vectors_step = state.get("vectors_step")

    def __repr__(self) -> str:
        return f"subspace_rescale(a={self.a:g}, b={self.b:g}, k={self.k}, burn_in={self.burn_in})"


def _owned_by_the_optimizer(basis: Any) -> bool:
    """A random basis (the random-subspace control) has no owner but the optimizer using it,
    so its generator and refresh step are checkpointed with the optimizer: without them a
    resumed run redraws its next directions from the seed's first ones (issue 11). The run's
    EigenBasis is checkpointed by whoever refreshes it for the probes (the ProbeSet)."""
    from ..eigenbasis import RandomBasis

    return isinstance(basis, RandomBasis)


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


def scale_by_adam() -> Transform:
    """d ← m̂ / (√v̂ + ε) with the group's ``betas`` (β₁, β₂), ``eps`` and ``amsgrad``, exactly as
    ``torch.optim.Adam`` (state ``step``, ``exp_avg``, ``exp_avg_sq`` under torch's keys); the
    division is left pending for the terminal step (:class:`StepContext`). A preconditioner:
    P = diag(√v̂ + ε) (:func:`adam_preconditioner`)."""
    return _ScaleByAdam()


def decoupled_weight_decay() -> Transform:
    """θ ← (1 − η λ) θ with λ = the group's ``weight_decay``, applied to the parameters before
    the terminal step (AdamW's decoupled decay, exactly as ``torch.optim.AdamW``)."""
    return _DecoupledWeightDecay()


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
            if sc.pending is not None and not tf.accepts_pending:
                updates = sc.resolve(updates)
            updates = tf.update(updates, sc)
        self._step = t + 1
        return loss

    # ---------------------------------------------------------------- linear stability
    def stability_threshold(self, group: int = 0) -> float:
        """The linear-stability threshold of this update rule for param group ``group``.

        The product of the transforms' factors: 2/η (SGD, GD), (2 + 2β)/η (heavy-ball momentum
        β), 2(1 + β)/((1 + 2β)η) (Nesterov), (2 + 2β₁)/((1 − β₁)η) (Adam; 38/η at β₁ = 0.9).
        Along an eigendirection of curvature λ above it the linearised update diverges. For a
        preconditioned rule (:attr:`preconditioned`) λ is an eigenvalue of P⁻¹ᐟ² H P⁻¹ᐟ².
        Weight decay and the subspace rescaling are left out (a rescaling by b of the top-k
        directions moves their threshold to the value here divided by b).
        """
        g = self.param_groups[group]
        value = 1.0
        for tf in self.transforms:
            value *= tf.stability_factor(g)
        return value

    @property
    def preconditioned(self) -> bool:
        """True when a transform preconditions the update (Adam): the stability threshold then
        bounds λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) rather than λ₁(H)."""
        return any(tf.preconditions for tf in self.transforms)

    def preconditioner(self, params: Iterable[torch.Tensor]) -> list[torch.Tensor] | None:
        """The diagonal of P for each of ``params`` (shaped like each), from the optimizer's own
        state after its last update; None when it does not precondition or has not stepped.
        A parameter this optimizer does not update gets P = 1."""
        tf = next((t for t in self.transforms if t.preconditions), None)
        if tf is None:
            return None
        group_of = {id(p): g for g in self.param_groups for p in g["params"]}
        out = []
        found = False
        for p in params:
            g = group_of.get(id(p))
            diag = None if g is None else tf.preconditioner(self, p, g)
            if diag is None:
                diag = torch.ones_like(p)
            else:
                found = True
            out.append(diag)
        return out if found else None

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
