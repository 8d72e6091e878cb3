"""A NaN or inf product stops every estimator with sgdscope's own error (issue 11, item 6):
which product, and the partial result — not a raw ``linalg.eigh`` failure later."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from curvature_cases import make_case, spectrum_matrix

import sgdscope as ss
from sgdscope.curvature import (
    HessianOperator,
    frobenius_norm,
    hutchinson_trace,
    lanczos,
    power_iteration,
    spectral_density,
)
from sgdscope.errors import InvalidArgumentError, NonFiniteError, SgdscopeError


class GoesBad:
    """A symmetric matrix whose products turn NaN (or inf) from product ``bad_from`` on."""

    def __init__(self, A: torch.Tensor, bad_from: int, value: float = float("nan")) -> None:
        self.A, self.bad_from, self.value, self.calls = A, bad_from, value, 0
        self.shape, self.dtype = A.shape, A.dtype

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.A @ v
        if self.calls >= self.bad_from:
            out[3] = self.value
        return out


A = spectrum_matrix(torch.linspace(-1.0, 5.0, 40), seed=1)


def test_lanczos_names_the_product_and_keeps_the_partial_pairs():
    with pytest.raises(NonFiniteError) as info:
        lanczos(GoesBad(A, bad_from=12), k=3)
    err = info.value
    assert isinstance(err, SgdscopeError) and isinstance(err, ArithmeticError)
    assert err.routine == "lanczos" and err.product == 12
    assert "lanczos: operator product 12 was not finite (1 NaN and 0 inf of 40 entries)" in str(err)
    part = err.partial
    assert part.num_matvecs == 11 and not part.converged and len(part.eigenvalues) == 3
    assert torch.isfinite(part.eigenvalues).all()
    # after 11 Lanczos steps the top Ritz value is already close to λ₁ = 5
    assert abs(float(part.eigenvalues[0]) - 5.0) < 0.1


def test_lanczos_block_start_and_first_product():
    with pytest.raises(NonFiniteError) as info:
        lanczos(GoesBad(A, bad_from=1, value=float("inf")), k=2)
    assert info.value.product == 1 and info.value.partial is None
    assert "0 NaN and 1 inf" in str(info.value)
    V = torch.linalg.eigh(A).eigenvectors[:, -3:]
    with pytest.raises(NonFiniteError) as info:  # a warm start's block: column 1 is bad
        lanczos(GoesBad(A, bad_from=2), k=2, v0=V)
    assert info.value.product == 2
    with pytest.raises(InvalidArgumentError, match="v0: the start vectors hold NaN"):
        lanczos(A, k=2, v0=torch.full((40,), float("nan"), dtype=torch.float64))


def test_power_trace_density_and_norm():
    with pytest.raises(NonFiniteError) as info:
        power_iteration(GoesBad(A, bad_from=5), k=2, tol=1e-14, max_iter=3)
    assert info.value.product == 5 and info.value.routine == "power_iteration"
    assert len(info.value.partial.eigenvalues) == 1  # the first pair (3 products) was done
    with pytest.raises(NonFiniteError) as info:
        hutchinson_trace(GoesBad(A, bad_from=25), num_samples=40, block_size=10)
    assert info.value.product == 25 and info.value.partial.num_samples == 20
    with pytest.raises(NonFiniteError) as info:
        frobenius_norm(GoesBad(A, bad_from=3), num_samples=10, block_size=1)
    assert info.value.product == 3 and info.value.partial.num_samples == 2
    with pytest.raises(NonFiniteError) as info:
        spectral_density(GoesBad(A, bad_from=15), num_runs=3, num_iter=10)
    assert info.value.product == 15 and info.value.routine == "spectral_density"
    assert info.value.partial.nodes.shape == (1, 10)  # the first run was complete


def test_a_hessian_operator_on_nan_data():
    model, loss_fn, (x, y), _ = make_case("mlp-tanh")
    x = x.clone()
    x[2, 1] = float("nan")
    op = HessianOperator(model, loss_fn, (x, y))
    with pytest.raises(NonFiniteError, match="lanczos: operator product 1 was not finite"):
        ss.lanczos(op, k=2)
    # a loss that takes log(0): the same error
    op = HessianOperator(model, lambda o, t: F.nll_loss(torch.log(o * 0), t), (x.nan_to_num(), y))
    with pytest.raises(NonFiniteError):
        hutchinson_trace(op, num_samples=4)
