"""Hutchinson trace and Frobenius norm: unbiased, converging as 1/sqrt(samples) (seeded)."""

from __future__ import annotations

import math

import pytest
import torch
from curvature_cases import dense_hessian, make_case, spectrum_matrix

from sgdscope.curvature import HessianOperator, frobenius_norm, hutchinson_trace
from sgdscope.errors import InvalidArgumentError

N = 60
SEEDS = 40


def _matrix():
    g = torch.Generator().manual_seed(0)
    ev = torch.cat([torch.tensor([5.0, 3.0, 2.0]), 0.5 * torch.randn(N - 3, generator=g)])
    return spectrum_matrix(ev.double(), seed=0)


def _hutch_variance(A):
    # Var(vᵀAv) for Rademacher v = 2(‖A‖_F² − Σ A_ii²)
    return 2 * (A.pow(2).sum() - A.diagonal().pow(2).sum())


def _fro_variance(A):
    # ‖Av‖² = vᵀA²v: the same formula with A² in place of A
    return _hutch_variance(A @ A)


@pytest.mark.parametrize(
    "estimator, exact, variance",
    [
        (hutchinson_trace, lambda A: A.trace(), _hutch_variance),
        (frobenius_norm, lambda A: (A @ A).trace(), _fro_variance),
    ],
)
def test_unbiased_and_one_over_sqrt_samples(estimator, exact, variance):
    A = _matrix()
    truth = float(exact(A))
    sd = math.sqrt(float(variance(A)))
    rms = {}
    for m in (8, 128):
        ests = []
        for seed in range(SEEDS):
            e = estimator(A, m, seed=seed)
            # the Frobenius estimate is sqrt(mean ‖Av‖²): square it back to the unbiased mean
            ests.append(e.estimate**2 if estimator is frobenius_norm else e.estimate)
            if estimator is hutchinson_trace:
                # reported standard error estimates the true one, sd/sqrt(m) (loosely at m=8)
                assert 0.2 < e.stderr / (sd / math.sqrt(m)) < 3.0
        ests_t = torch.tensor(ests, dtype=torch.float64)
        # unbiased: the mean of 40 seeds lies within 4 standard errors of the truth
        assert abs(float(ests_t.mean()) - truth) < 4 * sd / math.sqrt(m * SEEDS)
        rms[m] = float((ests_t - truth).pow(2).mean().sqrt())
        # the error is sd/sqrt(m): a chi distribution with 40 dof lies in [0.6, 1.4] of it
        assert 0.6 < rms[m] / (sd / math.sqrt(m)) < 1.4
    # 16× the samples: 4× smaller error
    assert 2.5 < rms[8] / rms[128] < 6.4


def test_frobenius_standard_error_by_delta_method():
    A = _matrix()
    e = frobenius_norm(A, 64, seed=3)
    sq = e.samples
    assert e.estimate == pytest.approx(math.sqrt(float(sq.mean())))
    assert e.stderr == pytest.approx(float(sq.std()) / 8 / (2 * e.estimate))


def test_hutchpp_beats_hutchinson_on_dominant_spectrum():
    g = torch.Generator().manual_seed(1)
    ev = torch.cat([torch.linspace(20, 5, 10), 0.1 * torch.randn(N - 10, generator=g)]).double()
    A = spectrum_matrix(ev, seed=2)
    truth = float(A.trace())
    err_h = [abs(hutchinson_trace(A, 30, seed=s).estimate - truth) for s in range(20)]
    err_pp = [
        abs(hutchinson_trace(A, 30, seed=s, method="hutch++").estimate - truth) for s in range(20)
    ]
    assert sum(err_pp) < 0.3 * sum(err_h)


def test_on_a_hessian_operator():
    model, loss_fn, data, bn_mode = make_case("cnn")
    H = dense_hessian(model, loss_fn, data, bn_mode)
    op = HessianOperator(model, loss_fn, data, dtype=torch.float64)
    tr = hutchinson_trace(op, 40, seed=0)
    assert abs(tr.estimate - float(H.trace())) < 5 * tr.stderr
    assert op.num_matvecs == 40
    fro = frobenius_norm(op, 40, seed=0)
    assert abs(fro.estimate - float(H.norm())) < 5 * fro.stderr


def test_user_errors():
    A = torch.eye(4, dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match="num_samples"):
        hutchinson_trace(A, 1)
    with pytest.raises(InvalidArgumentError, match="method"):
        hutchinson_trace(A, 10, method="xtrace")
    # exact for the identity: every Rademacher sample is n
    assert hutchinson_trace(A, 5).estimate == 4.0
