"""SGD with a rescaled step along the sharpest directions (paper A): Nudged-SGD and projected SGD.

With P_k = V Vᵀ the projector on k orthonormal directions (the first k columns of an eigenbasis,
flat over the model's trainable parameters), the step direction d (the gradient plus weight
decay) becomes d' = a (I − P_k) d + b P_k d, with (a, b) = (1, γ) for Nudged-SGD, (0, 1) for
top-only and (1, 0) for remove-top SGD; then the usual SGD update with torch's momentum
semantics. With momentum, ``nudge="gradient"`` rescales the gradient before it enters the
velocity; ``nudge="update"`` (paper A's code) rescales the applied velocity and leaves the
velocity buffer unscaled.

Both are chains of :mod:`sgdscope.optim.transforms`: weight decay → [rescale] → momentum →
[rescale] → scale by −η. The directions come from the basis handed to the constructor
(:class:`~sgdscope.eigenbasis.EigenBasis`, or :class:`~sgdscope.eigenbasis.RandomBasis` for the
random-subspace control), refreshed by the optimizer itself at the basis's due steps (counted in
the optimizer's own updates, so a plain loop needs nothing else), at the model's θ_t before the
update. Parameters are matched to the basis's rows by identity, in any group order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..errors import ConfigError
from ._registry import OptimContext, register_optimizer
from .transforms import (
    ChainedOptimizer,
    Transform,
    add_weight_decay,
    momentum,
    scale_by_lr,
    subspace_rescale,
)

NUDGES = ("gradient", "update")
SUBSPACES = ("top", "random")
MODES = ("top_only", "remove_top")


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


class _SubspaceSGD(ChainedOptimizer):
    """SGD whose direction is rescaled by (a, b) outside / inside a k-dimensional subspace."""

    _who = "subspace SGD"

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float,
        *,
        coef_perp: float,
        coef_top: float,
        basis: Any,
        k: int,
        burn_in: int,
        momentum_: float,
        weight_decay: float,
        nesterov: bool,
        nudge: str,
    ) -> None:
        who = self._who
        _check(
            isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0,
            f"{who}: lr must be a finite number >= 0, got {lr!r}",
        )
        _check(
            isinstance(k, int) and not isinstance(k, bool) and k >= 0,
            f"{who}: k must be an integer >= 0, got {k!r}",
        )
        _check(
            isinstance(burn_in, int) and burn_in >= 0,
            f"{who}: burn_in must be an integer >= 0 steps, got {burn_in!r}",
        )
        _check(0 <= momentum_ < 1, f"{who}: momentum must be in [0, 1), got {momentum_}")
        _check(weight_decay >= 0, f"{who}: weight_decay must be >= 0, got {weight_decay}")
        _check(
            not nesterov or momentum_ > 0,
            f"{who}: nesterov=True needs momentum > 0 (got momentum={momentum_})",
        )
        _check(nudge in NUDGES, f"{who}: nudge must be one of {NUDGES}, got {nudge!r}")
        rescale = subspace_rescale(
            basis, coef_perp=coef_perp, coef_top=coef_top, k=k, burn_in=burn_in
        )
        identity = not rescale.needs_basis  # type: ignore[attr-defined]
        if basis is None:
            _check(
                identity,
                f"{who}: needs basis=EigenBasis(k>={k}, ...) attached to the model (or "
                f"RandomBasis(k={k}) for the random-subspace control); without one only the "
                "identity (gamma=1 or k=0) is possible",
            )
        elif not identity:
            _check(
                k <= basis.k,
                f"{who}: k={k} directions but the basis has k={basis.k}; fix: k <= {basis.k}",
            )
        chain: list[Transform] = [add_weight_decay()]
        if nudge == "gradient":
            chain += [rescale, momentum()]
        else:
            chain += [momentum(), rescale]
        chain.append(scale_by_lr())
        super().__init__(
            params,
            chain,
            lr=float(lr),
            momentum=momentum_,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )
        self.basis = basis
        self.k = k
        self.burn_in = burn_in
        self.nudge = nudge
        self._rescale = rescale

    @property
    def is_identity(self) -> bool:
        """True when the rescaling does nothing (γ = 1 or k = 0): the optimizer is exactly SGD."""
        return bool(self._rescale.is_identity)  # type: ignore[attr-defined]

    @property
    def eigenvectors(self) -> Any:
        """The directions V (n, k) in use, or None before the first active step."""
        return self._rescale.vectors  # type: ignore[attr-defined]


class NudgedSGD(_SubspaceSGD):
    """Nudged-SGD: θ ← θ − η [(I − P_k) g + γ P_k g] (paper A, §5).

    γ < 1 steers towards sharper regions, γ > 1 towards flatter ones; γ = 1 is exactly
    ``torch.optim.SGD`` (the same arithmetic, bit for bit).

    Args:
        params: parameters or parameter groups (per-group lr / momentum / weight_decay), all the
            trainable parameters of the model the basis is attached to, in any order.
        lr: η.
        gamma: γ >= 0, the step multiplier inside the top-k subspace.
        basis: an attached :class:`~sgdscope.eigenbasis.EigenBasis` (refreshed here at its due
            steps) or a :class:`~sgdscope.eigenbasis.RandomBasis` (the control); may be None only
            when γ = 1.
        k: subspace dimension (paper A: 5), at most the basis's k.
        burn_in: plain SGD for the first ``burn_in`` steps.
        momentum, weight_decay, nesterov: as in ``torch.optim.SGD`` (no dampening).
        nudge: "gradient" (rescale the gradient) or "update" (rescale the applied velocity).

    Example:
        >>> basis = EigenBasis(k=5, every=100).attach(model, loss_fn, probe_data)
        >>> opt = NudgedSGD(model.parameters(), lr=0.01, gamma=0.1, basis=basis)
        >>> loss.backward(); opt.step()   # refreshes the basis at steps 0, 100, 200, ...
    """

    _who = "NudgedSGD"

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float,
        gamma: float,
        basis: Any = None,
        *,
        k: int = 5,
        burn_in: int = 0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        nudge: str = "gradient",
    ) -> None:
        _check(
            isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 0,
            f"NudgedSGD: gamma must be a finite number >= 0 (γ < 1 sharper, γ > 1 flatter, "
            f"γ = 1 plain SGD), got {gamma!r}",
        )
        self.gamma = float(gamma)
        super().__init__(
            params,
            lr,
            coef_perp=1.0,
            coef_top=float(gamma),
            basis=basis,
            k=k,
            burn_in=burn_in,
            momentum_=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            nudge=nudge,
        )


class ProjectedSGD(_SubspaceSGD):
    """SGD restricted to, or kept out of, the top-k subspace (paper A, §4).

    ``mode="top_only"``: θ ← θ − η P_k g (finds flatter regions);
    ``mode="remove_top"``: θ ← θ − η (I − P_k) g (finds sharper regions).
    Other arguments as :class:`NudgedSGD` (k defaults to 1, paper A's top eigenvector).

    Example:
        >>> opt = ProjectedSGD(model.parameters(), lr=0.01, mode="remove_top", basis=basis)
    """

    _who = "ProjectedSGD"

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float,
        mode: str = "top_only",
        basis: Any = None,
        *,
        k: int = 1,
        burn_in: int = 0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        nudge: str = "gradient",
    ) -> None:
        _check(mode in MODES, f"ProjectedSGD: mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        a, b = (0.0, 1.0) if mode == "top_only" else (1.0, 0.0)
        super().__init__(
            params,
            lr,
            coef_perp=a,
            coef_top=b,
            basis=basis,
            k=k,
            burn_in=burn_in,
            momentum_=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            nudge=nudge,
        )


# ---------------------------------------------------------------------- registry factories
def _basis_for(ctx: OptimContext, name: str, subspace: str, k: int, identity: bool) -> Any:
    """The run's eigenbasis (``subspace="top"``) or a random basis with its schedule."""
    _check(
        subspace in SUBSPACES,
        f"optim.options.subspace={subspace!r} for {name!r}: must be one of {SUBSPACES}",
    )
    if identity:
        return None
    basis = ctx.eigenbasis
    if subspace == "random":
        from ..eigenbasis import RandomBasis

        every: Any = basis.options.every if basis is not None else 100
        rb = RandomBasis(k=k, every=every, seed=ctx.seed, steps_per_epoch=ctx.steps_per_epoch)
        if ctx.model is not None:
            rb.attach(ctx.model)
        return rb
    if basis is None:
        raise ConfigError(
            f"optim {name!r} steps along the top Hessian eigenvectors: add an `eigenbasis:` "
            f"section (e.g. eigenbasis: {{k: {max(k, 1)}, every: 20}}), or set "
            "optim.options.subspace=random for the random-subspace control"
        )
    if basis.data_source == "batch":
        raise ConfigError(
            f"optim {name!r} refreshes the eigenbasis before its update, when the mini-batch "
            "is not known yet: set eigenbasis.data to 'probe' or 'train'"
        )
    _check(
        k <= basis.k,
        f"optim.options.k={k} for {name!r} but eigenbasis.k={basis.k}: k must be <= "
        "eigenbasis.k (raise eigenbasis.k)",
    )
    return basis


def _settings(ctx: OptimContext, k: int, burn_in: int, nudge: str) -> dict[str, Any]:
    """The keywords both subspace optimizers take from the ``optim`` section and options."""
    return {
        "lr": ctx.lr,
        "k": k,
        "burn_in": burn_in,
        "momentum": ctx.momentum,
        "weight_decay": ctx.weight_decay,
        "nesterov": ctx.nesterov,
        "nudge": nudge,
    }


@register_optimizer("nsgd", needs_hvp=True, uses_eigenbasis=True)
def _nsgd(
    params: list[nn.Parameter],
    ctx: OptimContext,
    gamma: float | None = None,
    k: int = 5,
    burn_in: int = 0,
    nudge: str = "gradient",
    subspace: str = "top",
) -> NudgedSGD:
    """Nudged-SGD from a config (lr, momentum, weight decay, nesterov: the ``optim`` section).

    ``gamma`` is required. Options (``optim.options``): ``k`` (<= ``eigenbasis.k``),
    ``burn_in``, ``nudge``, ``subspace`` ("top": the run's eigenbasis, refreshed on its
    schedule; "random": k random orthonormal directions redrawn on the eigenbasis's schedule,
    the control).
    """
    if gamma is None:
        raise ConfigError(
            "optim.options.gamma is required for 'nsgd' (γ < 1 steers sharper, γ > 1 flatter, "
            "γ = 1 is plain SGD), e.g. optim.options.gamma=0.1"
        )
    basis = _basis_for(ctx, "nsgd", subspace, k, identity=gamma == 1 or k == 0)
    return NudgedSGD(params, gamma=gamma, basis=basis, **_settings(ctx, k, burn_in, nudge))


@register_optimizer("projected_sgd", needs_hvp=True, uses_eigenbasis=True)
def _projected_sgd(
    params: list[nn.Parameter],
    ctx: OptimContext,
    mode: str = "top_only",
    k: int = 1,
    burn_in: int = 0,
    nudge: str = "gradient",
    subspace: str = "top",
) -> ProjectedSGD:
    """Top-only / remove-top SGD from a config (``mode``: "top_only" or "remove_top").

    Options (``optim.options``): ``k`` (<= ``eigenbasis.k``), ``burn_in``, ``nudge``,
    ``subspace`` ("top" or "random", as for ``nsgd``).
    """
    basis = _basis_for(ctx, "projected_sgd", subspace, k, identity=k == 0)
    return ProjectedSGD(params, mode=mode, basis=basis, **_settings(ctx, k, burn_in, nudge))
