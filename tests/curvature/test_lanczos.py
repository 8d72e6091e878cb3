"""lanczos against eigvalsh of explicit matrices and dense Hessians; residuals; warm starts."""

from __future__ import annotations

import pytest
import torch
from curvature_cases import EPS64, dense_hessian, make_case, spectrum_matrix

from sgdscope.curvature import ConvergenceWarning, HessianOperator, lanczos
from sgdscope.curvature.operator import as_operator
from sgdscope.errors import InvalidArgumentError

# Weyl: a Ritz pair with residual r lies within r of an eigenvalue, so tol=1e-10 gives eigenvalue
# errors ≤ 1e-10·|λ| (plus float64 rounding ~1e3·eps‖A‖); the bound is 1e-8 relative.
TOL = 1e-10
BOUND = 1e-8


def _spectra():
    g = torch.Generator().manual_seed(5)
    bulk = torch.randn(250, generator=g, dtype=torch.float64) * 0.3
    return {
        "repeated": torch.cat([torch.tensor([5.0, 5.0, 5.0, 4.0, 4.0, 3.0]), bulk]),
        "clustered": torch.cat([10 + 1e-3 * torch.arange(12, dtype=torch.float64), bulk]),
        "negative": torch.cat([torch.tensor([-8.0, -7.5, -7.5, -6.0, 2.0, 1.9]), bulk]),
        "mixed": torch.cat([torch.linspace(-3, 4, 15, dtype=torch.float64), bulk]),
    }


def _check(res, ref, k_top=0, k_bot=0, A=None, tol=TOL):
    want = []
    if k_top:
        want.append(ref.flip(0)[:k_top])
    if k_bot:
        want.append(ref[:k_bot].flip(0))
    want = torch.cat(want)
    got = res.eigenvalues
    rel = ((got - want).abs() / want.abs().clamp_min(1e-12)).max()
    assert float(rel) <= BOUND, (got, want)
    assert res.converged
    if A is not None:
        E = res.eigenvectors
        true_res = (A @ E - E * got.to(E.dtype)).norm(dim=0)
        # the reported residuals are estimates of the true ones (agree to rounding) ...
        assert torch.allclose(true_res.cpu().double(), res.residuals, atol=1e3 * EPS64 * 10)
        # ... and meet the tolerance (floor ε^{2/3}·‖A‖ near zero, see lanczos docs)
        scale = torch.clamp(got.abs(), min=EPS64 ** (2 / 3) * ref.abs().max())
        assert bool((true_res <= tol * scale * 1.01 + 1e3 * EPS64 * ref.abs().max()).all())
        assert torch.allclose(E.T @ E, torch.eye(E.shape[1], dtype=E.dtype), atol=1e-10)


@pytest.mark.parametrize("name", ["repeated", "clustered", "negative", "mixed"])
def test_explicit_matrices(name):
    ev = _spectra()[name]
    A = spectrum_matrix(ev, seed=1)
    ref = torch.linalg.eigvalsh(A)
    # exact repeats (multiplicity ≤ 3 here) need a start block at least that large: a single
    # Krylov sequence holds one direction per distinct eigenvalue (documented)
    bs = 3 if name in ("repeated", "negative") else 1
    _check(lanczos(A, 10, tol=TOL, block_size=bs), ref, k_top=10, A=A)
    _check(lanczos(A, 3, which="smallest", tol=TOL, block_size=bs), ref, k_bot=3, A=A)
    res = lanczos(A, (10, 3), which="both", tol=TOL, block_size=bs)
    _check(res, ref, k_top=10, k_bot=3, A=A)


def test_default_tolerance_residual_bound():
    A = spectrum_matrix(_spectra()["clustered"], seed=2)
    res = lanczos(A, 10)
    E = res.eigenvectors
    true_res = (A @ E - E * res.eigenvalues).norm(dim=0)
    assert bool((true_res <= 1e-4 * res.eigenvalues.abs() * 1.01).all())
    ref = torch.linalg.eigvalsh(A).flip(0)[:10]
    # Inside a cluster narrower than the residuals (spacing 1e-3 = tol·λ here) Ritz values are
    # matched to eigenvalues only up to ‖R‖₂ ≤ sqrt(k)·max residual (Kahan's bound)
    bound = 10**0.5 * float(res.residuals.max())
    assert float((res.eigenvalues - ref).abs().max()) <= bound
    assert float(((res.eigenvalues - ref).abs() / ref).max()) <= 1e-3


