"""power_iteration with deflation against eigvalsh."""

from __future__ import annotations

import pytest
import torch
from curvature_cases import spectrum_matrix

from sgdscope.curvature import ConvergenceWarning, lanczos, power_iteration


def test_top_eigenvalues_with_deflation():
    ev = torch.cat([torch.tensor([6.0, 4.0, 2.5]), torch.linspace(-1, 1, 60)]).double()
    A = spectrum_matrix(ev, seed=0)
    res = power_iteration(A, 3, tol=1e-9, max_iter=2000)
    # residual ≤ 1e-9·|λ| → eigenvalue within 1e-9·|λ| (Weyl)
    assert torch.allclose(res.eigenvalues, torch.tensor([6.0, 4.0, 2.5]).double(), rtol=1e-8)
    assert res.converged
    E = res.eigenvectors
    # deflated pairs also carry the earlier pairs' errors (≤ 1e-9·λ₁ each): bound 1e-8·λ₁
    assert bool(((A @ E - E * res.eigenvalues).norm(dim=0) <= 1e-8 * 6.0).all())


def test_largest_magnitude_not_largest_algebraic():
    """Documented: power iteration finds the most negative eigenvalue when it dominates."""
    ev = torch.cat([torch.tensor([-5.0, 3.0]), torch.linspace(-1, 1, 30)]).double()
    A = spectrum_matrix(ev, seed=1)
    assert float(power_iteration(A, 1, tol=1e-8).eigenvalues[0]) == pytest.approx(-5.0)
    assert float(lanczos(A, 1).eigenvalues[0]) == pytest.approx(3.0, rel=1e-6)


def test_warns_when_not_converged():
    A = spectrum_matrix(torch.tensor([1.0, 0.999999, 0.5, 0.1]).double(), seed=2)
    with pytest.warns(ConvergenceWarning):
        res = power_iteration(A, 1, tol=1e-12, max_iter=5)
    assert not res.converged and res.num_matvecs == 5


def test_warm_start_converges_at_once():
    A = spectrum_matrix(torch.tensor([3.0, 1.0, 0.2, -0.4]).double(), seed=3)
    ref = power_iteration(A, 1, tol=1e-10)
    again = power_iteration(A, 1, tol=1e-10, v0=ref.eigenvectors)
    assert again.num_matvecs <= 2
