"""A symmetric operator seen through a diagonal preconditioner: P⁻¹ᐟ² A P⁻¹ᐟ².

For an adaptive optimizer θ ← θ − η P⁻¹ m (Adam: P = diag(√v̂ + ε)), the linearised update near a
point is governed by P⁻¹ H, which is similar to the symmetric P⁻¹ᐟ² H P⁻¹ᐟ² (same eigenvalues);
its top eigenvalue is the *preconditioned sharpness* that Cohen et al. (2022, "Adaptive gradient
methods at the edge of stability") compare with Adam's threshold (2 + 2β₁)/((1 − β₁)η).
"""

from __future__ import annotations

import torch

from ..errors import InvalidArgumentError
from .operator import LinearOperator, as_operator

__all__ = ["PreconditionedOperator"]


class PreconditionedOperator(LinearOperator):
    """P⁻¹ᐟ² A P⁻¹ᐟ² for a symmetric operator A and a positive diagonal preconditioner P.

    Each product is one product with A: v ↦ s ⊙ A(s ⊙ v) with s = P^{-1/2} (elementwise). The
    estimators (``lanczos``, ``hutchinson_trace``, ``spectral_density``) accept it like any
    operator; ``num_matvecs`` counts its own products (each costs one product of A).

    Args:
        op: A — a :class:`LinearOperator` (e.g. a Hessian or GGN operator), a square tensor, or
            anything :func:`~sgdscope.curvature.as_operator` accepts.
        diag: the diagonal of P, shape (n,), every entry finite and > 0 (Adam: √v̂ + ε, flat
            over the parameters in the operator's order).

    Example:
        >>> P = torch.cat([d.reshape(-1) for d in opt.preconditioner(model.parameters())])
        >>> lanczos(PreconditionedOperator(HessianOperator(model, loss_fn, data), P), 1)
    """

    def __init__(self, op: object, diag: torch.Tensor) -> None:
        base = as_operator(op)
        n = base.shape[0]
        if not isinstance(diag, torch.Tensor) or diag.shape != (n,):
            got = tuple(diag.shape) if isinstance(diag, torch.Tensor) else type(diag).__name__
            raise InvalidArgumentError(
                f"diag: expected the preconditioner's diagonal as a tensor of shape ({n},), "
                f"received {got}; fix: flatten P over the operator's parameters in their order"
            )
        d = diag.detach().to(device=base.device, dtype=torch.float64)
        if not bool(torch.isfinite(d).all()) or not bool((d > 0).all()):
            raise InvalidArgumentError(
                "diag: the preconditioner must be finite and > 0 everywhere (Adam's √v̂ + ε is, "
                "for ε > 0); received a non-positive or non-finite entry"
            )
        super().__init__(n, dtype=base.dtype, device=base.device)
        self.base = base
        self.scale = d.rsqrt().to(base.dtype)  # s = P^{-1/2}

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        s = self.scale.unsqueeze(1)
        return s * self.base.matmat(s * V)

    def release(self) -> None:
        """Free what the underlying operator holds (its retained graph)."""
        release = getattr(self.base, "release", None)
        if release is not None:
            release()
