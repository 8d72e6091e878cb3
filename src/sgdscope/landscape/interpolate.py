"""The loss on the segment between two parameter vectors (paper B: θ_t → θ_{t+1})."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._defaults import DEFAULT_BN_MODE
from .._distributed import AUTO
from ..errors import InvalidArgumentError
from .loss_at import DEFAULT_MAX_BATCH_BYTES, LossFn, _evaluate_points, trainable_parameters


@dataclass(frozen=True)
class InterpolationResult:
    """The loss along θ(α) = (1 − α) θ_a + α θ_b.

    Attributes:
        alphas: the K interpolation coefficients in [0, 1], float64, shape (K,).
        losses: loss over the data at each θ(α) (the mean over all loss terms, or the total for
            a ``"sum"`` loss), float64, shape (K,).
        accuracies: fraction of correct predictions at each θ(α), shape (K,), or None.
        bn_mode: the BatchNorm mode of the evaluation ("train", "eval" or "ghost").
        num_samples: number of loss terms averaged over (examples; tokens for sequences), or None
            when not known in advance (over every rank's data when sharded).
        shards: ranks whose data shards the losses cover (1: this process's data, or data
            replicated on every rank). With ``bn_mode="train"`` and ``shards > 1`` each shard was
            normalised with its own batch statistics.
    """

    alphas: np.ndarray
    losses: np.ndarray
    accuracies: np.ndarray | None = None
    bn_mode: str = DEFAULT_BN_MODE
    num_samples: int | None = None
    shards: int = 1

    def __len__(self) -> int:
        return len(self.alphas)


def interpolate(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    num_points: int = 11,
    *,
    bn_mode: str = DEFAULT_BN_MODE,
    with_accuracy: bool = False,
    compile: bool = False,
    batch_size: int | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    reduction: str | None = None,
    batch_size_fn: Callable[[Any], int] | None = None,
    group: Any = AUTO,
) -> InterpolationResult:
    """Loss (and accuracy) at ``num_points`` evenly spaced points from ``theta_a`` to ``theta_b``.

    The points are θ(α) = (1 − α) θ_a + α θ_b for α = 0, 1/(K−1), …, 1, computed with
    ``torch.lerp`` in the model's dtype into one reused buffer (the end points are exactly
    θ_a and θ_b). Only trainable parameters are interpolated; buffers follow ``bn_mode``. The
    model's state is unchanged afterwards. See :func:`~sgdscope.landscape.loss_at` for ``data``,
    ``loss_fn`` (any batch structure, Hugging Face batches, closures), ``bn_mode``, ``compile``,
    ``batch_size``, ``max_batch_bytes``, ``reduction``, ``batch_size_fn`` and ``group`` (under
    ``torch.distributed``, ``data`` is this rank's shard and the losses are over every rank's data:
    every rank passes the same ``theta_a`` and ``theta_b``).

    Args:
        model: the network.
        loss_fn: ``loss_fn(output, target)`` → loss of the batch; None for the model's own
            ``.loss``; or a :class:`~sgdscope.LossClosure`.
        data: the data the loss is taken over (whole train set in paper B).
        theta_a: flat parameters at α = 0, shape (n,) (e.g. θ_t).
        theta_b: flat parameters at α = 1, shape (n,) (e.g. θ_{t+1}).
        num_points: K ≥ 2 (paper B's code: 10; sgdscope's default 11 puts α = 0.1, 0.2, … on
            the grid).

    Returns:
        An :class:`InterpolationResult` with numpy float64 ``alphas`` and ``losses``.

    Example:
        >>> theta_t = flat_params(model); opt.step(); theta_next = flat_params(model)
        >>> curve = interpolate(model, loss_fn, bundle.train, theta_t, theta_next)
        >>> valley_stats(curve).height
    """
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise InvalidArgumentError(
            f"num_points={num_points!r}: must be an integer >= 2 (default 11)"
        )
    params = trainable_parameters(model)
    n = sum(p.numel() for p in params)
    for label, th in (("theta_a", theta_a), ("theta_b", theta_b)):
        if th.dim() != 1 or th.numel() != n:
            raise InvalidArgumentError(
                f"{label}: expected a flat vector of the model's n = {n} trainable parameters, "
                f"got shape {tuple(th.shape)}; flatten with sgdscope.probes.flat_params(model)"
            )
    device = params[0].device if params else torch.device("cpu")
    dtype = params[0].dtype if params else torch.float32
    alphas = np.linspace(0.0, 1.0, num_points)
    a = theta_a.detach().to(device=device, dtype=dtype)
    b = theta_b.detach().to(device=device, dtype=dtype)

    def points() -> Iterator[torch.Tensor]:
        buf = torch.empty_like(a)
        for alpha in alphas:
            # lerp is exact at both ends: weight 0 gives a, weight 1 gives b.
            torch.lerp(a, b, float(alpha), out=buf)
            yield buf

    out = _evaluate_points(
        model,
        loss_fn,
        data,
        points(),
        bn_mode=bn_mode,
        with_accuracy=with_accuracy,
        compile=compile,
        batch_size=batch_size,
        max_batch_bytes=max_batch_bytes,
        reduction=reduction,
        batch_size_fn=batch_size_fn,
        group=group,
    )
    return InterpolationResult(
        alphas=alphas,
        losses=out.losses.numpy(),
        accuracies=None if out.accuracies is None else out.accuracies.numpy(),
        bn_mode=bn_mode,
        num_samples=out.num_samples,
        shards=out.shards,
    )
