"""Spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ).

For a random unit vector v, m Lanczos steps give a tridiagonal T = S diag(θ) Sᵀ; the nodes θ_j with
weights τ_j = S_{0j}² form a Gauss quadrature rule for the measure vᵀ δ(t − H) v, exact for
polynomials up to degree 2m − 1. Averaging over runs (Rademacher v, so E[v vᵀ]/n = I/n) estimates
the spectral density φ(t) = (1/n) Σ_i δ(t − λ_i); each delta is smoothed with a Gaussian of width
σ (Ghorbani, Krishnan & Xiao 2019). The density integrates to 1, its mean is tr(H)/n and its second
moment tr(H²)/n + σ².

On a data-parallel operator (:mod:`sgdscope._distributed`) every rank draws the same start vectors
(rank 0's seed), every product is all-reduced, and every rank returns rank 0's nodes and weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidArgumentError
from .operator import as_operator, check_finite

__all__ = ["SpectralDensity", "spectral_density"]


@dataclass
class SpectralDensity:
    """The result of :func:`spectral_density`.

    Attributes:
        grid: float64 tensor (G,) of points t.
        density: float64 tensor (G,), φ(t) (integrates to 1 over a grid that covers the nodes).
        nodes: float64 tensor (num_runs, num_iter): Ritz values of each run.
        weights: float64 tensor (num_runs, num_iter): quadrature weights (each row sums to 1).
        sigma: the Gaussian width used.
        num_matvecs: products used.
    """

    grid: torch.Tensor
    density: torch.Tensor
    nodes: torch.Tensor
    weights: torch.Tensor
    sigma: float
    num_matvecs: int

    def moment(self, p: int) -> float:
        """The quadrature estimate of tr(H^p)/n (unsmoothed)."""
        return float((self.weights * self.nodes.pow(p)).sum(dim=1).mean())


def _lanczos_tridiagonal(
    A, v: torch.Tensor, m: int, first: int = 1, partial=None
) -> tuple[torch.Tensor, int]:
    """m steps of Lanczos with full reorthogonalisation from unit v; returns T (float64).

    ``first``: the index of this call's first product, for a non-finite product's error."""
    n = v.shape[0]
    Q = torch.zeros(n, m, dtype=v.dtype, device=v.device)
    Q[:, 0] = v
    alpha = torch.zeros(m, dtype=torch.float64)
    beta = torch.zeros(max(m - 1, 0), dtype=torch.float64)
    steps = 0
    for j in range(m):
        w = check_finite(A.matvec(Q[:, j]), "spectral_density", first + steps, partial)
        steps += 1
        basis = Q[:, : j + 1]
        c = basis.T @ w
        w = w - basis @ c
        w = w - basis @ (basis.T @ w)
        alpha[j] = float(c[j])
        if j == m - 1:
            break
        b = float(w.norm())
        if b <= 1e3 * torch.finfo(v.dtype).eps * max(float(alpha[: j + 1].abs().max()), 1e-300):
            m = j + 1  # an invariant subspace: the quadrature is exact with j + 1 nodes
            alpha, beta = alpha[:m], beta[: m - 1]
            break
        beta[j] = b
        Q[:, j + 1] = w / b
    T = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
    return T, steps


def spectral_density(
    op: Any,
    num_runs: int = 10,
    num_iter: int = 80,
    grid: torch.Tensor | int | None = None,
    sigma: float | None = None,
    *,
    seed: int = 0,
) -> SpectralDensity:
    """Gaussian-smoothed spectral density of ``op`` by stochastic Lanczos quadrature.

    Args:
        op: an operator (see :func:`~sgdscope.curvature.lanczos`).
        num_runs: independent random start vectors (Rademacher, normalised).
        num_iter: Lanczos steps per run (nodes per run), at most n.
        grid: points at which to evaluate φ, or a number of points (default 1000) spread over
            [min node − 5σ, max node + 5σ].
        sigma: Gaussian width (default: 1% of the spread of the nodes, at least 1e-12).
        seed: seeds the start vectors.

    Returns:
        A :class:`SpectralDensity` with grid, density, nodes and weights.

    Raises:
        NonFiniteError: a product was NaN or inf (``.partial``: the density of the completed
            runs).
    """
    A = as_operator(op)
    n = A.shape[0]
    if isinstance(num_runs, bool) or not isinstance(num_runs, int) or num_runs < 1:
        raise InvalidArgumentError(f"num_runs: expected a positive integer, received {num_runs!r}")
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 1:
        raise InvalidArgumentError(f"num_iter: expected a positive integer, received {num_iter!r}")
    if sigma is not None and not sigma > 0:
        raise InvalidArgumentError(f"sigma: expected a positive width, received {sigma!r}")
    m = min(num_iter, n)
    if A.shard is not None:
        seed, _ = A.shard.same_start(seed, None)
    gen = torch.Generator().manual_seed(int(seed))
    nodes = torch.full((num_runs, m), math.nan, dtype=torch.float64)
    weights = torch.zeros((num_runs, m), dtype=torch.float64)
    matvecs = 0
    done = [0]  # completed runs, for the partial result

    def partial() -> SpectralDensity | None:
        r = done[0]
        if r == 0:
            return None
        return _smoothed(nodes[:r], weights[:r], grid, sigma, matvecs)

    for r in range(num_runs):
        v = torch.randint(0, 2, (n,), generator=gen).to(torch.float64) * 2 - 1
        v = (v / math.sqrt(n)).to(device=A.device, dtype=A.dtype)
        T, steps = _lanczos_tridiagonal(A, v, m, matvecs + 1, partial)
        matvecs += steps
        theta, S = torch.linalg.eigh(T)
        q = len(theta)
        nodes[r, :q] = theta
        weights[r, :q] = S[0, :].pow(2)
        nodes[r, q:] = theta[-1]  # padding with zero weight
        done[0] = r + 1
    if A.shard is not None:
        nodes, weights = A.shard.same_tensors(nodes, weights)
    return _smoothed(nodes, weights, grid, sigma, matvecs)


def _smoothed(
    nodes: torch.Tensor,
    weights: torch.Tensor,
    grid: torch.Tensor | int | None,
    sigma: float | None,
    matvecs: int,
) -> SpectralDensity:
    """The Gaussian-smoothed density of the quadrature nodes and weights of the runs."""
    spread = float(nodes.max() - nodes.min())
    if sigma is None:
        sigma = max(0.01 * spread, 1e-12)
    if grid is None or isinstance(grid, int):
        points = 1000 if grid is None else grid
        lo, hi = float(nodes.min()) - 5 * sigma, float(nodes.max()) + 5 * sigma
        grid_t = torch.linspace(lo, hi, points, dtype=torch.float64)
    else:
        grid_t = torch.as_tensor(grid, dtype=torch.float64).reshape(-1)
    diff = grid_t[:, None, None] - nodes[None, :, :]
    kern = torch.exp(-0.5 * (diff / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    density = (kern * weights[None]).sum(dim=2).mean(dim=1)
    return SpectralDensity(grid_t, density, nodes, weights, float(sigma), matvecs)
