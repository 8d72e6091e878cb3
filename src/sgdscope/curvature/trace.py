"""Randomised estimators of tr(H) and ‖H‖_F from products with random vectors.

On a data-parallel operator (:mod:`sgdscope._distributed`) every rank draws the same random
vectors (rank 0's seed is broadcast), every product is all-reduced, and every rank returns rank
0's estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InvalidArgumentError
from .operator import as_operator, check_finite

__all__ = ["Estimate", "frobenius_norm", "hutchinson_trace"]

METHODS = ("hutchinson", "hutch++")


@dataclass
class Estimate:
    """A randomised estimate with its standard error.

    Attributes:
        estimate: the value (a float).
        stderr: its standard error (sample standard deviation / sqrt(samples); for
            ``frobenius_norm`` propagated through the square root).
        num_samples: random vectors used (products: ``num_matvecs``).
        samples: float64 tensor of the per-vector values (for the Frobenius norm: ‖Hv‖²).
    """

    estimate: float
    stderr: float
    num_samples: int
    num_matvecs: int
    samples: torch.Tensor = field(repr=False)

    def __float__(self) -> float:
        return float(self.estimate)


def _rademacher(n: int, m: int, gen: torch.Generator, dtype, device) -> torch.Tensor:
    r = torch.randint(0, 2, (n, m), generator=gen, dtype=torch.int8)
    return (r.to(torch.float64) * 2 - 1).to(device=device, dtype=dtype)


def _blocks(total: int, block: int):
    start = 0
    while start < total:
        yield min(block, total - start)
        start += block


def _check(num_samples: int, block_size: int) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise InvalidArgumentError(
            f"num_samples: expected an integer >= 2 (a standard error needs two), received "
            f"{num_samples!r}"
        )
    if block_size < 1:
        raise InvalidArgumentError(
            f"block_size: expected a positive integer, received {block_size!r}"
        )


def hutchinson_trace(
    op: Any,
    num_samples: int = 100,
    *,
    seed: int = 0,
    block_size: int = 10,
    method: str = "hutchinson",
) -> Estimate:
    """tr(H) by Hutchinson's estimator E[vᵀHv] with Rademacher v (unbiased).

    Args:
        op: an operator (see :func:`~sgdscope.curvature.lanczos`).
        num_samples: products to spend.
        seed: seeds the random vectors (a CPU generator: same vectors on every device).
        block_size: vectors per ``matmat`` call.
        method: ``"hutchinson"``, or ``"hutch++"`` (Meyer et al. 2021: a third of the products
            sketch the dominant subspace, whose trace is taken exactly, and Hutchinson runs on
            the rest; much lower variance when a few eigenvalues dominate, as in Hessians).

    Returns:
        An :class:`Estimate` (``stderr`` from the Hutchinson samples; for Hutch++ the exact
        subspace part adds none).

    Raises:
        NonFiniteError: a product was NaN or inf (``.partial``: the estimate from the samples
            before it, plain Hutchinson only).
    """
    _check(num_samples, block_size)
    if method not in METHODS:
        raise InvalidArgumentError(
            f"method: expected one of {', '.join(METHODS)}, received {method!r}"
        )
    A = as_operator(op)
    n = A.shape[0]
    if A.shard is not None:
        seed, _ = A.shard.same_start(seed, None)
    gen = torch.Generator().manual_seed(int(seed))
    dtype, device = A.dtype, A.device
    if method == "hutch++":
        return _same(A, _hutchpp(A, n, num_samples, gen, dtype, device, block_size))
    samples: list[torch.Tensor] = []
    done = 0
    for m in _blocks(num_samples, block_size):
        V = _rademacher(n, m, gen, dtype, device)
        HV = check_finite(A.matmat(V), "hutchinson_trace", done + 1, lambda: _so_far(samples))
        samples.append((V.double() * HV.double()).sum(dim=0).cpu())
        done += m
    s = torch.cat(samples)
    est = Estimate(float(s.mean()), float(s.std() / math.sqrt(len(s))), len(s), num_samples, s)
    return _same(A, est)


def _same(A: Any, est: Estimate) -> Estimate:
    """Rank 0's estimate on every rank of a data-parallel operator (the estimate itself)."""
    if A.shard is None:
        return est
    head = torch.tensor([est.estimate, est.stderr], dtype=torch.float64)
    head, samples = A.shard.same_tensors(head, est.samples)
    return Estimate(float(head[0]), float(head[1]), est.num_samples, est.num_matvecs, samples)


