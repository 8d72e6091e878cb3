"""Lanczos eigenpairs of a symmetric operator: full reorthogonalisation, thick restarts,
convergence by residual, warm starts.

The basis is reorthogonalised fully (twice, classical Gram-Schmidt) at every step, so Ritz values
never duplicate ("ghosts") and the residual estimate ‖Hy − θy‖ = β_j |s_j| of each Ritz pair
(θ, y = Q s) is reliable. A Ritz pair is converged when that residual is at most
``tol · max(|θ|, ε^{2/3} ‖T‖)`` (the floor keeps eigenvalues near zero from never converging;
the same rule as ARPACK, scaled by the operator's norm). The convergence test runs after every
product, so iteration stops as soon as all wanted pairs pass: clustered spectra simply take more
steps instead of returning unconverged values. When the basis reaches ``ncv`` vectors it is
thick-restarted (Wu & Simon 2000): the Ritz vectors nearest the wanted end(s) are kept, the rest
discarded, and the expansion continues from the last residual direction.

Data-parallel operators (a :class:`~sgdscope.curvature.HessianOperator` over several ranks'
shards, :mod:`sgdscope._distributed`): every rank runs the same iteration in lock-step — rank 0's
seed and start vectors are broadcast, every product is all-reduced, so every decision is the same
everywhere — and the eigenpairs are broadcast from rank 0, so every rank returns the same result.

Every product is checked: a NaN or inf one raises :class:`~sgdscope.errors.NonFiniteError`
naming it, with the eigenpairs of the basis built so far as ``.partial`` (instead of a raw failure
of the dense eigensolver later).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidArgumentError, NonFiniteError
from .operator import as_operator, check_finite

__all__ = ["ConvergenceWarning", "EigenResult", "lanczos"]

WHICH = ("largest", "smallest", "both")
#: Ritz warm start: residual expansion goes on while the worst wanted residual after the
#: Rayleigh–Ritz step is at most this multiple of its threshold (tol·|θ|, see the module docs);
#: above it one Lanczos chain is cheaper
#: (explicit-matrix tests: steering wins clearly at worst/tol ≈ 10, breaks even near 100).
_STEER_LIMIT = 100.0


class ConvergenceWarning(UserWarning):
    """An eigensolver stopped at its product limit before every wanted pair converged."""


@dataclass
class EigenResult:
    """Eigenpairs from :func:`lanczos` or :func:`~sgdscope.curvature.power_iteration`.

    Attributes:
        eigenvalues: float64 tensor (k,) on the CPU, descending.
        eigenvectors: (n, k) tensor in the operator's dtype and device, unit columns, column i
            belonging to ``eigenvalues[i]``.
        residuals: float64 tensor (k,): ‖H e_i − λ_i e_i‖ for each pair (the Lanczos estimate).
        num_matvecs: operator-vector products used.
        converged: True when every returned pair met the tolerance.
        iterations: Lanczos steps (or power-iteration steps) taken; restarts: thick restarts.
        warm_start: how the iteration started: ``"cold"`` (random), ``"vector"`` (a single
            ``v0``), ``"sum"``, ``"block"``, ``"ritz"`` (Rayleigh–Ritz on ``v0``, then residual
            expansion), or ``"ritz+lanczos"`` (the Ritz pairs were too rough, so one Lanczos
            chain went on from their sum; the Rayleigh–Ritz products are included in
            ``num_matvecs``).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    residuals: torch.Tensor
    num_matvecs: int
    converged: bool
    iterations: int = 0
    restarts: int = 0
    warm_start: str = "cold"

    def __repr__(self) -> str:
        vals = ", ".join(f"{v:.6g}" for v in self.eigenvalues.tolist()[:6])
        more = ", ..." if len(self.eigenvalues) > 6 else ""
        return (
            f"EigenResult(eigenvalues=[{vals}{more}], num_matvecs={self.num_matvecs}, "
            f"converged={self.converged})"
        )


def _split_k(k: Any, which: str, n: int) -> tuple[int, int]:
    if which not in WHICH:
        raise InvalidArgumentError(f"which: expected one of {', '.join(WHICH)}, received {which!r}")
    if isinstance(k, (tuple, list)):
        if which != "both" or len(k) != 2:
            raise InvalidArgumentError(
                f"k={k!r}: a pair (k_largest, k_smallest) is only meaningful with which='both'; "
                "fix: pass an integer k"
            )
        top, bot = int(k[0]), int(k[1])
    else:
        if isinstance(k, bool) or not isinstance(k, int):
            raise InvalidArgumentError(f"k: expected a positive integer, received {k!r}")
        top = k if which in ("largest", "both") else 0
        bot = k if which in ("smallest", "both") else 0
    if top < 0 or bot < 0 or top + bot < 1:
        raise InvalidArgumentError(f"k={k!r}: need at least one eigenpair")
    if top + bot > n:
        raise InvalidArgumentError(
            f"k={k!r} asks for {top + bot} eigenpairs of an operator of size {n}; fix: k <= {n}"
            + (" in total over both ends" if which == "both" else "")
        )
    return top, bot


