"""SGD with a rescaled step along the sharpest directions (paper A): Nudged-SGD and projected SGD.

With P_k = V Vᵀ the projector on k orthonormal directions (the columns of V, n × k, over all
trainable parameters flattened in order), the step direction d (the gradient, plus weight decay)
becomes

    d' = a (I − P_k) d + b P_k d,

with (a, b) = (1, γ) for Nudged-SGD, (0, 1) for top-only and (1, 0) for remove-top SGD. Then the
usual SGD update θ ← θ − η d' (with torch's momentum semantics) follows. With momentum,
``nudge="gradient"`` rescales the gradient before it enters the velocity; ``nudge="update"`` (paper
A's code) rescales the applied velocity and leaves the velocity buffer itself unscaled (choice).

Where V comes from, at each refresh (every ``refresh_every`` steps, or at each new epoch):
``subspace="random"`` draws k random orthonormal directions (the control); otherwise the newest of
``shared["eigenvectors"]`` (passed to :meth:`prepare` by the Trainer, from a SharpnessProbe),
``eigen_fn()`` (your own Lanczos) and :meth:`set_eigenvectors` is used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .._state import BN_MODES
from ..errors import ConfigError, SgdscopeError
from ._registry import OptimContext, register_optimizer

NUDGES = ("gradient", "update")
SUBSPACES = ("top", "random")
MODES = ("top_only", "remove_top")
EIGEN_SOURCES = ("auto", "probe", "own")


class EigenvectorsUnavailableError(SgdscopeError, RuntimeError):
    """A subspace-SGD step was asked for before any eigenvectors were available."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _as_vectors(result: Any) -> torch.Tensor:
    """Eigenvectors from what an ``eigen_fn`` returned: a tensor, (values, vectors), or a result
    object with ``.eigenvectors`` (e.g. ``sgdscope.curvature.lanczos``)."""
    if isinstance(result, torch.Tensor):
        return result
    if hasattr(result, "eigenvectors"):
        return torch.as_tensor(result.eigenvectors)
    if isinstance(result, (tuple, list)) and len(result) == 2:
        return torch.as_tensor(result[1])
    raise ConfigError(
        f"eigen_fn returned {type(result).__name__}; expected an (n, k) tensor, a "
        "(eigenvalues, eigenvectors) pair or an object with .eigenvectors"
    )