def test_thick_restarts_keep_accuracy():
    A = spectrum_matrix(_spectra()["clustered"], seed=3)
    ref = torch.linalg.eigvalsh(A)
    res = lanczos(A, 10, tol=TOL, ncv=24)
    assert res.restarts > 0
    _check(res, ref, k_top=10, A=A)


@pytest.mark.parametrize("case", ["mlp-tanh", "cnn"])
def test_dense_hessian_top10_bottom3(case):
    model, loss_fn, data, bn_mode = make_case(case)
    H = dense_hessian(model, loss_fn, data, bn_mode)
    ref = torch.linalg.eigvalsh(H)
    op = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=torch.float64)
    _check(lanczos(op, 10, tol=TOL), ref, k_top=10)
    _check(lanczos(op, 3, which="smallest", tol=TOL), ref, k_bot=3)


def test_small_operator_exhausts_the_space():
    A = spectrum_matrix([3.0, 1.0, -2.0, 0.5], seed=0)
    res = lanczos(A, 4, tol=1e-12)
    assert torch.allclose(res.eigenvalues, torch.tensor([3.0, 1.0, 0.5, -2.0], dtype=A.dtype))
    # low rank: an invariant subspace is found early and the iteration continues past it
    B = spectrum_matrix([4.0, 3.0] + [0.0] * 30, seed=1)
    res = lanczos(B, 3, tol=1e-8)
    assert torch.allclose(res.eigenvalues, torch.tensor([4.0, 3.0, 0.0], dtype=B.dtype), atol=1e-9)


