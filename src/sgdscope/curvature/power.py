"""Power iteration with deflation: the eigenvalues of largest magnitude, one at a time.

For comparison with Lanczos and for a cheap λ₁ when it dominates. Power iteration converges to the
eigenvalue of largest *magnitude*: on an indefinite Hessian whose most negative eigenvalue is larger
in magnitude than λ₁ it returns that one (Lanczos with ``which="largest"`` does not).

On a data-parallel operator it runs in lock-step on every rank, as :func:`lanczos` does.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ..errors import InvalidArgumentError
from .lanczos import ConvergenceWarning, EigenResult
from .operator import as_operator, check_finite

__all__ = ["power_iteration"]


def power_iteration(
    op: Any,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
    v0: torch.Tensor | None = None,
    seed: int = 0,
) -> EigenResult:
    """The ``k`` eigenpairs of largest magnitude by power iteration with Hotelling deflation.

    Each pair iterates v ← (H − Σ_found λ_i e_i e_iᵀ) v / ‖·‖ until the residual
    ‖Hv − λv‖ ≤ tol · |λ| (λ = vᵀHv), or ``max_iter`` products for that pair.

    Args:
        op: an operator (see :func:`~sgdscope.curvature.lanczos`).
        k: number of eigenpairs.
        tol: relative residual tolerance.
        max_iter: maximum products per eigenpair; reaching it warns (:class:`ConvergenceWarning`).
        v0: start vectors (n,) or (n, ≥k): column i starts pair i (warm start).
        seed: seeds the random start vectors.

    Returns:
        An :class:`~sgdscope.curvature.EigenResult` (eigenvalues sorted descending).

    Raises:
        NonFiniteError: a product was NaN or inf (``.partial``: the pairs found before it).
    """
    A = as_operator(op)
    n = A.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise InvalidArgumentError(f"k: expected an integer in [1, {n}], received {k!r}")
    if tol <= 0 or not math.isfinite(tol):
        raise InvalidArgumentError(f"tol: expected a positive number, received {tol!r}")
    if max_iter < 1:
        raise InvalidArgumentError(f"max_iter: expected a positive integer, received {max_iter!r}")
    dtype, device = A.dtype, A.device
    shard = A.shard
    if shard is not None:  # lock-step over the ranks (see lanczos)
        seed, v0 = shard.same_start(seed, v0)
    starts = None
    if v0 is not None:
        if not isinstance(v0, torch.Tensor) or v0.shape[0] != n or v0.ndim not in (1, 2):
            raise InvalidArgumentError(f"v0: expected a tensor of shape ({n},) or ({n}, p)")
        starts = v0.detach().reshape(n, -1).to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(int(seed))
    vals: list[float] = []
    vecs: list[torch.Tensor] = []
    resids: list[float] = []
    matvecs = iterations = 0
    all_converged = True

    def partial() -> EigenResult | None:
        if not vals:
            return None
        order = sorted(range(len(vals)), key=lambda i: -vals[i])
        return EigenResult(
            eigenvalues=torch.tensor([vals[i] for i in order], dtype=torch.float64),
            eigenvectors=torch.stack([vecs[i] for i in order], dim=1),
            residuals=torch.tensor([resids[i] for i in order], dtype=torch.float64),
            num_matvecs=matvecs,
            converged=False,
            iterations=iterations,
        )

    for i in range(k):
        if starts is not None and i < starts.shape[1] and float(starts[:, i].norm()) > 0:
            v = starts[:, i].clone()
        else:
            v = torch.randn(n, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
        E = torch.stack(vecs, dim=1) if vecs else None
        lam_found = torch.tensor(vals, dtype=dtype, device=device) if vals else None
        if E is not None:
            v = v - E @ (E.T @ v)
        v = v / v.norm()
        lam, res, ok = 0.0, math.inf, False
        for _ in range(max_iter):
            w = check_finite(A.matvec(v), "power_iteration", matvecs + 1, partial)
            matvecs += 1
            iterations += 1
            if E is not None and lam_found is not None:
                w = w - E @ (lam_found * (E.T @ v))
            lam = float(v @ w)
            res = float((w - lam * v).norm())
            if res <= tol * abs(lam):
                ok = True
                break
            w_norm = w.norm()
            if float(w_norm) == 0.0:
                ok = True
                break
            v = w / w_norm
        all_converged &= ok
        vals.append(lam)
        vecs.append(v)
        resids.append(res)
    order = sorted(range(k), key=lambda i: -vals[i])
    values = torch.tensor([vals[i] for i in order], dtype=torch.float64)
    vectors = torch.stack([vecs[i] for i in order], dim=1)
    residuals = torch.tensor([resids[i] for i in order], dtype=torch.float64)
    if shard is not None:  # every rank returns rank 0's pairs
        values, vectors, residuals = shard.same_tensors(values, vectors, residuals)
    result = EigenResult(
        eigenvalues=values,
        eigenvectors=vectors,
        residuals=residuals,
        num_matvecs=matvecs,
        converged=all_converged,
        iterations=iterations,
    )
    if not all_converged:
        warnings.warn(
            ConvergenceWarning(
                f"power_iteration: not all {k} eigenpairs reached tol={tol:g} within "
                f"max_iter={max_iter} products each; partial result returned (converged=False). "
                "fix: raise max_iter, or use lanczos (much faster on close eigenvalues)"
            ),
            stacklevel=2,
        )
    return result