class _SubspaceSGD(torch.optim.Optimizer):
    """SGD whose direction is rescaled by (a, b) outside / inside a k-dimensional subspace."""

    _who = "subspace SGD"

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float,
        *,
        coef_perp: float,
        coef_top: float,
        k: int,
        refresh_every: int | str,
        burn_in: int,
        momentum: float,
        weight_decay: float,
        nesterov: bool,
        nudge: str,
        subspace: str,
        eigen_fn: Callable[[], Any] | None,
        seed: int,
    ) -> None:
        _check(
            isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0,
            f"{self._who}: lr must be a finite number >= 0, got {lr!r}",
        )
        _check(isinstance(k, int) and k >= 1, f"{self._who}: k must be an integer >= 1, got {k!r}")
        _check(
            refresh_every == "epoch" or (isinstance(refresh_every, int) and refresh_every >= 1),
            f"{self._who}: refresh_every must be a number of steps >= 1 or 'epoch', "
            f"got {refresh_every!r}",
        )
        _check(
            isinstance(burn_in, int) and burn_in >= 0,
            f"{self._who}: burn_in must be an integer >= 0 steps, got {burn_in!r}",
        )
        _check(0 <= momentum < 1, f"{self._who}: momentum must be in [0, 1), got {momentum}")
        _check(weight_decay >= 0, f"{self._who}: weight_decay must be >= 0, got {weight_decay}")
        _check(
            not nesterov or momentum > 0,
            f"{self._who}: nesterov=True needs momentum > 0 (got momentum={momentum})",
        )
        _check(nudge in NUDGES, f"{self._who}: nudge must be one of {NUDGES}, got {nudge!r}")
        _check(
            subspace in SUBSPACES,
            f"{self._who}: subspace must be one of {SUBSPACES}, got {subspace!r}",
        )
        _check(eigen_fn is None or callable(eigen_fn), f"{self._who}: eigen_fn must be callable")
        defaults = dict(
            lr=float(lr), momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
        super().__init__(params, defaults)
        self.coef_perp = float(coef_perp)
        self.coef_top = float(coef_top)
        self.k = k
        self.refresh_every = refresh_every
        self.burn_in = burn_in
        self.nudge = nudge
        self.subspace = subspace
        self.eigen_fn = eigen_fn
        self.seed = int(seed)
        _check(
            k <= self.num_params,
            f"{self._who}: k={k} directions but only {self.num_params} trainable parameters",
        )
        self._generator = torch.Generator().manual_seed(self.seed)
        self._vectors: torch.Tensor | None = None
        self._eigen_step: int | None = None
        self._last_refresh_step: int | None = None
        self._last_refresh_epoch: int | None = None
        self._num_refreshes = 0
        self._t = 0  # index of the next update
        self._prepared_for: int | None = None

    # ------------------------------------------------------------------ parameters
    def _trainable(self) -> list[nn.Parameter]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    @property
    def num_params(self) -> int:
        """n: the number of trainable scalars the subspace lives in."""
        return sum(p.numel() for p in self._trainable())

    @property
    def is_identity(self) -> bool:
        """True when the rescaling does nothing (γ = 1): the optimizer is exactly SGD."""
        return self.coef_perp == 1.0 and self.coef_top == 1.0

    @property
    def eigenvectors(self) -> torch.Tensor | None:
        """The current directions V (n × k), or None before the first refresh."""
        return self._vectors

    @property
    def num_refreshes(self) -> int:
        return self._num_refreshes

    # ------------------------------------------------------------------ directions
    def set_eigenvectors(self, vectors: torch.Tensor, step: int | None = None) -> None:
        """Use the first k columns of ``vectors`` (n × ≥k, orthonormal) as the subspace.

        Args:
            vectors: e.g. Lanczos eigenvectors, columns by descending eigenvalue.
            step: the step they were computed at (to tell newer shared eigenvectors apart).
        """
        n = self.num_params
        if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2:
            raise ConfigError(
                f"{self._who}: eigenvectors must be an (n, k) tensor, got "
                f"{getattr(vectors, 'shape', type(vectors).__name__)}"
            )
        if vectors.shape[0] != n or vectors.shape[1] < self.k:
            raise ConfigError(
                f"{self._who}: expected eigenvectors of shape ({n}, >={self.k}) (n trainable "
                f"parameters, k={self.k}), got {tuple(vectors.shape)}; pass the top eigenvectors "
                "over all trainable parameters in the optimizer's order"
            )
        first = self._trainable()[0]
        v = vectors[:, : self.k].detach().to(device=first.device, dtype=first.dtype).clone()
        gram = v.double().T @ v.double()
        err = float((gram - torch.eye(self.k, dtype=torch.float64, device=v.device)).abs().max())
        if err > 1e-3:
            raise ConfigError(
                f"{self._who}: the eigenvector columns are not orthonormal (max |VᵀV − I| = "
                f"{err:.2e}); orthonormalise them first, e.g. torch.linalg.qr(V).Q"
            )
        self._vectors = v
        self._eigen_step = step
        self._last_refresh_step = self._t
        self._num_refreshes += 1

    def _random_vectors(self) -> torch.Tensor:
        g = torch.randn(self.num_params, self.k, generator=self._generator, dtype=torch.float64)
        q, _ = torch.linalg.qr(g)
        return q

    def _refresh_due(self, step: int, epoch: int | None) -> bool:
        if self._vectors is None:
            return True
        if self.refresh_every == "epoch":
            return epoch is not None and epoch != self._last_refresh_epoch
        assert isinstance(self.refresh_every, int) and self._last_refresh_step is not None
        return step - self._last_refresh_step >= self.refresh_every

    def _maybe_refresh(self, step: int, epoch: int | None, shared: dict[str, Any] | None) -> None:
        self._prepared_for = step
        # γ = 1 never uses the directions: skip the (possibly costly) refresh.
        if self.is_identity or step < self.burn_in or not self._refresh_due(step, epoch):
            return
        if self.subspace == "random":
            self.set_eigenvectors(self._random_vectors())
        else:
            vectors = None if shared is None else shared.get("eigenvectors")
            shared_step = None if shared is None else shared.get("eigen_step")
            newer = vectors is not None and (
                self._vectors is None
                or shared_step is None
                or self._eigen_step is None
                or int(shared_step) > self._eigen_step
            )
            if newer:
                assert vectors is not None
                self.set_eigenvectors(vectors, None if shared_step is None else int(shared_step))
            elif self.eigen_fn is not None:
                self.set_eigenvectors(_as_vectors(self.eigen_fn()), step)
            else:
                return  # nothing new yet: keep the current directions, try again next step
        self._last_refresh_epoch = epoch

    def prepare(
        self, step: int, epoch: int | None = None, shared: dict[str, Any] | None = None
    ) -> None:
        """Called before ``step()`` (the Trainer does): refresh the directions when due.

        Args:
            step: the index t of the coming update (0-based).
            epoch: its epoch (0-based), for ``refresh_every="epoch"``.
            shared: the probes' shared dict; ``"eigenvectors"`` (n × ≥k) and ``"eigen_step"``
                are picked up when newer than the current ones.
        """
        self._t = int(step)
        self._maybe_refresh(self._t, epoch, shared)

    # ------------------------------------------------------------------ the update
    def _rescale(self, dirs: list[torch.Tensor], params: list[nn.Parameter]) -> list[torch.Tensor]:
        """a (I − P) d + b P d over the concatenation of ``dirs`` (out of place)."""
        v = self._vectors
        assert v is not None
        rows: list[torch.Tensor] = []
        offset = 0
        for p in params:
            rows.append(v[offset : offset + p.numel()])
            offset += p.numel()
        coef = sum(r.T @ d.reshape(-1) for r, d in zip(rows, dirs, strict=True))
        assert isinstance(coef, torch.Tensor)
        a, b = self.coef_perp, self.coef_top
        out = []
        for r, d in zip(rows, dirs, strict=True):
            if a == 0.0:
                new = (r @ coef).mul_(b) if b != 1.0 else r @ coef
            else:
                # a == 1 for all variants: d + (b − 1) P d.
                new = torch.addmv(d.reshape(-1), r, coef, alpha=b - 1.0)
            out.append(new.view_as(d))
        return out

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update. Raises :class:`EigenvectorsUnavailableError` when the subspace is needed
        (after ``burn_in``) but no directions are available yet."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        t = self._t
        if self._prepared_for != t:  # used outside the Trainer: refresh on our own step count
            self._maybe_refresh(t, None, None)
        active = t >= self.burn_in and not self.is_identity
        if active and self._vectors is None:
            raise EigenvectorsUnavailableError(
                f"{self._who} step {t}: no eigenvectors yet (burn_in={self.burn_in}). Add a "
                "`sharpness` probe (its eigenvectors are handed over through prepare()), pass "
                "eigen_fn= (or optim.options.eigen_source=own), call set_eigenvectors(V), or set "
                "burn_in to cover the steps before the first eigenvectors"
            )
        params = self._trainable()
        groups = [g for g in self.param_groups for p in g["params"] if p.requires_grad]
        if active:
            # Parameters without a gradient count as zero gradient in the projection.
            dirs = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            updated = params
        else:
            # Exactly torch.optim.SGD's single-tensor arithmetic (γ = 1 is SGD, bit for bit).
            updated = [p for p in params if p.grad is not None]
            groups = [g for g, p in zip(groups, params, strict=True) if p.grad is not None]
            dirs = [p.grad for p in updated]  # type: ignore[misc]
        dirs = [
            d.add(p, alpha=g["weight_decay"]) if g["weight_decay"] != 0 else d
            for d, p, g in zip(dirs, updated, groups, strict=True)
        ]
        if active and self.nudge == "gradient":
            dirs = self._rescale(dirs, updated)
        for i, (p, g) in enumerate(zip(updated, groups, strict=True)):
            if g["momentum"] != 0:
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = dirs[i].detach().clone()
                    state["momentum_buffer"] = buf
                else:
                    buf.mul_(g["momentum"]).add_(dirs[i], alpha=1 - 0.0)
                dirs[i] = dirs[i].add(buf, alpha=g["momentum"]) if g["nesterov"] else buf
        if active and self.nudge == "update":
            dirs = self._rescale(dirs, updated)  # out of place: the velocity stays unscaled
        for p, d, g in zip(updated, dirs, groups, strict=True):
            p.add_(d, alpha=-g["lr"])
        self._t = t + 1
        return loss

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """torch's optimizer state plus the subspace state (directions, counters, RNG)."""
        state = super().state_dict()
        state["subspace"] = {
            "vectors": None if self._vectors is None else self._vectors.detach().cpu().clone(),
            "eigen_step": self._eigen_step,
            "last_refresh_step": self._last_refresh_step,
            "last_refresh_epoch": self._last_refresh_epoch,
            "num_refreshes": self._num_refreshes,
            "t": self._t,
            "generator": self._generator.get_state(),
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        sub = state.pop("subspace", None)
        super().load_state_dict(state)
        if sub is None:
            return
        vectors = sub["vectors"]
        if vectors is not None:
            first = self._trainable()[0]
            vectors = vectors.to(device=first.device, dtype=first.dtype)
            if vectors.shape != (self.num_params, self.k):
                raise ConfigError(
                    f"{self._who}: checkpointed eigenvectors have shape {tuple(vectors.shape)}, "
                    f"expected ({self.num_params}, {self.k}); same model and k needed to resume"
                )
        self._vectors = vectors
        self._eigen_step = sub["eigen_step"]
        self._last_refresh_step = sub["last_refresh_step"]
        self._last_refresh_epoch = sub["last_refresh_epoch"]
        self._num_refreshes = int(sub["num_refreshes"])
        self._t = int(sub["t"])
        self._generator.set_state(sub["generator"])
        self._prepared_for = None


class NudgedSGD(_SubspaceSGD):
    """Nudged-SGD: θ ← θ − η [(I − P_k) g + γ P_k g] (paper A, §5).

    γ < 1 steers towards sharper regions, γ > 1 towards flatter ones; γ = 1 is exactly
    ``torch.optim.SGD`` (the same arithmetic, bit for bit).

    Args:
        params: parameters or parameter groups (per-group lr / momentum / weight_decay).
        lr: η.
        gamma: γ >= 0, the step multiplier inside the top-k subspace.
        k: subspace dimension (paper A: 5).
        refresh_every: steps between refreshes of the directions, or "epoch" (paper A's code:
            once per epoch; needs ``prepare(epoch=...)``, which the Trainer calls).
        burn_in: plain SGD for the first ``burn_in`` steps (no directions needed yet).
        momentum, weight_decay, nesterov: as in ``torch.optim.SGD`` (no dampening).
        nudge: "gradient" (rescale the gradient) or "update" (rescale the applied velocity).
        subspace: "top" (eigenvectors) or "random" (k random orthonormal directions: the control).
        eigen_fn: called at a refresh when no newer shared eigenvectors exist; returns V (n × ≥k),
            ``(values, V)`` or a Lanczos result.
        seed: seeds the random subspace.

    Example:
        >>> opt = NudgedSGD(model.parameters(), lr=0.01, gamma=0.1, k=5)  # doctest: +SKIP
        >>> opt.set_eigenvectors(lanczos(op, k=5).eigenvectors)           # doctest: +SKIP
        >>> loss.backward(); opt.step()                                   # doctest: +SKIP
    """

    _who = "NudgedSGD"

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float,
        gamma: float,
        k: int = 5,
        refresh_every: int | str = "epoch",
        burn_in: int = 0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        nudge: str = "gradient",
        subspace: str = "top",
        eigen_fn: Callable[[], Any] | None = None,
        seed: int = 0,
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
            k=k,
            refresh_every=refresh_every,
            burn_in=burn_in,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            nudge=nudge,
            subspace=subspace,
            eigen_fn=eigen_fn,
            seed=seed,
        )


class ProjectedSGD(_SubspaceSGD):
    """SGD restricted to, or kept out of, the top-k subspace (paper A, §4).

    ``mode="top_only"``: θ ← θ − η P_k g (finds flatter regions);
    ``mode="remove_top"``: θ ← θ − η (I − P_k) g (finds sharper regions).
    Other arguments as :class:`NudgedSGD` (k defaults to 1, as in paper A).

    Example:
        >>> opt = ProjectedSGD(model.parameters(), lr=0.01, mode="remove_top")  # doctest: +SKIP
    """

    _who = "ProjectedSGD"

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
        lr: float,
        mode: str = "top_only",
        k: int = 1,
        refresh_every: int | str = "epoch",
        burn_in: int = 0,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        nudge: str = "gradient",
        subspace: str = "top",
        eigen_fn: Callable[[], Any] | None = None,
        seed: int = 0,
    ) -> None:
        _check(mode in MODES, f"ProjectedSGD: mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        a, b = (0.0, 1.0) if mode == "top_only" else (1.0, 0.0)
        super().__init__(
            params,
            lr,
            coef_perp=a,
            coef_top=b,
            k=k,
            refresh_every=refresh_every,
            burn_in=burn_in,
            momentum=momentum,
            weight_decay=weight_decay,
            nesterov=nesterov,
            nudge=nudge,
            subspace=subspace,
            eigen_fn=eigen_fn,
            seed=seed,
        )


# ---------------------------------------------------------------------- registry factories
def hessian_eigen_fn(
    ctx: OptimContext,
    k: int,
    *,
    bn_mode: str = "eval",
    batch_size: int | None = None,
    tol: float = 1e-4,
    max_iter: int | None = None,
    seed: int = 0,
) -> Callable[[], torch.Tensor]:
    """An ``eigen_fn`` computing the top-k Hessian eigenvectors of the run's probe set by Lanczos.

    Evaluated at the model's current parameters (θ_t when called from ``prepare``). The Lanczos
    start vector is seeded by ``seed`` only, so a resumed run recomputes the same vectors.

    Args:
        ctx: gives the model, loss function and data (its ``probe`` split when it has one).
        k: number of eigenvectors.
        bn_mode: BatchNorm mode of the Hessian ("train", "eval", "ghost").
        batch_size: batch size of the Hessian-vector products; the ghost-batch size for "ghost".
        tol, max_iter, seed: passed to ``sgdscope.curvature.lanczos``.
    """
    _check(
        bn_mode in BN_MODES,
        f"optim.options.bn_mode={bn_mode!r}: must be one of {BN_MODES}",
    )
    _check(
        bn_mode != "ghost" or batch_size is not None,
        "optim.options.bn_mode=ghost needs optim.options.eigen_batch_size (the ghost-batch size)",
    )
    if ctx.model is None or ctx.loss_fn is None or ctx.data is None:
        raise ConfigError(
            "optim.options.eigen_source=own needs the run's model, loss and data in the "
            "OptimContext (the Trainer passes them); in your own loop pass eigen_fn= instead"
        )
    model, loss_fn = ctx.model, ctx.loss_fn
    data = getattr(ctx.data, "probe", ctx.data)

    def eigen_fn() -> torch.Tensor:
        from ..curvature import HessianOperator, lanczos  # lazy: optional until needed

        op = HessianOperator(
            model,
            loss_fn,
            data,
            bn_mode=bn_mode,
            ghost_batch_size=batch_size if bn_mode == "ghost" else None,
            batch_size=batch_size,
        )
        kwargs: dict[str, Any] = {"tol": tol, "seed": seed}
        if max_iter is not None:
            kwargs["max_iter"] = max_iter
        return lanczos(op, k, **kwargs).eigenvectors

    return eigen_fn


def _eigen_fn_for(
    ctx: OptimContext,
    name: str,
    eigen_source: str,
    subspace: str,
    k: int,
    bn_mode: str,
    batch_size: int | None,
    lanczos_tol: float,
    lanczos_max_iter: int | None,
) -> Callable[[], torch.Tensor] | None:
    _check(
        eigen_source in EIGEN_SOURCES,
        f"optim.options.eigen_source={eigen_source!r} for {name!r}: must be one of "
        f"{EIGEN_SOURCES} ('probe': from a sharpness probe; 'own': Lanczos in the optimizer; "
        "'auto': the probe's when newer, else own)",
    )
    if subspace == "random" or eigen_source == "probe":
        return None
    if eigen_source == "auto" and (ctx.model is None or ctx.data is None or ctx.loss_fn is None):
        return None
    return hessian_eigen_fn(
        ctx,
        k,
        bn_mode=bn_mode,
        batch_size=batch_size,
        tol=lanczos_tol,
        max_iter=lanczos_max_iter,
        seed=ctx.seed,
    )


@register_optimizer("nsgd", needs_hvp=True)
def _nsgd(
    params: list[nn.Parameter],
    ctx: OptimContext,
    gamma: float | None = None,
    k: int = 5,
    refresh_every: int | str = "epoch",
    burn_in: int = 0,
    nudge: str = "gradient",
    subspace: str = "top",
    eigen_source: str = "auto",
    bn_mode: str = "eval",
    eigen_batch_size: int | None = None,
    lanczos_tol: float = 1e-4,
    lanczos_max_iter: int | None = None,
) -> NudgedSGD:
    """Nudged-SGD from a config (lr, momentum, weight decay, nesterov: the ``optim`` section).

    ``gamma`` is required.
    Options (``optim.options``): the constructor's ``k``, ``refresh_every``, ``burn_in``,
    ``nudge``, ``subspace``; ``eigen_source`` ("auto": the sharpness probe's eigenvectors when
    newer, else Lanczos here; "probe": only the probe's; "own": only Lanczos here, on the probe
    set); ``bn_mode``, ``eigen_batch_size``, ``lanczos_tol``, ``lanczos_max_iter`` for that
    Lanczos (seeded by the run's seed).
    """
    if gamma is None:
        raise ConfigError(
            "optim.options.gamma is required for 'nsgd' (γ < 1 steers sharper, γ > 1 flatter, "
            "γ = 1 is plain SGD), e.g. optim.options.gamma=0.1"
        )
    fn = _eigen_fn_for(
        ctx,
        "nsgd",
        eigen_source,
        subspace,
        k,
        bn_mode,
        eigen_batch_size,
        lanczos_tol,
        lanczos_max_iter,
    )
    return NudgedSGD(
        params,
        lr=ctx.lr,
        gamma=gamma,
        k=k,
        refresh_every=refresh_every,
        burn_in=burn_in,
        momentum=ctx.momentum,
        weight_decay=ctx.weight_decay,
        nesterov=ctx.nesterov,
        nudge=nudge,
        subspace=subspace,
        eigen_fn=fn,
        seed=ctx.seed,
    )


@register_optimizer("projected_sgd", needs_hvp=True)
def _projected_sgd(
    params: list[nn.Parameter],
    ctx: OptimContext,
    mode: str = "top_only",
    k: int = 1,
    refresh_every: int | str = "epoch",
    burn_in: int = 0,
    nudge: str = "gradient",
    subspace: str = "top",
    eigen_source: str = "auto",
    bn_mode: str = "eval",
    eigen_batch_size: int | None = None,
    lanczos_tol: float = 1e-4,
    lanczos_max_iter: int | None = None,
) -> ProjectedSGD:
    """Top-only / remove-top SGD from a config (``mode``: "top_only" or "remove_top").

    Options (``optim.options``): the constructor's ``k``, ``refresh_every``, ``burn_in``,
    ``nudge``, ``subspace``; ``eigen_source`` ("auto": the sharpness probe's eigenvectors when
    newer, else Lanczos here; "probe": only the probe's; "own": only Lanczos here, on the probe
    set); ``bn_mode``, ``eigen_batch_size``, ``lanczos_tol``, ``lanczos_max_iter`` for that
    Lanczos (seeded by the run's seed).
    """
    fn = _eigen_fn_for(
        ctx,
        "projected_sgd",
        eigen_source,
        subspace,
        k,
        bn_mode,
        eigen_batch_size,
        lanczos_tol,
        lanczos_max_iter,
    )
    return ProjectedSGD(
        params,
        lr=ctx.lr,
        mode=mode,
        k=k,
        refresh_every=refresh_every,
        burn_in=burn_in,
        momentum=ctx.momentum,
        weight_decay=ctx.weight_decay,
        nesterov=ctx.nesterov,
        nudge=nudge,
        subspace=subspace,
        eigen_fn=fn,
        seed=ctx.seed,
    )
