"""Loss along the top eigenvectors: closed form on a quadratic, direct evaluation on an MLP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgdscope.eigenbasis import EigenBasis
from sgdscope.errors import BasisMismatchError, ConfigError, EigenvectorsUnavailableError
from sgdscope.probes import PROBES, When, build_probe, flat_params
from sgdscope.probes.eigendirection import DEFAULT_GRID, EigendirectionLossProbe

from .cases import CE, ETA, assert_unchanged, mlp_case, quadratic_case, snapshot


def test_default_grid_is_paper_a():
    want = sorted({0.0, *(s * c for c in (0.25, 0.5, 1, 2, 4, 8, 16) for s in (-1, 1))})
    assert list(DEFAULT_GRID) == want and len(want) == 15
    assert EigendirectionLossProbe().grid.tolist() == want


def test_quadratic_closed_form_along_two_directions():
    case = quadratic_case()
    ctx, q, lam = case.ctx, case.q, case.lam
    grid = [-2.0, -1.0, 0.5, 1.0, 3.0]
    probe = EigendirectionLossProbe(grid=grid, directions=2)
    theta_next = flat_params(ctx.model)
    m = probe.measure(ctx)
    assert torch.equal(flat_params(ctx.model), theta_next), "the model must keep θ_{t+1}"
    assert m.arrays["eigen_loss_grid"].tolist() == [-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]
    loss0 = case.loss(ctx.theta)
    for i in range(2):
        g = float(q[:, i] @ ctx.grad)
        c = m.arrays["eigen_loss_grid"]
        # L(θ + c u_i) with u_i = −η g_i e_i: L(θ) − c η g_i² + ½ c² η² g_i² λ_i
        want = loss0 - c * ETA * g**2 + 0.5 * c**2 * ETA**2 * g**2 * float(lam[i])
        np.testing.assert_allclose(m.arrays[f"eigen_loss_e{i + 1}"], want, rtol=0, atol=1e-10)
        assert math.isclose(m.scalars[f"eigen_step_e{i + 1}"], ETA * abs(g), rel_tol=1e-12)
        assert m.scalars[f"eigen_loss_cmin_e{i + 1}"] == c[int(np.argmin(want))]


@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlp_losses_equal_direct_evaluation_and_model_is_untouched(batchnorm):
    case = mlp_case(batchnorm=batchnorm)  # BatchNorm in eval mode, the basis's
    ctx = case.ctx
    before = snapshot(ctx.model)
    probe = EigendirectionLossProbe(directions=3, bn_mode="eval")
    m = probe.measure(ctx)
    for i in range(3):
        e = case.vectors[:, i]
        u = -ctx.lr * (e @ ctx.grad) * e
        want = [case.loss(ctx.theta + c * u) for c in m.arrays["eigen_loss_grid"]]
        np.testing.assert_allclose(m.arrays[f"eigen_loss_e{i + 1}"], want, rtol=1e-12)
    assert_unchanged(before, snapshot(ctx.model))  # θ_{t+1}, buffers, flags, RNG


def test_missing_or_mismatched_eigenbasis_is_a_clear_error():
    ctx = mlp_case().ctx
    with pytest.raises(BasisMismatchError, match=r"bn_mode='train'.*bn_mode='eval'"):
        EigendirectionLossProbe(bn_mode="train").measure(ctx)
    ctx.eigenbasis = EigenBasis(k=3).attach(ctx.model, CE, None)
    with pytest.raises(EigenvectorsUnavailableError, match="never refreshed"):
        EigendirectionLossProbe().measure(ctx)
    ctx.eigenbasis = None
    with pytest.raises(ConfigError, match="give the run an eigenbasis"):
        EigendirectionLossProbe().measure(ctx)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(grid=[]), "grid"),
        (dict(grid=[1, float("inf")]), "grid"),
        (dict(directions=0), "directions"),
        (dict(bn_mode="batch"), "bn_mode"),
    ],
)
def test_invalid_options(options, match):
    with pytest.raises(ConfigError, match=match):
        EigendirectionLossProbe(**options)


def test_registered_and_grid_without_zero():
    assert "eigen_loss" in PROBES
    probe = build_probe("eigen_loss", When(), grid=[1, -1], include_zero=False)
    assert probe.grid.tolist() == [-1.0, 1.0]
