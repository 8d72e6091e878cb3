"""Batch sharpness (Andreyev & Beneventano 2024, "Edge of stochastic stability").

The directional curvature of a mini-batch loss along its own gradient, averaged over mini-batches
of the training batch size S:

    BS(θ) = E_B[ g_Bᵀ H_B g_B / ‖g_B‖² ],   g_B = ∇L_B(θ),  H_B = ∇²L_B(θ),

L_B the mean loss of batch B. Their finding: under mini-batch SGD with step η, BS rises to and
hovers at 2/η ("the edge of stochastic stability") while λ_max of the full Hessian stays below it
(the further below, the smaller S); for S = N (GD) BS is the curvature along the full gradient.

A second-order expansion of L_B along SGD's own step on B, −η g_B, gives the change of that batch's
loss that BS predicts:

    L_B(θ − η g_B) − L_B(θ) ≈ −η ‖g_B‖² + ½ η² g_Bᵀ H_B g_B = −η ‖g_B‖² (1 − η q_B / 2),

q_B = g_Bᵀ H_B g_B / ‖g_B‖²: the step lowers its own batch's loss while η q_B < 2, and raises it
beyond. :func:`batch_sharpness` computes BS with its standard error over the batches, the predicted
change and (optionally) the actual one; :class:`BatchSharpnessProbe` samples the batches along
training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._batching import batch_len, is_pair
from .._defaults import DEFAULT_BN_MODE
from ..curvature import HessianOperator
from ..errors import ConfigError, InvalidArgumentError
from ..landscape import loss_at
from ._registry import register_probe
from ._stability import threshold_at
from .base import Measurement, Probe, ProbeContext, When

__all__ = ["BatchSharpness", "BatchSharpnessProbe", "batch_sharpness", "sample_batches"]

BN_MODES = ("train", "eval")


@dataclass(frozen=True)
class BatchSharpness:
    """Batch sharpness over a set of mini-batches, with what it predicts for one SGD step.

    Attributes:
        value: BS, the mean of q_B = g_Bᵀ H_B g_B / ‖g_B‖² over the batches (loss / param²).
        stderr: the standard error of that mean (sample std / √n; 0 when every batch is the
            whole data, NaN for a single sampled batch).
        num_batches: n, the batches with a non-zero gradient (q_B is undefined for g_B = 0).
        per_batch: q_B of each of them, shape (n,).
        predicted_change: mean over the batches of −η ‖g_B‖² + ½ η² g_Bᵀ H_B g_B, the change of
            L_B the step −η g_B makes to second order (nats; NaN without ``lr``).
        actual_change: mean of L_B(θ − η g_B) − L_B(θ) (NaN unless asked for).
        num_matvecs: Hessian-vector products spent (one per batch).
    """

    value: float
    stderr: float
    num_batches: int
    per_batch: np.ndarray
    predicted_change: float = math.nan
    actual_change: float = math.nan
    num_matvecs: int = 0


def batch_sharpness(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[Any, torch.Tensor]],
    *,
    theta: torch.Tensor | None = None,
    lr: float | None = None,
    bn_mode: str = DEFAULT_BN_MODE,
    actual: bool = False,
    exact: bool = False,
) -> BatchSharpness:
    """Batch sharpness E_B[g_Bᵀ H_B g_B / ‖g_B‖²] over the given mini-batches.

    Each batch's gradient and Hessian-vector product come from a
    :class:`~sgdscope.curvature.HessianOperator` on that batch alone (its mean loss), at ``theta``;
    the model is left unchanged.

    Args:
        model: the network.
        loss_fn: ``loss_fn(output, target)`` → the batch's mean loss.
        batches: the mini-batches B, ``(x, y)`` pairs.
        theta: flat parameters to measure at (default: the model's).
        lr: η; with it, the predicted (and, with ``actual``, the actual) one-step loss change.
        bn_mode: ``"train"`` (batch statistics: the loss SGD sees on B) or ``"eval"``.
        actual: also evaluate L_B(θ − η g_B) − L_B(θ) (two forward passes per batch).
        exact: the batches are all of the data (GD): the mean has no sampling error (stderr 0).

    Returns:
        A :class:`BatchSharpness`.
    """
    if bn_mode not in BN_MODES:
        raise InvalidArgumentError(
            f"bn_mode: expected one of {', '.join(BN_MODES)} for a mini-batch loss, received "
            f"{bn_mode!r}"
        )
    if actual and lr is None:
        raise InvalidArgumentError("actual=True needs lr (the step is θ − lr·g_B)")
    ratios: list[float] = []
    predicted: list[float] = []
    changes: list[float] = []
    matvecs = 0
    for batch in batches:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise InvalidArgumentError(
                f"batches: expected (x, y) pairs, received an item of type {type(batch).__name__}"
            )
        x, y = batch
        op = HessianOperator(model, loss_fn, (x, y), bn_mode=bn_mode, theta=theta)
        g = op.gradient()
        gg = float(g.double() @ g.double())
        if gg == 0.0 or not math.isfinite(gg):
            op.release()
            continue
        hg = op @ g
        op.release()
        matvecs += 1
        ghg = float(g.double() @ hg.double())
        ratios.append(ghg / gg)
        if lr is not None:
            predicted.append(-lr * gg + 0.5 * lr * lr * ghg)
            if actual:
                base = theta if theta is not None else _flat(model)
                points = torch.stack([base.detach(), base.detach() - lr * g.to(base.dtype)])
                losses = loss_at(model, loss_fn, (x, y), points, bn_mode=bn_mode)
                changes.append(float(losses[1]) - float(losses[0]))
    q = np.asarray(ratios, dtype=np.float64)
    n = len(q)
    if n == 0:
        value = stderr = math.nan
    else:
        value = float(q.mean())
        stderr = 0.0 if exact else (float(q.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan)
    return BatchSharpness(
        value=value,
        stderr=stderr,
        num_batches=n,
        per_batch=q,
        predicted_change=float(np.mean(predicted)) if predicted else math.nan,
        actual_change=float(np.mean(changes)) if changes else math.nan,
        num_matvecs=matvecs,
    )


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def sample_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    num_batches: int,
    generator: torch.Generator,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``num_batches`` mini-batches of ``batch_size`` distinct examples each, drawn
    independently and uniformly from ``(x, y)`` (as SGD's shuffled batches are, marginally)."""
    n = len(y)
    out = []
    for _ in range(num_batches):
        idx = torch.randperm(n, generator=generator)[:batch_size].to(y.device)
        out.append((x[idx], y[idx]))
    return out


def _train_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The training examples as ``(x, y)`` tensors (a bundle's train split, a split, a pair)."""
    if hasattr(data, "train") and hasattr(data, "probe"):
        data = data.train
    if hasattr(data, "tensors") and callable(data.tensors):
        return data.tensors()
    if is_pair(data):
        return data
    raise InvalidArgumentError(
        "batch sharpness samples mini-batches from the training examples: expected a DataBundle, "
        f"a Split or an (x, y) pair of tensors as the data, received {type(data).__name__}"
    )


@register_probe("batch_sharpness", needs_hvp=True)
class BatchSharpnessProbe(Probe):
    """Batch sharpness at θ_t over random mini-batches of the training batch size.

    At each due step t it draws ``num_batches`` batches of S training examples (S: the step's
    own batch size, or ``batch_size``; the whole train set under GD) from a generator seeded with
    ``seed + t`` (a resumed run draws the same ones) and records ``batch_sharpness`` (BS),
    ``batch_sharpness_se`` (its standard error over the batches), ``batch_sharpness_batches``
    (how many), ``batch_sharpness_stability`` = BS / the optimizer's stability threshold (η BS / 2
    for SGD: 1 at the edge of stochastic stability; NaN for a preconditioned optimizer, whose
    threshold bounds another curvature), ``batch_loss_change_predicted`` (the mean change of L_B
    a plain SGD step −η_t g_B makes to second order) and, with ``actual``,
    ``batch_loss_change_actual`` (the same change evaluated).

    Args:
        every: when the probe is due.
        num_batches: mini-batches per measurement (≥ 2, for a standard error).
        batch_size: S (default: the size of the step's mini-batch; all of train under GD).
        bn_mode: ``"train"`` (the batch statistics SGD sees) or ``"eval"``.
        actual: also evaluate the actual one-step change of each batch's loss.
        seed: seeds the batches (the step is added).

    Example:
        >>> probe = BatchSharpnessProbe(When(every=10), num_batches=16)
    """

    name = "batch_sharpness"
    order = -5

    def __init__(
        self,
        every: When | None = None,
        *,
        num_batches: int = 16,
        batch_size: int | None = None,
        bn_mode: str = DEFAULT_BN_MODE,
        actual: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(every)
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 2:
            raise ConfigError(
                "probes[batch_sharpness].options.num_batches: expected an integer >= 2 (a "
                f"standard error needs two batches), got {num_batches!r}"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(
                "probes[batch_sharpness].options.batch_size: expected an integer >= 1 or null "
                f"(the training batch size), got {batch_size!r}"
            )
        if bn_mode not in BN_MODES:
            raise ConfigError(
                f"probes[batch_sharpness].options.bn_mode: expected one of {BN_MODES}, got "
                f"{bn_mode!r}"
            )
        self.num_batches = num_batches
        self.batch_size = batch_size
        self.bn_mode = bn_mode
        self.actual = bool(actual)
        self.seed = int(seed)

    def _size(self, ctx: ProbeContext, n_train: int) -> int:
        if self.batch_size is not None:
            size = self.batch_size
        elif ctx.batch is not None:
            size = batch_len(ctx.batch[1]) if isinstance(ctx.batch, (tuple, list)) else n_train
        else:  # full batch (GD): the Trainer passes no mini-batch
            size = n_train
        if size > n_train:
            raise ConfigError(
                f"probes[batch_sharpness]: batch size {size} is larger than the {n_train} "
                "training examples; set options.batch_size <= the training set"
            )
        return size

    def measure(self, ctx: ProbeContext) -> Measurement:
        ctx.require(self.name, "theta")
        x, y = _train_tensors(ctx.data)
        n_train = len(y)
        size = self._size(ctx, n_train)
        exact = size == n_train
        gen = torch.Generator().manual_seed(self.seed + int(ctx.step))
        lr = float(ctx.lr) if math.isfinite(float(ctx.lr)) else None
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]]
        batches = [(x, y)] if exact else sample_batches(x, y, size, self.num_batches, gen)
        res = batch_sharpness(
            ctx.model,
            ctx.loss_fn,
            batches,
            theta=ctx.theta,
            lr=lr,
            bn_mode=self.bn_mode,
            actual=self.actual and lr is not None,
            exact=exact,
        )
        threshold, precond = threshold_at(ctx)
        stability = res.value / threshold if threshold > 0 and not precond else math.nan
        scalars = {
            "batch_sharpness": res.value,
            "batch_sharpness_se": res.stderr,
            "batch_sharpness_batches": float(res.num_batches),
            "batch_sharpness_stability": stability,
            "batch_loss_change_predicted": res.predicted_change,
        }
        if self.actual:
            scalars["batch_loss_change_actual"] = res.actual_change
        return Measurement(scalars)