def test_warm_start_needs_fewer_products():
    ev = torch.cat(
        [
            torch.linspace(2, 1, 20, dtype=torch.float64),
            0.3 * torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
        ]
    )
    A = spectrum_matrix(ev, seed=4)
    cold = lanczos(A, 10)
    E = torch.randn(A.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    A2 = A + 1e-4 * (E + E.T) / A.shape[0] ** 0.5  # a nearby operator, as after a few steps
    cold2 = lanczos(A2, 10, seed=1)
    warm = lanczos(A2, 10, v0=cold.eigenvectors, seed=1, warm_start="sum")
    block = lanczos(A2, 10, v0=cold.eigenvectors, seed=1, block_start=True)
    ritz = lanczos(A2, 10, v0=cold.eigenvectors, seed=1)  # the default warm start
    assert (warm.warm_start, block.warm_start, ritz.warm_start) == ("sum", "block", "ritz")
    assert warm.num_matvecs < cold2.num_matvecs
    assert 2 * block.num_matvecs <= cold2.num_matvecs
    assert 2 * ritz.num_matvecs <= cold2.num_matvecs
    for r in (warm, block, ritz):
        assert r.converged
        assert torch.allclose(r.eigenvalues, cold2.eigenvalues, rtol=1e-6)


def _rotated(A: torch.Tensor, angle: float, seed: int) -> torch.Tensor:
    """A with its eigenvectors rotated by exp(angle·K), K a random skew matrix of unit norm."""
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(A.shape, generator=g, dtype=A.dtype)
    K = (K - K.T) / torch.linalg.matrix_norm(K - K.T, ord=2)
    R = torch.linalg.matrix_exp(angle * K)
    return R @ A @ R.T


@pytest.mark.parametrize("which", ["largest", "both"])
def test_ritz_warm_start_from_rotated_eigenvectors(which):
    # Eigenvectors that rotate slightly between measurements, the spectrum fixed (clustered top
    # like a Hessian at initialisation): Rayleigh–Ritz on the previous vectors plus residual
    # expansion needs at least 2x fewer products than a cold start, to the same accuracy.
    ev = torch.cat(
        [
            torch.linspace(2, 1, 20, dtype=torch.float64),
            0.3 * torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
        ]
    )
    A = spectrum_matrix(ev, seed=4)
    ref = torch.linalg.eigvalsh(A)
    k = 10 if which == "largest" else (8, 2)
    want = ref.flip(0)[:10] if which == "largest" else torch.cat([ref.flip(0)[:8], ref[:2].flip(0)])
    prev = lanczos(A, k, which=which)  # default tol=1e-4, as a probe would
    for angle in (1e-4, 1e-3):
        A2 = _rotated(A, angle, seed=2)
        cold = lanczos(A2, k, which=which, seed=1)
        warm = lanczos(A2, k, which=which, seed=1, v0=prev.eigenvectors)
        assert warm.warm_start == "ritz" and warm.converged
        assert 2 * warm.num_matvecs <= cold.num_matvecs, (angle, warm, cold)
        # tol=1e-4: eigenvalue errors ≤ residual²/gap ≈ 1e-8/0.05, checked at 1e-6 relative
        assert torch.allclose(warm.eigenvalues, want, rtol=1e-6, atol=0)
        E = warm.eigenvectors
        true_res = (A2 @ E - E * warm.eigenvalues).norm(dim=0)
        assert bool((true_res <= 1e-4 * warm.eigenvalues.abs() * 1.01 + 1e-12).all())
        prev = warm


def test_ritz_warm_start_converged_vectors_cost_k_plus_one():
    A = spectrum_matrix(_spectra()["mixed"], seed=3)
    prev = lanczos(A, 5, tol=1e-12)
    again = lanczos(A, 5, v0=prev.eigenvectors)
    assert again.num_matvecs == 6 and again.warm_start == "ritz"  # k vectors + 1 random
    assert torch.allclose(again.eigenvalues, prev.eigenvalues, rtol=1e-10)


def test_ritz_warm_start_rough_vectors_fall_back_to_lanczos():
    # Vectors far from the new eigenvectors: the Ritz step sees it and one Lanczos chain (from
    # the sum of the Ritz vectors) finishes; the answer is right and its products are counted.
    A = spectrum_matrix(_spectra()["mixed"], seed=3)
    ref = torch.linalg.eigvalsh(A)
    rough = torch.randn(A.shape[0], 6, generator=torch.Generator().manual_seed(3), dtype=A.dtype)
    counted = as_operator(A)  # its num_matvecs counts every product
    res = lanczos(counted, 6, v0=rough, tol=TOL)
    assert res.warm_start == "ritz+lanczos"
    assert res.num_matvecs == counted.num_matvecs > 7
    _check(res, ref, 6, A=A)


def test_not_converged_warns_and_returns_partial_result():
    A = spectrum_matrix(_spectra()["clustered"], seed=0)
    with pytest.warns(ConvergenceWarning, match="not all converged"):
        res = lanczos(A, 10, tol=1e-12, max_iter=15)
    assert not res.converged and res.num_matvecs == 15
    assert res.eigenvectors.shape == (A.shape[0], 10)


def test_accepts_callables_and_float32():
    A = spectrum_matrix(torch.linspace(-1, 3, 40, dtype=torch.float64), seed=0)

    class Op:
        shape = (40, 40)

        def __call__(self, v):
            return A @ v

    res = lanczos(Op(), 2, tol=1e-10)
    assert torch.allclose(res.eigenvalues, torch.tensor([3.0, 3 - 4 / 39], dtype=torch.float64))
    res32 = lanczos(A.float(), 2)  # float32: tol 1e-4 → eigenvalue error ≤ 1e-4 relative
    assert res32.eigenvectors.dtype == torch.float32
    assert torch.allclose(res32.eigenvalues, res.eigenvalues, rtol=1e-4)


def test_user_errors():
    A = torch.eye(5, dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match="which"):
        lanczos(A, 2, which="top")
    with pytest.raises(InvalidArgumentError, match="k <= 5"):
        lanczos(A, 6)
    with pytest.raises(InvalidArgumentError, match="pair"):
        lanczos(A, (2, 1))
    with pytest.raises(InvalidArgumentError, match="square"):
        lanczos(torch.zeros(3, 4), 1)
    with pytest.raises(InvalidArgumentError, match="v0"):
        lanczos(A, 1, v0=torch.zeros(4))
    with pytest.raises(InvalidArgumentError, match="linear operator"):
        lanczos("H", 1)
    with pytest.raises(InvalidArgumentError, match="warm_start"):
        lanczos(A, 1, v0=torch.ones(5, 1), warm_start="best")
