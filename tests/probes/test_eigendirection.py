"""Loss along the top eigenvectors: closed form on a quadratic, direct evaluation on an MLP."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from sgdscope.errors import ConfigError
from sgdscope.probes import PROBES, ProbeContext, When, build_probe, flat_params
from sgdscope.probes.alignment import unflatten
from sgdscope.probes.eigendirection import DEFAULT_GRID, EigendirectionLossProbe

from .test_step_scale import ETA, quadratic_ctx


def test_default_grid_is_paper_a():
    want = sorted({0.0, *(s * c for c in (0.25, 0.5, 1, 2, 4, 8, 16) for s in (-1, 1))})
    assert list(DEFAULT_GRID) == want and len(want) == 15
    assert EigendirectionLossProbe().grid.tolist() == want


def test_quadratic_closed_form_along_two_directions():
    ctx, q, lam = quadratic_ctx()
    grid = [-2.0, -1.0, 0.5, 1.0, 3.0]
    probe = EigendirectionLossProbe(grid=grid, directions=2)
    theta_next = flat_params(ctx.model)
    m = probe.measure(ctx)
    assert torch.equal(flat_params(ctx.model), theta_next), "the model must keep θ_{t+1}"
    assert m.arrays["eigen_loss_grid"].tolist() == [-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]
    a, b = ctx.model.a, ctx.model.b
    loss0 = float(0.5 * ctx.theta @ a @ ctx.theta - b @ ctx.theta)
    for i in range(2):
        g = float(q[:, i] @ ctx.grad)
        c = m.arrays["eigen_loss_grid"]
        # L(θ + c u_i) with u_i = −η g_i e_i: L(θ) − c η g_i² + ½ c² η² g_i² λ_i
        want = loss0 - c * ETA * g**2 + 0.5 * c**2 * ETA**2 * g**2 * float(lam[i])
        np.testing.assert_allclose(m.arrays[f"eigen_loss_e{i + 1}"], want, rtol=0, atol=1e-10)
        assert math.isclose(m.scalars[f"eigen_step_e{i + 1}"], ETA * abs(g), rel_tol=1e-12)
        assert m.scalars[f"eigen_loss_cmin_e{i + 1}"] == c[int(np.argmin(want))]


def _mlp_ctx(batchnorm: bool = False):
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(4, 6)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(6))
    layers += [nn.Tanh(), nn.Linear(6, 3)]
    model = nn.Sequential(*layers).double()
    x = torch.randn(40, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    if batchnorm:  # non-trivial running statistics
        with torch.no_grad():
            model.train()(x)
    model.eval()
    loss_fn = nn.functional.cross_entropy
    theta = flat_params(model)

    def loss_of(th: torch.Tensor) -> torch.Tensor:
        return loss_fn(torch.func.functional_call(model, unflatten(model, th), (x,)), y)

    grad = torch.func.grad(loss_of)(theta)
    hess = torch.func.jacrev(torch.func.jacrev(loss_of))(theta)
    _, vecs = torch.linalg.eigh(hess)
    with torch.no_grad():  # the model holds θ_{t+1} while probes measure
        for p, g in zip(model.parameters(), unflatten(model, grad).values(), strict=True):
            p -= 0.1 * g
    ctx = ProbeContext(
        model=model,
        loss_fn=loss_fn,
        step=3,
        epoch=0,
        lr=0.1,
        theta0=theta,
        grad=grad,
        theta=theta,
        theta_next=flat_params(model),
        data=(x, y),
        shared={"eigenvectors": vecs.flip(1)[:, :3], "eigen_step": 3},
    )
    return ctx, loss_of


@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlp_losses_equal_direct_evaluation_and_model_is_untouched(batchnorm):
    ctx, loss_of = _mlp_ctx(batchnorm)
    before = copy.deepcopy(ctx.model.state_dict())
    probe = EigendirectionLossProbe(directions=3, bn_mode="eval")
    m = probe.measure(ctx)
    vecs = ctx.shared["eigenvectors"]
    for i in range(3):
        e = vecs[:, i]
        u = -ctx.lr * (e @ ctx.grad) * e
        want = [float(loss_of(ctx.theta + c * u)) for c in m.arrays["eigen_loss_grid"]]
        np.testing.assert_allclose(m.arrays[f"eigen_loss_e{i + 1}"], want, rtol=1e-12)
    for key, value in ctx.model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
    assert not ctx.model.training


def test_missing_eigenvectors_is_a_clear_error():
    ctx, _ = _mlp_ctx()
    ctx.shared.clear()
    with pytest.raises(ConfigError, match=r"add a `sharpness` probe.*eigen_source=own"):
        EigendirectionLossProbe().measure(ctx)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(grid=[]), "grid"),
        (dict(grid=[1, float("inf")]), "grid"),
        (dict(directions=0), "directions"),
        (dict(batch_size=0), "batch_size"),
    ],
)
def test_invalid_options(options, match):
    with pytest.raises(ConfigError, match=match):
        EigendirectionLossProbe(**options)


def test_registered_and_grid_without_zero():
    assert "eigen_loss" in PROBES
    probe = build_probe("eigen_loss", When(), grid=[1, -1], include_zero=False)
    assert probe.grid.tolist() == [-1.0, 1.0]