def _so_far(samples: list[torch.Tensor], sqrt: bool = False) -> Estimate | None:
    """The estimate from the samples taken before a non-finite product (None if none)."""
    if not samples:
        return None
    s = torch.cat(samples)
    mean = float(s.mean())
    se = float(s.std() / math.sqrt(len(s))) if len(s) > 1 else math.nan
    if sqrt:
        est = math.sqrt(max(mean, 0.0))
        return Estimate(est, se / (2 * est) if est > 0 else math.nan, len(s), len(s), s)
    return Estimate(mean, se, len(s), len(s), s)


def _hutchpp(A, n, num_samples, gen, dtype, device, block_size) -> Estimate:
    if num_samples < 6:
        raise InvalidArgumentError(f"num_samples={num_samples}: hutch++ needs at least 6 products")
    s_cols = num_samples // 3
    g_cols = num_samples - 2 * s_cols
    S = _rademacher(n, s_cols, gen, dtype, device)
    Y = torch.cat(
        [
            check_finite(A.matmat(S[:, i : i + b]), "hutchinson_trace", i + 1)
            for i, b in _offsets(s_cols, block_size)
        ],
        dim=1,
    )
    Q, _ = torch.linalg.qr(Y.double())
    Q = Q.to(dtype)
    HQ = torch.cat(
        [
            check_finite(A.matmat(Q[:, i : i + b]), "hutchinson_trace", s_cols + i + 1)
            for i, b in _offsets(s_cols, block_size)
        ],
        dim=1,
    )
    exact = float((Q.double() * HQ.double()).sum())
    samples = []
    done = 2 * s_cols
    for b in _blocks(g_cols, block_size):
        G = _rademacher(n, b, gen, dtype, device)
        G = G - Q @ (Q.T @ G)
        HG = check_finite(A.matmat(G), "hutchinson_trace", done + 1)
        done += b
        HG = HG - Q @ (Q.T @ HG)
        samples.append((G.double() * HG.double()).sum(dim=0).cpu())
    s = torch.cat(samples)
    return Estimate(
        exact + float(s.mean()),
        float(s.std() / math.sqrt(len(s))) if len(s) > 1 else math.nan,
        num_samples,
        num_samples,
        s,
    )


def _offsets(total: int, block: int):
    start = 0
    for b in _blocks(total, block):
        yield start, b
        start += b


def frobenius_norm(
    op: Any, num_samples: int = 100, *, seed: int = 0, block_size: int = 10
) -> Estimate:
    """‖H‖_F = sqrt(tr(H²)) = sqrt(E‖Hv‖²) with Rademacher v.

    The mean of ‖Hv‖² is unbiased for tr(H²); its square root (the returned estimate) is
    consistent, with the standard error propagated by the delta method, se/(2·sqrt(mean)).
    (Taking the mean of ‖Hv‖ instead, as some released code did, is biased low.)

    Args:
        op: an operator (see :func:`~sgdscope.curvature.lanczos`).
        num_samples: products to spend.
        seed: seeds the random vectors.
        block_size: vectors per ``matmat`` call.
    """
    _check(num_samples, block_size)
    A = as_operator(op)
    n = A.shape[0]
    if A.shard is not None:
        seed, _ = A.shard.same_start(seed, None)
    gen = torch.Generator().manual_seed(int(seed))
    samples: list[torch.Tensor] = []
    done = 0
    for m in _blocks(num_samples, block_size):
        V = _rademacher(n, m, gen, A.dtype, A.device)
        HV = check_finite(
            A.matmat(V), "frobenius_norm", done + 1, lambda: _so_far(samples, sqrt=True)
        )
        samples.append(HV.double().pow(2).sum(dim=0).cpu())
        done += m
    s = torch.cat(samples)
    mean = float(s.mean())
    se_sq = float(s.std() / math.sqrt(len(s)))
    est = math.sqrt(max(mean, 0.0))
    stderr = se_sq / (2 * est) if est > 0 else math.nan
    return _same(A, Estimate(est, stderr, len(s), num_samples, s))
