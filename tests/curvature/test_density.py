"""Spectral density by SLQ: integrates to 1; moments match tr(H)/n and tr(H²)/n."""

from __future__ import annotations

import math

import pytest
import torch
from curvature_cases import dense_hessian, make_case, spectrum_matrix

from sgdscope.curvature import HessianOperator, spectral_density
from sgdscope.errors import InvalidArgumentError


def _matrix(n=80):
    g = torch.Generator().manual_seed(0)
    ev = torch.cat([torch.tensor([6.0, 4.0]), torch.randn(n - 2, generator=g) * 0.5]).double()
    return spectrum_matrix(ev, seed=1), ev


def test_integrates_to_one_and_moments():
    A, ev = _matrix()
    d = spectral_density(A, num_runs=30, num_iter=30, seed=0)
    assert torch.allclose(d.weights.sum(dim=1), torch.ones(30, dtype=torch.float64))
    # trapezoid on 1000 points over ±5σ of the nodes: error ≪ 1e-6
    assert float(torch.trapezoid(d.density, d.grid)) == pytest.approx(1.0, abs=1e-6)
    # Gaussian smoothing keeps the mean and adds σ² to the second moment
    m1 = float(torch.trapezoid(d.grid * d.density, d.grid))
    m2 = float(torch.trapezoid(d.grid**2 * d.density, d.grid))
    assert m1 == pytest.approx(d.moment(1), abs=1e-6)
    assert m2 == pytest.approx(d.moment(2) + d.sigma**2, abs=1e-6)
    # quadrature moments are Hutchinson estimates of tr(A^p)/n from 30 normalised probes:
    # standard error sqrt(2(‖A^p‖_F² − Σ diag²))/n/sqrt(30); allow 4 of them
    for p in (1, 2):
        Ap = torch.linalg.matrix_power(A, p)
        se = math.sqrt(2 * float(Ap.pow(2).sum() - Ap.diagonal().pow(2).sum())) / 80 / math.sqrt(30)
        assert abs(d.moment(p) - float(ev.pow(p).mean())) < 4 * se


def test_full_lanczos_recovers_the_spectrum():
    """With num_iter = n every run's nodes are all eigenvalues (with nonzero weight)."""
    A, ev = _matrix(20)
    d = spectral_density(A, num_runs=2, num_iter=20, sigma=1e-3)
    assert torch.allclose(torch.sort(d.nodes[0]).values, torch.sort(ev).values, atol=1e-8)
    # every run's quadrature reproduces vᵀAv and vᵀA²v (v normalised Rademacher)
    assert d.num_matvecs <= 40


def test_on_a_hessian_and_explicit_grid():
    model, loss_fn, data, bn_mode = make_case("mlp-tanh")
    H = dense_hessian(model, loss_fn, data, bn_mode)
    op = HessianOperator(model, loss_fn, data, dtype=torch.float64)
    n = op.shape[0]
    grid = torch.linspace(-2, 3, 2001)
    d = spectral_density(op, num_runs=3, num_iter=n, grid=grid, sigma=0.02)
    ev = torch.linalg.eigvalsh(H)
    assert float(d.nodes.max()) == pytest.approx(float(ev.max()), rel=1e-8)
    assert float(torch.trapezoid(d.density, d.grid)) == pytest.approx(1.0, abs=1e-3)


def test_user_errors():
    A, _ = _matrix(10)
    with pytest.raises(InvalidArgumentError, match="num_runs"):
        spectral_density(A, 0, 5)
    with pytest.raises(InvalidArgumentError, match="sigma"):
        spectral_density(A, 2, 5, sigma=0.0)