def _start_block(
    v0: torch.Tensor | None,
    n: int,
    dtype: torch.dtype,
    device: torch.device,
    seed: int,
    mode: str,
    block_size: int = 1,
) -> torch.Tensor:
    """Orthonormal start block (n, b).

    No ``v0``: ``block_size`` random vectors. A single vector ``v0`` (n,), or ``mode="sum"``: one
    vector, the sum of the given unit directions plus a 1% random part. ``"ritz"`` and
    ``"block"``: the given vectors plus a random one, orthonormalised.
    """
    gen = torch.Generator().manual_seed(int(seed))
    rnd = torch.randn(n, max(1, block_size), generator=gen, dtype=torch.float64)
    if v0 is None:
        Qr, _ = torch.linalg.qr(rnd)
        return Qr.to(device=device, dtype=dtype)
    rnd = rnd[:, :1]
    if not isinstance(v0, torch.Tensor) or v0.ndim not in (1, 2) or v0.shape[0] != n:
        got = tuple(v0.shape) if isinstance(v0, torch.Tensor) else type(v0).__name__
        raise InvalidArgumentError(
            f"v0: expected a tensor of shape ({n},) or ({n}, p) (e.g. the previous "
            f"eigenvectors), received {got}"
        )
    V = v0.detach().to(device="cpu", dtype=torch.float64).reshape(n, -1)
    if not bool(torch.isfinite(V).all()):
        raise InvalidArgumentError(
            "v0: the start vectors hold NaN or inf; fix: pass finite vectors (previous "
            "eigenvectors from a run that diverged are not usable)"
        )
    V = V[:, V.norm(dim=0) > 0]
    V = V / V.norm(dim=0)
    if V.shape[1] == 0:
        return (rnd / rnd.norm()).to(device=device, dtype=dtype)
    if mode == "sum" or v0.ndim == 1:
        v = V.sum(dim=1, keepdim=True)
        v = v / v.norm() + 1e-2 * rnd / rnd.norm()
        return (v / v.norm()).to(device=device, dtype=dtype)
    if V.shape[1] >= n:
        V = V[:, : n - 1]
    # A random vector joins the given ones, so that directions they miss (an eigenvector
    # entering the top k since they were computed) are still found.
    B = torch.cat([V, rnd], dim=1)
    Qb, R = torch.linalg.qr(B)
    keep = R.diagonal().abs() > 1e-10 * R.diagonal().abs().max()
    return Qb[:, keep].to(device=device, dtype=dtype)


def _wanted(theta: torch.Tensor, top: int, bot: int) -> torch.Tensor:
    """Indices (into ascending ``theta``) of the wanted Ritz values, at most len(theta)."""
    j = len(theta)
    t = min(top, j)
    b = min(bot, j - t)
    idx = list(range(j - t, j)) + list(range(b))
    return torch.tensor(sorted(set(idx)), dtype=torch.long)


def _keep(j: int, top: int, bot: int, p: int) -> torch.Tensor:
    """Indices of the ``p`` Ritz vectors kept at a restart, split between the wanted ends."""
    if bot == 0:
        return torch.arange(j - p, j)
    if top == 0:
        return torch.arange(0, p)
    p_top = max(top, round(p * top / (top + bot)))
    p_bot = max(bot, p - p_top)
    p_top = p - p_bot
    return torch.cat([torch.arange(0, p_bot), torch.arange(j - p_top, j)])


def _steer(
    Q: torch.Tensor,
    C: torch.Tensor,
    p: int,
    q: int,
    S: torch.Tensor,
    res: torch.Tensor,
    idx: torch.Tensor,
    thresh: torch.Tensor,
) -> None:
    """Rotate the queue Q[:, p:q] so that its first vector (the next one multiplied) is the
    dominant direction of the residuals of the unconverged wanted Ritz pairs, each scaled by its
    threshold. A rotation of the queue keeps every invariant: span, orthonormality and the
    exact residuals ‖C[p:q, :p] s‖."""
    bad = res[idx] > thresh
    if not bool(bad.any()):
        bad = torch.ones_like(bad)
    cols = idx[bad]
    R = (C[p:q, :p] @ S[:, cols]) / thresh[bad].clamp_min(1e-300)
    U, _, _ = torch.linalg.svd(R, full_matrices=True)
    Qq = Q[:, p:q]
    Q[:, p:q] = Qq @ U.to(device=Q.device, dtype=Q.dtype)
    C[p:q, :p] = U.T @ C[p:q, :p]


