"""Gradient–eigenvector alignment (paper A): |cos(g_t, e_i)| for the top Hessian eigenvectors.

This module also holds what the paper-A probes share: :class:`EigenProbe`, the base class that
fetches the top-k eigenvectors (from the SharpnessProbe through ``ctx.shared``, or computed by the
probe itself), and the functional helpers that evaluate a model at a flat parameter vector θ
without touching the model (which holds θ_{t+1} while probes measure).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .._batching import batch_len, iter_batches
from .._state import BN_MODES, preserved_state, set_bn_mode
from ..errors import ConfigError
from ._registry import register_probe
from .base import Measurement, Probe, ProbeContext, When

EIGEN_SOURCES = ("shared", "own")


# --------------------------------------------------------------------------- functional helpers
def unflatten(model: nn.Module, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of the flat vector ``theta`` (n,) shaped like the trainable parameters, by name.

    The order is that of :func:`~sgdscope.probes.flat_params` (``model.named_parameters()``,
    trainable only), so a vector built by ``flat_params`` round-trips.
    """
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        n = p.numel()
        out[name] = theta[offset : offset + n].view_as(p)
        offset += n
    if offset != theta.numel():
        raise ValueError(
            f"flat parameter vector has {theta.numel()} entries but the model has {offset} "
            "trainable parameters; build it with sgdscope.probes.flat_params(model)"
        )
    return out


