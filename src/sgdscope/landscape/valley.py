"""Valley statistics of one interpolation curve (paper B): floor, height, barrier.

Definitions (``shared/papers/definitions.md``, Paper B), for a curve L(α) sampled at
α₀ < α₁ < … < α_{K−1} (normally 0 … 1), with L(θ_t) = L(α₀) and L(θ_{t+1}) = L(α_{K−1}):

- floor F = min_k L(α_k), reached at α* (ties: an end point if it reaches the floor, so that
  "minimum inside" is unambiguous; else the first interior minimiser);
- minimum inside: α₀ < α* < α_{K−1}, i.e. F is strictly below both end points;
- height h = L(θ_t) − F ≥ 0;
- barrier height: the excess max_{interior} L(α) − max(L(θ_t), L(θ_{t+1})), clipped at 0; relative
  height: that excess / |L(θ_t)|;
- barrier crossed: relative barrier height > ``barrier_threshold`` (default 0: any interior point
  above both ends).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError


@dataclass(frozen=True)
class ValleyStats:
    """Floor, height and barrier of one curve (losses in the loss's units, α dimensionless).

    Attributes:
        floor: min_α L(α).
        alpha_star: the α where the floor is reached.
        height: L(θ_t) − floor, the height of θ_t above the valley floor.
        minimum_inside: True when the floor is strictly below both end points.
        barrier: True when the relative barrier height exceeds the threshold.
        barrier_height: max(0, max of interior L − max of the two end losses).
        barrier_height_rel: barrier_height / |L(θ_t)| (inf when L(θ_t) = 0 < barrier_height).
    """

    floor: float
    alpha_star: float
    height: float
    minimum_inside: bool
    barrier: bool
    barrier_height: float
    barrier_height_rel: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def valley_stats(curve: Any, *, barrier_threshold: float = 0.0) -> ValleyStats:
    """Floor, α*, height, minimum-inside flag and barrier of an interpolation curve.

    Args:
        curve: an :class:`~sgdscope.landscape.InterpolationResult`, or a pair
            ``(alphas, losses)`` of 1-D arrays of the same length K ≥ 2, alphas increasing.
        barrier_threshold: a barrier counts only when its height relative to L(θ_t) exceeds this
            (≥ 0; default 0).

    Returns:
        A :class:`ValleyStats`. A curve with a non-finite loss gives NaN numbers and False flags.

    Example:
        >>> valley_stats((np.linspace(0, 1, 5), np.array([1.0, 0.4, 0.2, 0.5, 0.9])))
        ValleyStats(floor=0.2, alpha_star=0.5, height=0.8, minimum_inside=True, barrier=False, ...)
    """
    alphas, losses = _as_arrays(curve)
    if not (isinstance(barrier_threshold, (int, float)) and barrier_threshold >= 0):
        raise InvalidArgumentError(
            f"barrier_threshold={barrier_threshold!r}: must be a number >= 0 (relative to the "
            "loss at θ_t; 0 counts any interior point above both ends)"
        )
    if not np.all(np.isfinite(losses)):
        nan = math.nan
        return ValleyStats(nan, nan, nan, False, False, nan, nan)

    first, last = float(losses[0]), float(losses[-1])
    floor = float(losses.min())
    if first == floor:
        k_star = 0
    elif last == floor:
        k_star = len(losses) - 1
    else:
        k_star = int(np.argmin(losses))
    minimum_inside = 0 < k_star < len(losses) - 1

    interior = losses[1:-1]
    excess = float(interior.max()) - max(first, last) if interior.size else 0.0
    barrier_height = max(0.0, excess)
    if first != 0.0:
        rel = barrier_height / abs(first)
    else:
        rel = math.inf if barrier_height > 0 else 0.0
    return ValleyStats(
        floor=floor,
        alpha_star=float(alphas[k_star]),
        height=first - floor,
        minimum_inside=bool(minimum_inside),
        barrier=bool(rel > barrier_threshold),
        barrier_height=barrier_height,
        barrier_height_rel=float(rel),
    )


def _as_arrays(curve: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(curve, "alphas") and hasattr(curve, "losses"):
        alphas, losses = curve.alphas, curve.losses
    elif isinstance(curve, (tuple, list)) and len(curve) == 2:
        alphas, losses = curve
    else:
        raise InvalidArgumentError(
            f"curve: expected an InterpolationResult or an (alphas, losses) pair, got "
            f"{type(curve).__name__}"
        )
    alphas = np.asarray(_to_numpy(alphas), dtype=np.float64).reshape(-1)
    losses = np.asarray(_to_numpy(losses), dtype=np.float64).reshape(-1)
    if alphas.shape != losses.shape or alphas.size < 2:
        raise InvalidArgumentError(
            f"curve: alphas and losses must be 1-D of the same length >= 2, got {alphas.size} "
            f"alphas and {losses.size} losses"
        )
    if not np.all(np.diff(alphas) > 0):
        raise InvalidArgumentError(
            "curve: alphas must be strictly increasing (θ_t first, θ_{t+1} last)"
        )
    return alphas, losses


def _to_numpy(a: Any) -> Any:
    # Tensors (possibly on a GPU) → numpy without importing torch at module level.
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        return a.detach().cpu().double().numpy()
    return a
