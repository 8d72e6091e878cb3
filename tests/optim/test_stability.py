"""Linear-stability thresholds of every optimizer: the formulas, the dynamics they predict on a
one-dimensional quadratic, and the Adam preconditioner read from the optimizer's state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgdscope.eigenbasis import RandomBasis
from sgdscope.optim import (
    OPTIMIZERS,
    SGD,
    Adam,
    AdamW,
    IsotropicNoiseGD,
    NudgedSGD,
    ProjectedSGD,
    is_preconditioned,
    preconditioner,
    stability_threshold,
)

ETA = 0.05
REL = 1e-12  # the formulas in float64: a few roundings


def _params():
    torch.manual_seed(0)
    return list(nn.Linear(3, 2).parameters())


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: SGD(p, lr=ETA), 2 / ETA),
        (lambda p: SGD(p, lr=ETA, momentum=0.9), (2 + 2 * 0.9) / ETA),
        (lambda p: SGD(p, lr=ETA, momentum=0.5, nesterov=True), 2 * 1.5 / (2.0 * ETA)),
        (lambda p: SGD(p, lr=ETA, weight_decay=0.1), 2 / ETA),
        (lambda p: Adam(p, lr=ETA), 38 / ETA),
        (lambda p: AdamW(p, lr=ETA, betas=(0.5, 0.9)), (2 + 1.0) / (0.5 * ETA)),
        (lambda p: IsotropicNoiseGD(p, lr=ETA, sigma=0.1), 2 / ETA),
        (lambda p: NudgedSGD(p, lr=ETA, gamma=1.0, momentum=0.5), 3 / ETA),
        (lambda p: torch.optim.SGD(p, lr=ETA), 2 / ETA),
        (lambda p: torch.optim.SGD(p, lr=ETA, momentum=0.9), 3.8 / ETA),
        (lambda p: torch.optim.SGD(p, lr=ETA, momentum=0.9, dampening=0.9), 3.8 / (0.1 * ETA)),
        (lambda p: torch.optim.SGD(p, lr=ETA, momentum=0.9, nesterov=True), 3.8 / (2.8 * ETA)),
        (lambda p: torch.optim.Adam(p, lr=ETA), 38 / ETA),
        (lambda p: torch.optim.AdamW(p, lr=ETA, betas=(0.0, 0.9)), 2 / ETA),
    ],
)
def test_thresholds_equal_the_formulas(make, expected) -> None:
    opt = make(_params())
    assert stability_threshold(opt) == pytest.approx(expected, rel=REL)
    if hasattr(opt, "stability_threshold"):
        assert opt.stability_threshold() == pytest.approx(expected, rel=REL)
    adaptive = isinstance(opt, (Adam, torch.optim.Adam))
    assert is_preconditioned(opt) == adaptive


def test_projected_sgd_reports_the_sgd_threshold_and_unknown_optimizers_nan() -> None:
    p = _params()
    basis = RandomBasis(k=1, every=None)
    assert ProjectedSGD(p, lr=ETA, basis=basis).stability_threshold() == pytest.approx(2 / ETA)
    assert math.isnan(stability_threshold(torch.optim.Adagrad(p, lr=ETA)))
    assert math.isnan(stability_threshold(None))
    assert stability_threshold(SGD(p, lr=0.0)) == math.inf


def test_every_registered_optimizer_reports_a_threshold() -> None:
    """The registry's optimizers are chains: each knows its threshold (finite for η > 0)."""
    for name in OPTIMIZERS.names():
        assert name in ("adam", "adamw", "nsgd", "noisy_gd", "projected_sgd", "sgd"), name
    for opt in (SGD(_params(), lr=ETA), Adam(_params(), lr=ETA), AdamW(_params(), lr=ETA)):
        assert math.isfinite(opt.stability_threshold())


def _orbit(opt_factory, lam: float, steps: int = 400) -> float:
    """|θ_T| / |θ_0| of the optimizer on L = ½ λ θ² (one parameter)."""
    theta = nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = opt_factory([theta])
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * lam * theta**2).sum().backward()
        opt.step()
    return float(theta.detach().abs())


@pytest.mark.parametrize(
    "factory",
    [
        lambda p: SGD(p, lr=ETA),
        lambda p: SGD(p, lr=ETA, momentum=0.9),
        lambda p: SGD(p, lr=ETA, momentum=0.6, nesterov=True),
    ],
    ids=["gd", "heavy-ball", "nesterov"],
)
def test_the_threshold_separates_convergence_from_divergence(factory) -> None:
    """On a quadratic of curvature λ the iterates shrink just below the threshold and blow up
    just above it: the threshold is the edge of stability of the actual update rule."""
    thr = factory([nn.Parameter(torch.zeros(1))]).stability_threshold()
    assert _orbit(factory, 0.97 * thr) < 1e-2
    assert _orbit(factory, 1.03 * thr) > 1e2


def test_adam_threshold_is_the_edge_of_the_frozen_preconditioner_dynamics() -> None:
    """With P frozen, Adam's update on ½ λ θ² (λ of P⁻¹ᐟ²HP⁻¹ᐟ²) is heavy-ball with dampening
    1 − β₁: its iteration matrix has spectral radius 1 exactly at (2 + 2β₁)/((1 − β₁)η)."""
    beta1 = 0.9
    thr = Adam(_params(), lr=ETA, betas=(beta1, 0.999)).stability_threshold()

    def radius(lam: float) -> float:
        # m' = β₁ m + (1 − β₁) λ θ ; θ' = θ − η m'
        a = np.array([[beta1, (1 - beta1) * lam], [-ETA * beta1, 1 - ETA * (1 - beta1) * lam]])
        return float(np.abs(np.linalg.eigvals(a)).max())

    assert radius(thr) == pytest.approx(1.0, abs=1e-9)
    assert radius(0.99 * thr) < 1 < radius(1.01 * thr)


@pytest.mark.parametrize("cls", [Adam, AdamW, torch.optim.Adam, torch.optim.AdamW])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_preconditioner_is_sqrt_of_the_bias_corrected_second_moment_plus_eps(cls, amsgrad):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    params = list(model.parameters())
    opt = cls(params, lr=0.01, betas=(0.9, 0.95), eps=1e-3, amsgrad=amsgrad)
    assert preconditioner(opt, params) is None  # no step yet
    x = torch.randn(8, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (8,))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    diag = preconditioner(opt, params)
    assert diag is not None
    for p, d in zip(params, diag, strict=True):
        s = opt.state[p]
        v = s["max_exp_avg_sq"] if amsgrad else s["exp_avg_sq"]
        expected = torch.sqrt(v / (1 - 0.95 ** float(s["step"]))) + 1e-3
        torch.testing.assert_close(d, expected, rtol=1e-15, atol=0)


def test_sgd_has_no_preconditioner() -> None:
    p = _params()
    assert preconditioner(SGD(p, lr=0.1), p) is None
    assert preconditioner(torch.optim.SGD(p, lr=0.1), p) is None