def lanczos(
    op: Any,
    k: int | tuple[int, int] = 10,
    *,
    which: str = "largest",
    tol: float = 1e-4,
    max_iter: int | None = None,
    v0: torch.Tensor | None = None,
    seed: int = 0,
    ncv: int | None = None,
    block_start: bool = False,
    block_size: int = 1,
    warm_start: str = "ritz",
) -> EigenResult:
    """Extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalisation.

    Args:
        op: a :class:`~sgdscope.curvature.HessianOperator`, any
            :class:`~sgdscope.curvature.LinearOperator`, a square torch matrix, or an object with
            ``shape == (n, n)`` callable on flat vectors.
        k: number of eigenpairs. With ``which="both"``: k at each end, or a pair
            ``(k_largest, k_smallest)``.
        which: ``"largest"`` (algebraic: λ₁ ≥ λ₂ ≥ …), ``"smallest"`` (algebraic), or ``"both"``.
        tol: relative residual ‖Hy − θy‖ ≤ tol · |θ| for each returned pair (see module docs for
            the floor near zero). 1e-4 gives eigenvalues to about 1e-8 relative where the
            spectrum is separated, and ≤ 1e-4 inside clusters.
        max_iter: maximum number of products (default ``max(500, 30 · ncv)``). Hitting it emits a
            :class:`ConvergenceWarning` and returns the partial result with ``converged=False``.
        v0: start vector (n,), or several (n, p), e.g. the previous eigenvectors when tracking
            along training (warm start, see ``warm_start``).
        seed: seeds the random start (a CPU generator, so results match across devices).
        ncv: maximum basis size before a thick restart (default ``max(2·k + 40, 20)``, at most n).
        warm_start: how a block ``v0`` (n, p) is used. ``"ritz"`` (default): Rayleigh–Ritz on
            span(v0 and one random vector), p + 1 products as one ``matmat`` block; if the
            wanted Ritz pairs already meet ``tol`` that is all. Otherwise the Ritz vectors and
            their residual directions form a thick-restart state, and the basis grows one product
            at a time, each time along the dominant residual direction of the still unconverged
            wanted pairs (for one pair this is Lanczos), stopping as soon as the residual test
            passes. If a wanted Ritz pair's residual is more than 100× its threshold, the given
            vectors are too rough for that (it converges pair by pair): one Lanczos chain starts
            from the sum of the Ritz vectors instead (the result's ``warm_start`` is
            ``"ritz+lanczos"``; about the ``"sum"`` start's cost plus the p + 1 products).
            ``"sum"``: one start vector, the sum of the given directions plus a 1% random part
            (plain Lanczos). ``"block"``: block Lanczos from the given vectors plus a random one
            (each block step costs p + 1 products). The random vector is there so that a
            direction the given vectors miss (an eigenvector entering the top k) is still found.
        block_start: same as ``warm_start="block"`` (kept for compatibility).
        block_size: random start vectors (block Lanczos). A single start vector sees one
            direction per distinct eigenvalue: copies of an exactly repeated eigenvalue appear
            only through rounding, possibly after convergence is declared. Use a block at least
            as large as the multiplicity you expect (Hessians rarely have exact repeats at the
            extremes; a block of b costs roughly 1.2–1.5× the products for b = 2).

    Returns:
        An :class:`EigenResult`: eigenvalues descending (for ``"both"``: the largest ones, then
        the smallest ones), eigenvectors (n × k), residuals, ``num_matvecs``, ``converged``.

    Example:
        >>> res = lanczos(op, k=10)
        >>> res.eigenvalues[0], res.eigenvectors[:, 0]
    """
    A = as_operator(op)
    n = A.shape[0]
    top, bot = _split_k(k, which, n)
    kk = top + bot
    if tol <= 0 or not math.isfinite(tol):
        raise InvalidArgumentError(f"tol: expected a positive number, received {tol!r}")
    m = min(n, ncv if ncv is not None else max(2 * kk + 40, 20))
    if m < min(n, kk + 2):
        raise InvalidArgumentError(f"ncv={ncv}: must be at least k + 2 = {kk + 2} (or n)")
    limit = max_iter if max_iter is not None else max(500, 30 * m)
    if limit < 1:
        raise InvalidArgumentError(
            f"max_iter: expected a positive number of products, got {max_iter!r}"
        )
    dtype, device = A.dtype, A.device
    eps = torch.finfo(dtype).eps
    floor_rel = eps ** (2.0 / 3.0)
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise InvalidArgumentError(
            f"block_size: expected a positive integer, received {block_size!r}"
        )
    if warm_start not in ("ritz", "sum", "block"):
        raise InvalidArgumentError(
            f"warm_start: expected 'ritz', 'sum' or 'block', received {warm_start!r}"
        )
    mode = "block" if block_start else warm_start
    shard = A.shard
    if shard is not None:  # lock-step over the ranks: rank 0's seed and start vectors
        seed, v0 = shard.same_start(seed, v0)
    start_block = _start_block(v0, n, dtype, device, seed, mode, min(block_size, n))
    b = start_block.shape[1]
    # Ritz warm start: after the start block, each step expands along the dominant residual
    # direction of the unconverged wanted pairs instead of the oldest queued vector.
    steer = v0 is not None and mode == "ritz" and b > 1
    m = max(m, min(n, b + kk + 2)) if v0 is not None else m
    cap = min(n, m + b)  # basis capacity: m processed vectors plus the queue

    # The basis Q = [processed vectors | queue]. C[:, :p] = Qᵀ H Q_p (all rows), which holds the
    # projected matrix T = C[:p, :p] and, below it, how H Q_p leaves span(Q_p): the residual of a
    # Ritz pair (θ, Q_p s) is ‖C[p:q, :p] s‖. A single start vector makes this Lanczos (queue of
    # one, T tridiagonal); a block start (warm start) makes it block Lanczos, breadth first.
    Q = torch.zeros(n, cap, dtype=dtype, device=device)
    Q[:, :b] = start_block
    C = torch.zeros(cap, cap, dtype=torch.float64)
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    p, q = 0, b  # processed vectors, basis vectors
    matvecs = iterations = restarts = 0
    theta = S = res = idx = None
    converged = fallback = False
    start_kind = "cold" if v0 is None else "vector" if v0.ndim == 1 else mode

    def partial() -> EigenResult | None:
        return _partial(Q, C, p, q, top, bot, matvecs, iterations, restarts, start_kind)

    pending: torch.Tensor | None = None
    if b > 1:
        pending = check_finite(A.matmat(Q[:, :b]), "lanczos", 1, partial)
        matvecs += b
    while True:
        if pending is not None and pending.shape[1] > 0:
            w, pending = pending[:, 0], pending[:, 1:]
        else:
            w = check_finite(A.matvec(Q[:, p]), "lanczos", matvecs + 1, partial)
            matvecs += 1
        iterations += 1
        basis = Q[:, :q]
        c = basis.T @ w
        w = w - basis @ c
        c2 = basis.T @ w
        w = w - basis @ c2
        C[:q, p] = (c + c2).to(torch.float64).cpu()
        beta = float(w.norm())
        p += 1
        anorm_est = float(C[:p, :p].abs().sum(dim=0).max())
        if q < cap and beta > 10 * eps * max(anorm_est, 1e-300) * math.sqrt(n):
            Q[:, q] = w / beta
            C[q, p - 1] = beta
            q += 1
        elif q < n and q < cap and q == p:
            # An invariant subspace and nothing queued: go on from a random orthogonal direction.
            r = torch.randn(n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
            for _ in range(2):
                r = r - Q[:, :q] @ (Q[:, :q].T @ r)
            if float(r.norm()) > 0:
                Q[:, q] = r / r.norm()
                q += 1

        if pending is not None and pending.shape[1] > 0:
            continue  # finish the start block before judging convergence
        T = C[:p, :p]
        T = 0.5 * (T + T.T)
        theta, S = torch.linalg.eigh(T)
        anorm = float(theta.abs().max())
        res = (C[p:q, :p] @ S).norm(dim=0) if q > p else torch.zeros(p, dtype=torch.float64)
        idx = _wanted(theta, top, bot)
        thresh = tol * torch.clamp(theta[idx].abs(), min=floor_rel * anorm)
        if p >= kk and bool((res[idx] <= thresh).all()):
            converged = True
            break
        if p >= n or q == p:  # the whole space (or an invariant subspace) is explored: exact
            converged = p >= kk
            break
        if matvecs >= limit:
            break
        if p < m and q <= cap:
            if steer and p == b and restarts == 0:
                worst = float((res[idx] / thresh.clamp_min(1e-300)).max())
                if worst > _STEER_LIMIT:
                    # Rough previous vectors: expanding along residuals converges pair by pair,
                    # slower than one Lanczos chain, which starts from the sum of the Ritz
                    # vectors.
                    fallback = True
                    break
            if steer and q - p > 1:
                _steer(Q, C, p, q, S, res, idx, thresh)
            continue
        # Thick restart: keep P Ritz vectors nearest the wanted end(s), keep the queue.
        P = min(m - 1, max(kk + (m - kk) // 2, kk + 1))
        keep = _keep(p, top, bot, P)
        Sk = S[:, keep]
        kept = Q[:, :p] @ Sk.to(device=device, dtype=dtype)
        queue = Q[:, p:q].clone()
        below = C[p:q, :p] @ Sk
        Q.zero_()
        C.zero_()
        Q[:, :P] = kept
        Q[:, P : P + (q - p)] = queue
        C[:P, :P] = torch.diag(theta[keep])
        C[P : P + (q - p), :P] = below
        q = P + (q - p)
        p = P
        restarts += 1
        if steer and q - p > 1:
            T = C[:p, :p]
            theta, S = torch.linalg.eigh(0.5 * (T + T.T))
            res = (C[p:q, :p] @ S).norm(dim=0)
            idx = _wanted(theta, top, bot)
            thresh = tol * torch.clamp(theta[idx].abs(), min=floor_rel * anorm)
            _steer(Q, C, p, q, S, res, idx, thresh)

    if fallback:
        ritz = Q[:, :p] @ S[:, idx].to(device=device, dtype=dtype)
        start = ritz.sum(dim=1)
        try:
            sub = lanczos(
                A,
                (top, bot) if which == "both" else kk,
                which=which,
                tol=tol,
                max_iter=max(1, limit - matvecs),
                v0=start / start.norm(),
                seed=seed,
                ncv=ncv,
                block_size=block_size,
            )
        except NonFiniteError as exc:  # number the products from this call's start
            raise NonFiniteError(
                str(exc).replace(f"product {exc.product} ", f"product {exc.product + matvecs} "),
                routine="lanczos",
                product=exc.product + matvecs,
                partial=exc.partial if exc.partial is not None else partial(),
            ) from None
        sub.num_matvecs += matvecs
        sub.iterations += iterations
        sub.warm_start = "ritz+lanczos"
        return sub
    order = idx[torch.argsort(theta[idx], descending=True)]
    vecs = Q[:, :p] @ S[:, order].to(device=device, dtype=dtype)
    values, residuals = theta[order].clone(), res[order].clone()
    if shard is not None:  # every rank returns rank 0's pairs, bit for bit
        values, vecs, residuals = shard.same_tensors(values, vecs, residuals)
    result = EigenResult(
        eigenvalues=values,
        eigenvectors=vecs,
        residuals=residuals,
        num_matvecs=matvecs,
        converged=converged,
        iterations=iterations,
        restarts=restarts,
        warm_start=start_kind,
    )
    if not converged:
        worst = float((res[order] / theta[order].abs().clamp_min(1e-300)).max())
        warnings.warn(
            ConvergenceWarning(
                f"lanczos: {len(order)} wanted eigenpairs not all converged after {matvecs} "
                f"products (worst relative residual {worst:.2e} > tol={tol:g}); the result "
                "holds the partial estimates (converged=False). fix: raise max_iter or ncv, or "
                "loosen tol"
            ),
            stacklevel=2,
        )
    return result


def _partial(
    Q: torch.Tensor,
    C: torch.Tensor,
    p: int,
    q: int,
    top: int,
    bot: int,
    matvecs: int,
    iterations: int,
    restarts: int,
    warm_start: str,
) -> EigenResult | None:
    """The Ritz pairs of the basis built so far (``converged=False``), or None before any."""
    if p == 0:
        return None
    T = C[:p, :p]
    theta, S = torch.linalg.eigh(0.5 * (T + T.T))
    res = (C[p:q, :p] @ S).norm(dim=0) if q > p else torch.zeros(p, dtype=torch.float64)
    idx = _wanted(theta, top, bot)
    order = idx[torch.argsort(theta[idx], descending=True)]
    return EigenResult(
        eigenvalues=theta[order].clone(),
        eigenvectors=Q[:, :p] @ S[:, order].to(device=Q.device, dtype=Q.dtype),
        residuals=res[order].clone(),
        num_matvecs=matvecs,
        converged=False,
        iterations=iterations,
        restarts=restarts,
        warm_start=warm_start,
    )