def grad_at(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    theta: torch.Tensor,
    *,
    bn_mode: str = "eval",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Gradient of the mean loss over ``data`` at flat parameters ``theta`` (n,), shape (n,).

    The mean is weighted by batch size (so it does not depend on how data is batched, except for
    BatchNorm in train mode). The model's parameters, buffers, flags and RNG are left unchanged.
    """
    total = torch.zeros_like(theta)
    count = 0
    with preserved_state(model):
        set_bn_mode(model, bn_mode)
        buffers = dict(model.named_buffers())
        for x, y in iter_batches(data, batch_size):
            th = theta.detach().clone().requires_grad_(True)
            out = torch.func.functional_call(model, (unflatten(model, th), buffers), (x,))
            loss = loss_fn(out, y)
            (g,) = torch.autograd.grad(loss, th)
            m = batch_len(y)
            total += g * m
            count += m
    if count == 0:
        raise ValueError("no data to evaluate the gradient on (empty data)")
    return total / count


def probe_data(ctx: ProbeContext, who: str) -> Any:
    """The run's probe set (``ctx.data.probe``), or ``ctx.data`` itself when it is plain data."""
    if ctx.data is None:
        raise ConfigError(
            f"probe {who!r} evaluates losses on the probe set, but the context has no data: "
            "pass ProbeContext(data=bundle) with a DataBundle (or an (x, y) pair)"
        )
    return getattr(ctx.data, "probe", ctx.data)


def check_bn_mode(bn_mode: str, who: str) -> None:
    if bn_mode not in BN_MODES:
        raise ConfigError(f"probes[{who}].options.bn_mode={bn_mode!r}: must be one of {BN_MODES}")


def cosines(v: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """cos(v, basis[:, i]) for each column, in float64, shape (k,); NaN when v = 0."""
    v64 = v.double()
    b64 = basis.double()
    norm = v64.norm()
    if norm == 0:
        return torch.full((b64.shape[1],), math.nan, dtype=torch.float64, device=v.device)
    return (b64.T @ v64) / (norm * b64.norm(dim=0))


# --------------------------------------------------------------------------- base class
class EigenProbe(Probe):
    """A probe that needs the top-k Hessian eigenvectors e_1…e_k at θ_t.

    Args:
        every: when the probe is due.
        eigen_source: ``"shared"`` reads ``ctx.shared["eigenvectors"]`` (n × k), kept by a
            ``sharpness`` probe; ``"own"`` computes them here with ``sgdscope.curvature``
            (Lanczos on the probe set at θ_t), refreshed every ``refresh_every`` steps.
        refresh_every: steps between own eigen-computations (``eigen_source="own"`` only).
        bn_mode: BatchNorm mode of every loss / curvature evaluation ("train", "eval", "ghost").
        batch_size: batch size of loss / gradient evaluations on the probe set (None: as large as
            memory allows); the ghost-batch size with ``bn_mode="ghost"`` (required then).
        lanczos_tol: Lanczos tolerance for own eigenvectors.
        seed: seeds the probe's random directions (and its Lanczos start vector).
    """

    def __init__(
        self,
        every: When | None = None,
        *,
        eigen_source: str = "shared",
        refresh_every: int = 1,
        bn_mode: str = "eval",
        batch_size: int | None = None,
        lanczos_tol: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__(every)
        if eigen_source not in EIGEN_SOURCES:
            raise ConfigError(
                f"probes[{self.name}].options.eigen_source={eigen_source!r}: must be one of "
                f"{EIGEN_SOURCES} ('shared' needs a sharpness probe; 'own' computes them here)"
            )
        if int(refresh_every) < 1:
            raise ConfigError(
                f"probes[{self.name}].options.refresh_every={refresh_every}: must be >= 1 step"
            )
        check_bn_mode(bn_mode, self.name)
        if batch_size is not None and int(batch_size) < 1:
            raise ConfigError(f"probes[{self.name}].options.batch_size={batch_size}: must be >= 1")
        if bn_mode == "ghost" and batch_size is None:
            raise ConfigError(
                f"probes[{self.name}].options.bn_mode=ghost needs batch_size (the ghost-batch "
                "size, e.g. the training batch size)"
            )
        if not lanczos_tol > 0:
            raise ConfigError(f"probes[{self.name}].options.lanczos_tol must be > 0")
        self.eigen_source = eigen_source
        self.refresh_every = int(refresh_every)
        self.bn_mode = bn_mode
        self.batch_size = None if batch_size is None else int(batch_size)
        self.lanczos_tol = float(lanczos_tol)
        self.seed = int(seed)
        self._gen = torch.Generator().manual_seed(self.seed)
        self._own_vectors: torch.Tensor | None = None
        self._own_step: int | None = None

    # ---- eigenvectors
    def eigenvectors(self, ctx: ProbeContext, k: int) -> tuple[torch.Tensor, int | None]:
        """The top ``k`` eigenvectors (n × k, θ's device and dtype) and the step they are from."""
        assert ctx.theta is not None, "ProbeContext.theta (θ_t) is required"
        if self.eigen_source == "own":
            vectors, step = self._own(ctx, k)
        else:
            vectors = ctx.shared.get("eigenvectors")
            step = ctx.shared.get("eigen_step")
            if vectors is None:
                raise ConfigError(
                    f"probe {self.name!r} needs the top Hessian eigenvectors, but none are in "
                    "ctx.shared['eigenvectors']: add a `sharpness` probe due at (or before) this "
                    f"probe's steps, e.g. probes: [{{name: sharpness, options: {{k: {k}}}}}, ...], "
                    f"or set probes[{self.name}].options.eigen_source=own to compute them here"
                )
        n = ctx.theta.numel()
        if vectors.ndim != 2 or vectors.shape[0] != n:
            raise ConfigError(
                f"probe {self.name!r}: eigenvectors must be an (n, k) tensor with n={n} "
                f"parameters, got shape {tuple(vectors.shape)}"
            )
        if vectors.shape[1] < k:
            raise ConfigError(
                f"probe {self.name!r} needs the top {k} eigenvectors but only "
                f"{vectors.shape[1]} are available: raise the sharpness probe's k to >= {k} "
                f"(or lower this probe's k)"
            )
        return vectors[:, :k].to(device=ctx.theta.device, dtype=ctx.theta.dtype), step

    def _own(self, ctx: ProbeContext, k: int) -> tuple[torch.Tensor, int]:
        fresh = (
            self._own_vectors is None
            or self._own_vectors.shape[1] < k
            or self._own_step is None
            or ctx.step - self._own_step >= self.refresh_every
        )
        if fresh:
            from ..curvature import HessianOperator, lanczos  # lazy: curvature is optional here

            op = HessianOperator(
                ctx.model,
                ctx.loss_fn,
                probe_data(ctx, self.name),
                bn_mode=self.bn_mode,
                ghost_batch_size=self.batch_size if self.bn_mode == "ghost" else None,
                batch_size=self.batch_size,
                theta=ctx.theta,
            )
            res = lanczos(op, k, tol=self.lanczos_tol, seed=self.seed)
            self._own_vectors = res.eigenvectors.detach()
            self._own_step = ctx.step
        assert self._own_vectors is not None and self._own_step is not None
        return self._own_vectors, self._own_step

    # ---- random directions
    def random_unit(self, like: torch.Tensor) -> torch.Tensor:
        """A fresh random unit vector shaped like ``like`` (Gaussian direction, CPU-seeded)."""
        r = torch.randn(like.numel(), generator=self._gen, dtype=torch.float64)
        r = r / r.norm()
        return r.to(device=like.device, dtype=like.dtype)

    # ---- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self._gen.get_state(),
            "own_vectors": None if self._own_vectors is None else self._own_vectors.cpu(),
            "own_step": self._own_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("generator") is not None:
            self._gen.set_state(state["generator"])
        self._own_vectors = state.get("own_vectors")
        self._own_step = state.get("own_step")


def as_float_list(values: Any, who: str, option: str) -> list[float]:
    """Validate a list of finite numbers from a config option."""
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(
            f"probes[{who}].options.{option}: expected a list of numbers, got {values!r}"
        ) from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ConfigError(
            f"probes[{who}].options.{option}: expected a non-empty list of finite numbers, "
            f"got {values!r}"
        )
    return out


# --------------------------------------------------------------------------- the probe
@register_probe("alignment")
class AlignmentProbe(EigenProbe):
    """Alignment of the mini-batch gradient with the top Hessian eigenvectors (paper A, Fig. 5).

    At step t stores ``alignment_i`` = |⟨g_t, e_i⟩| / ‖g_t‖ for i = 1…k, their mean over the top
    min(k, 5) as ``alignment_mean5``, the same cosine for a fresh random Gaussian direction as
    ``alignment_random`` (≈ sqrt(2/(π n)) for n parameters), the array ``alignment`` (k,), and
    ``eigen_age`` = t − (step the eigenvectors were computed at). With ``full_batch=True`` also
    ``alignment_full_batch`` = cos(g_t, ∇L_train(θ_t)) (signed).

    Args:
        k: number of eigenvectors (the sharpness probe must share at least k).
        random_baseline: also report the random-direction cosine.
        full_batch: also report the cosine with the full-batch training gradient at θ_t (costs a
            pass over the training set).
        full_batch_split: which split the full-batch gradient is taken over ("train" or "probe").
        eigen_source, refresh_every, bn_mode, batch_size, lanczos_tol, seed: see
            :class:`EigenProbe`.

    Example:
        >>> probe = AlignmentProbe(k=5)            # with a SharpnessProbe(k>=5) in the same run
        >>> m = probe.measure(ctx)                  # doctest: +SKIP
        >>> m.scalars["alignment_mean5"]            # doctest: +SKIP
    """

    name = "alignment"

    def __init__(
        self,
        every: When | None = None,
        *,
        k: int = 5,
        random_baseline: bool = True,
        full_batch: bool = False,
        full_batch_split: str = "train",
        eigen_source: str = "shared",
        refresh_every: int = 1,
        bn_mode: str = "eval",
        batch_size: int | None = None,
        lanczos_tol: float = 1e-4,
        seed: int = 0,
    ) -> None:
        super().__init__(
            every,
            eigen_source=eigen_source,
            refresh_every=refresh_every,
            bn_mode=bn_mode,
            batch_size=batch_size,
            lanczos_tol=lanczos_tol,
            seed=seed,
        )
        if int(k) < 1:
            raise ConfigError(f"probes[alignment].options.k={k}: must be >= 1")
        if full_batch_split not in ("train", "probe"):
            raise ConfigError(
                f"probes[alignment].options.full_batch_split={full_batch_split!r}: "
                "must be 'train' or 'probe'"
            )
        self.k = int(k)
        self.random_baseline = bool(random_baseline)
        self.full_batch = bool(full_batch)
        self.full_batch_split = full_batch_split

    def measure(self, ctx: ProbeContext) -> Measurement:
        if ctx.grad is None or ctx.theta is None:
            raise ValueError("AlignmentProbe needs ctx.grad (g_t) and ctx.theta (θ_t)")
        vectors, eigen_step = self.eigenvectors(ctx, self.k)
        cos = cosines(ctx.grad, vectors).abs().cpu().numpy()
        m = Measurement()
        for i, c in enumerate(cos, start=1):
            m.scalars[f"alignment_{i}"] = float(c)
        m.scalars["alignment_mean5"] = float(np.mean(cos[: min(5, self.k)]))
        m.arrays["alignment"] = cos
        if eigen_step is not None:
            m.scalars["eigen_age"] = float(ctx.step - int(eigen_step))
        if self.random_baseline:
            r = self.random_unit(ctx.grad)
            m.scalars["alignment_random"] = float(cosines(ctx.grad, r[:, None]).abs()[0])
        if self.full_batch:
            if ctx.data is None:
                raise ConfigError(
                    "probes[alignment].options.full_batch=true needs the run's data in the "
                    "context (ProbeContext(data=bundle))"
                )
            split = getattr(ctx.data, self.full_batch_split, None)
            if split is None:  # plain (x, y) data: its gradient is the full-batch one
                split = ctx.data
            full = grad_at(
                ctx.model,
                ctx.loss_fn,
                split,
                ctx.theta,
                bn_mode=self.bn_mode,
                batch_size=self.batch_size,
            )
            m.scalars["alignment_full_batch"] = float(cosines(ctx.grad, full[:, None])[0])
        return m
