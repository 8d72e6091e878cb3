"""Gradient descent with isotropic Gaussian noise (paper B §4), and the noise scale it uses.

θ ← θ − η (∇L_train(θ) + ξ),  ξ ~ N(0, σ² I), drawn from the optimizer's own seeded generator
(its state is checkpointed, so a resumed run draws the same noise). Paper B sets the noise
standard deviation from the per-sample gradients at initialisation:
σ = c · max_j Var_i[∂ℓ_i/∂θ_j](θ₀), with c = 0.02 in its code (see definitions.md: the
normalisation is a choice, configurable through ``c`` or an explicit ``sigma``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .._batching import is_pair, iter_batches
from .._state import preserved_state, set_bn_mode
from ..errors import ConfigError
from ._registry import OptimContext, register_optimizer
from .transforms import ChainedOptimizer, add_weight_decay, isotropic_noise, scale_by_lr

# Offset between the run seed and the noise seed: the global generator seeded with the run seed
# draws the initial weights, and the noise must not replay that stream.
NOISE_SEED_OFFSET = 1_000_003

# Bytes the float64 per-sample gradients of one chunk may take when chunk_size is automatic.
_CHUNK_BYTES = 64 * 2**20


class IsotropicNoiseGD(ChainedOptimizer):
    """Full-batch gradient descent plus isotropic Gaussian noise on the gradient.

    The chain weight decay → isotropic noise → scale by −η: for every parameter with a gradient,
    p ← p − lr (g + wd·p + σ ξ) with ξ ~ N(0, I) of p's shape, dtype and device. With σ = 0 no
    noise is drawn and the update is exactly ``torch.optim.SGD(lr, weight_decay)``'s.

    Args:
        params: parameters or parameter groups (groups may set their own ``lr`` / ``sigma``).
        lr: learning rate η (> 0 for training; 0 allowed).
        sigma: noise standard deviation σ ≥ 0, in gradient units.
        seed: seed of the noise generator (one per device, each seeded with it; checkpointed).
        weight_decay: L2 penalty coefficient added to the gradient, as in ``torch.optim.SGD``.

    Example:
        >>> sigma = estimate_noise_sigma(model, loss_fn, bundle.train, c=0.02)
        >>> opt = IsotropicNoiseGD(model.parameters(), lr=0.1, sigma=sigma, seed=0)
        >>> loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        sigma: float,
        seed: int = 0,
        weight_decay: float = 0.0,
    ) -> None:
        for name, value in (("lr", lr), ("sigma", sigma), ("weight_decay", weight_decay)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"optim {name}={value!r}: must be a finite number >= 0")
        self._noise = isotropic_noise(int(seed))
        super().__init__(
            params,
            [add_weight_decay(), self._noise, scale_by_lr()],
            lr=float(lr),
            sigma=float(sigma),
            weight_decay=float(weight_decay),
        )

    @property
    def seed(self) -> int:
        """The noise seed (restored from a checkpoint with the generator states)."""
        return int(self._noise.seed)  # type: ignore[attr-defined]


