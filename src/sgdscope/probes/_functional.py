"""Functional helpers the probes share: flat parameter vectors in and out of a model, gradients and
losses at a flat θ without touching the model, cosines, per-sample gradients.

The model holds θ_{t+1} while probes measure quantities at θ_t, so every helper here evaluates at
a given flat vector (``torch.func.functional_call`` or :func:`sgdscope.landscape.evaluate_points`)
and leaves the model exactly as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._defaults import DEFAULT_BN_MODE
from .._distributed import AUTO
from .._state import has_batchnorm, preserved_state, set_bn_mode
from ..errors import ConfigError, InvalidArgumentError
from ..landscape import evaluate_points


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
        raise InvalidArgumentError(
            f"flat parameter vector has {theta.numel()} entries but the model has {offset} "
            "trainable parameters; build it with sgdscope.probes.flat_params(model)"
        )
    return out


def grad_at(
    model: nn.Module,
    loss_fn: Any,
    data: Any,
    theta: torch.Tensor,
    *,
    bn_mode: str = DEFAULT_BN_MODE,
    batch_size: int | None = None,
    group: Any = AUTO,
) -> torch.Tensor:
    """Gradient of the loss over ``data`` at flat parameters ``theta`` (n,), shape (n,).

    Any data the curvature layer accepts (``(x, y)``, dict or tuple inputs, Hugging Face batches,
    a :class:`~sgdscope.LossClosure`), with its reduction: the gradient of the mean over all loss
    terms, or of the total for a ``"sum"`` loss — the very function whose Hessian
    :class:`~sgdscope.curvature.HessianOperator` gives. The model is left unchanged. Under
    ``torch.distributed`` (``group``, see :mod:`sgdscope._distributed`) ``data`` is this rank's
    shard and the gradient is over every rank's data.
    """
    from ..curvature import HessianOperator

    ghost = batch_size if bn_mode == "ghost" else None
    op = HessianOperator(
        model,
        loss_fn,
        data,
        bn_mode=bn_mode,
        ghost_batch_size=ghost,
        theta=theta,
        batch_size=batch_size,
        memory_budget=0,
        group=group,
    )
    return op.gradient().to(dtype=theta.dtype)


def cosines(v: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """cos(v, basis[:, i]) for each column, in float64, shape (k,); NaN when v = 0."""
    v64 = v.double()
    b64 = basis.double()
    norm = v64.norm()
    if norm == 0:
        return torch.full((b64.shape[1],), math.nan, dtype=torch.float64, device=v.device)
    return (b64.T @ v64) / (norm * b64.norm(dim=0))


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


def losses_along(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    theta: torch.Tensor,
    steps: torch.Tensor,
    coefs: Sequence[float],
    *,
    bn_mode: str = DEFAULT_BN_MODE,
    batch_size: int | None = None,
    with_base: bool = False,
) -> tuple[float | None, np.ndarray]:
    """Mean loss over ``data`` at θ + c·u for every row u of ``steps`` (S × n) and c in ``coefs``.

    The points are made one at a time in one reused buffer (memory O(n), not O(S·A·n)) and
    evaluated by :func:`sgdscope.landscape.evaluate_points`; the model is left unchanged.

    Returns:
        ``(L(θ) if with_base else None, losses)`` with losses float64 of shape (S, len(coefs)).
    """
    buf = torch.empty_like(theta)

    def points() -> Iterator[torch.Tensor]:
        if with_base:
            yield theta
        for u in steps:
            for c in coefs:
                yield torch.add(theta, u, alpha=float(c), out=buf)

    losses, _ = evaluate_points(
        model, loss_fn, data, points(), bn_mode=bn_mode, batch_size=batch_size
    )
    values = losses.numpy()
    base = float(values[0]) if with_base else None
    return base, values[int(with_base) :].reshape(steps.shape[0], len(coefs))


def step_projections(
    grad: torch.Tensor, vectors: torch.Tensor, lr: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SGD step's components along each column of ``vectors`` (n × k).

    Returns ``(u, coef)``: u (k × n) with u_i = −η ⟨g, e_i⟩ e_i, and coef (k,) = ⟨g, e_i⟩.
    """
    coef = vectors.T @ grad
    return (-lr * coef)[:, None] * vectors.T, coef


def per_sample_grads(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    theta: torch.Tensor,
    *,
    bn_mode: str = DEFAULT_BN_MODE,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """∇ℓ_i(θ) for every sample of the batch (x, y), shape (N, n), via ``torch.func.vmap(grad)``.

    ℓ_i is ``loss_fn`` on the one-sample batch i. BatchNorm in train mode is refused (a batch of
    one has no batch statistics). The model is left unchanged.
    """
    if bn_mode != "eval" and has_batchnorm(model):
        raise ConfigError(
            "per-sample gradients of a BatchNorm model need bn_mode='eval' (running statistics): "
            f"got bn_mode={bn_mode!r}; set eigenbasis.bn_mode=eval"
        )
    with torch.no_grad(), preserved_state(model):
        set_bn_mode(model, bn_mode)
        buffers = {k: b.detach() for k, b in model.named_buffers()}

        def loss_one(th: torch.Tensor, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            out = torch.func.functional_call(
                model, (unflatten(model, th), buffers), (xi.unsqueeze(0),)
            )
            return loss_fn(out, yi.unsqueeze(0))

        fn = torch.func.vmap(
            torch.func.grad(loss_one),
            in_dims=(None, 0, 0),
            randomness="error",
            chunk_size=chunk_size,
        )
        with torch.enable_grad():
            return fn(theta.detach(), x, y)