def per_sample_grad_variance(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Var_i[∂ℓ_i/∂θ_j] for every trainable parameter j, over all samples i of ``data``.

    Per-sample gradients come from ``torch.func.vmap(torch.func.grad(...))`` over chunks of
    samples, merged in float64 (Chan et al.'s pairwise update, so chunking does not change the
    result beyond rounding). The variance is the population one, (1/N) Σ_i (g_ij − ḡ_j)².

    BatchNorm: a single sample has no batch statistics, so the model is evaluated with BatchNorm
    in eval mode (running statistics; at initialisation an affine identity) and dropout off. The
    model's state is unchanged afterwards.

    Args:
        model: the network; θ is its trainable parameters, in ``parameters()`` order.
        loss_fn: ``loss_fn(output, target)`` → mean loss over the batch.
        data: an ``(x, y)`` pair, a Split, a list of batches or a DataLoader.
        chunk_size: samples per vmap call (default: as many as fit in 64 MiB of float64 grads).

    Returns:
        Variances, float64, shape (n,), on the model's device.
    """
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ConfigError("the model has no trainable parameters")
    n = sum(p.numel() for p in params.values())
    device = next(iter(params.values())).device
    if chunk_size is None:
        chunk_size = max(1, min(1024, _CHUNK_BYTES // (8 * n)))
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size!r}: must be a positive integer or None")

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.func.functional_call(model, p, (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    per_sample = torch.func.vmap(torch.func.grad(sample_loss), in_dims=(None, 0, 0))

    count = 0
    mean = torch.zeros(n, dtype=torch.float64, device=device)
    m2 = torch.zeros(n, dtype=torch.float64, device=device)
    source = data.tensors() if hasattr(data, "tensors") and not is_pair(data) else data
    with preserved_state(model):
        set_bn_mode(model, "eval")
        for x, y in iter_batches(source, chunk_size):
            for start in range(0, len(y), chunk_size):
                xb = x[start : start + chunk_size].to(device)
                yb = y[start : start + chunk_size].to(device)
                grads = per_sample(params, xb, yb)
                g = torch.cat([grads[k].reshape(len(yb), -1) for k in names], dim=1).double()
                b = len(yb)
                mean_b = g.mean(0)
                m2_b = (g - mean_b).square_().sum(0)
                total = count + b
                delta = mean_b - mean
                mean += delta * (b / total)
                m2 += m2_b + delta.square() * (count * b / total)
                count = total
    if count == 0:
        raise ConfigError("data: no samples to compute per-sample gradients on")
    return m2 / count


def estimate_noise_sigma(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    c: float = 0.02,
    *,
    chunk_size: int | None = None,
) -> float:
    """Paper B's noise scale σ = c · max_j Var_i[∂ℓ_i/∂θ_j] at the model's current parameters.

    Call it at θ₀ (before training). See :func:`per_sample_grad_variance` for ``data``,
    ``chunk_size`` and the BatchNorm choice. ``c = 0`` returns 0 without computing anything.
    """
    if not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 0):
        raise ConfigError(f"optim.options.c={c!r}: must be a finite number >= 0 (paper B: 0.02)")
    if c == 0:
        return 0.0
    var = per_sample_grad_variance(model, loss_fn, data, chunk_size=chunk_size)
    return float(c) * float(var.max())


@register_optimizer("noisy_gd", full_batch=True)
def _noisy_gd(
    params: list[nn.Parameter], ctx: OptimContext, c: float = 0.02, sigma: float | None = None
) -> IsotropicNoiseGD:
    """GD with isotropic noise. ``sigma`` (if given) overrides the estimate c · max Var at θ₀.

    The noise seed is the run seed plus :data:`NOISE_SEED_OFFSET`. On resume the checkpointed
    ``sigma`` (in the param groups) replaces the one estimated here.
    """
    if ctx.momentum != 0 or ctx.nesterov:
        raise ConfigError(
            f"optim.momentum={ctx.momentum}: noisy_gd is plain gradient descent plus noise; "
            "set optim.momentum=0 (and nesterov=false)"
        )
    if sigma is None:
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 0):
            raise ConfigError(
                f"optim.options.c={c!r}: must be a finite number >= 0 (paper B: 0.02)"
            )
        if c == 0:
            sigma = 0.0
        else:
            if ctx.model is None or ctx.loss_fn is None or ctx.data is None:
                raise ConfigError(
                    "optim noisy_gd: estimating sigma needs the model, loss and data in the "
                    "OptimContext; pass them, or set optim.options.sigma explicitly"
                )
            data = ctx.data.train if hasattr(ctx.data, "train") else ctx.data
            sigma = estimate_noise_sigma(ctx.model, ctx.loss_fn, data, c=c)
    opt = IsotropicNoiseGD(
        params,
        lr=ctx.lr,
        sigma=sigma,
        seed=ctx.seed + NOISE_SEED_OFFSET,
        weight_decay=ctx.weight_decay,
    )
    opt.noise_c = float(c)  # type: ignore[attr-defined]
    return opt
