"""Noise–curvature overlap against a dense float64 computation of C and H."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from sgdscope.errors import BasisMismatchError, ConfigError
from sgdscope.probes import PROBES, When, build_probe, flat_params
from sgdscope.probes._functional import per_sample_grads, unflatten
from sgdscope.probes.noise_curvature import NoiseCurvatureProbe

from .cases import context, fixed_basis, orthonormal

K = 3


def _setup(n_samples: int = 30, seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()  # n = 27
    x = torch.randn(n_samples, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (n_samples,))
    theta = flat_params(model)
    loss_fn = nn.functional.cross_entropy

    def loss_of(th, xb, yb):
        return loss_fn(torch.func.functional_call(model, unflatten(model, th), (xb,)), yb)

    # Dense references in float64: per-sample gradients one by one, C, H.
    grads = torch.stack(
        [torch.func.grad(loss_of)(theta, x[i : i + 1], y[i : i + 1]) for i in range(n_samples)]
    )
    centred = grads - grads.mean(0)
    cov = centred.T @ centred / n_samples
    hess = torch.func.jacrev(torch.func.jacrev(loss_of))(theta, x, y)
    lam_h, vec_h = torch.linalg.eigh(hess)
    lam_c, vec_c = torch.linalg.eigh(cov)
    dense = {
        "cov": cov,
        "hess": hess,
        "grads": grads,
        "vec_h": vec_h.flip(1)[:, :K],
        "lam_h": lam_h.flip(0)[:K],
        "vec_c": vec_c.flip(1)[:, :K],
        "lam_c": lam_c.flip(0)[:K],
    }
    basis = fixed_basis(model, dense["vec_h"], values=dense["lam_h"], dataset=(x, y))
    ctx = context(
        model,
        theta=theta,
        grad=grads.mean(0),
        theta_next=0.9 * theta,  # the model holds θ_{t+1} while probes measure
        data=(x, y),
        basis=basis,
    )
    return ctx, dense


def test_overlap_and_traces_equal_dense_float64():
    ctx, dense = _setup()
    before = copy.deepcopy(ctx.model.state_dict())
    probe = NoiseCurvatureProbe(k=K, max_samples=None, trace_method="exact")
    m = probe.measure(ctx)
    cos = torch.linalg.svdvals(dense["vec_c"].T @ dense["vec_h"])
    assert math.isclose(m.scalars["noise_overlap"], float((cos**2).mean()), rel_tol=1e-10)
    np.testing.assert_allclose(m.arrays["noise_principal_cosines"], cos.numpy(), rtol=1e-9)
    np.testing.assert_allclose(m.arrays["noise_eigenvalues_C"], dense["lam_c"].numpy(), rtol=1e-10)
    trace_c = float(torch.trace(dense["cov"]))
    trace_h = float(torch.trace(dense["hess"]))
    assert math.isclose(m.scalars["noise_trace_C"], trace_c, rel_tol=1e-10)
    assert math.isclose(m.scalars["noise_trace_H"], trace_h, rel_tol=1e-10)
    assert math.isclose(m.scalars["noise_trace_ratio"], trace_c / trace_h, rel_tol=1e-10)
    assert 0.0 <= m.scalars["noise_overlap"] <= 1.0
    for key, value in ctx.model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"


def test_overlap_is_one_for_the_same_subspace():
    ctx, dense = _setup()
    rotation = orthonormal(K, K, dtype=torch.float64, seed=4)
    ctx.eigenbasis.set(dense["vec_c"] @ rotation, step=0)
    m = NoiseCurvatureProbe(k=K, max_samples=None, trace_samples=2).measure(ctx)
    assert math.isclose(m.scalars["noise_overlap"], 1.0, rel_tol=1e-10)


def test_per_sample_grads_match_a_loop():
    ctx, dense = _setup()
    x, y = ctx.data
    theta = ctx.theta
    g = per_sample_grads(ctx.model, ctx.loss_fn, x, y, theta, chunk_size=7)
    torch.testing.assert_close(g, dense["grads"], rtol=1e-12, atol=1e-14)


def test_hutchinson_trace_converges():
    ctx, dense = _setup()
    hess = dense["hess"]
    m = 400
    probe = NoiseCurvatureProbe(k=K, max_samples=None, trace_samples=m, seed=1)
    got, stderr = probe.hessian_trace(ctx)
    # Rademacher variance: 2 Σ_{i≠j} H_ij²; allow 4 standard errors.
    se = math.sqrt(2 * float((hess**2).sum() - (hess.diagonal() ** 2).sum()) / m)
    assert abs(got - float(torch.trace(hess))) < 4 * se
    assert 0.5 * se < stderr < 2 * se
    # a new draw at each measurement, reproducible from the probe's state
    state = probe.state_dict()
    again, _ = probe.hessian_trace(ctx)
    fresh = NoiseCurvatureProbe(k=K, max_samples=None, trace_samples=m, seed=7)
    fresh.load_state_dict(state)
    assert again != got and fresh.hessian_trace(ctx)[0] == again


def test_max_samples_is_a_fixed_subset():
    ctx, _ = _setup(n_samples=30)
    probe = NoiseCurvatureProbe(k=2, max_samples=12, trace_samples=2)
    a = probe.measure(ctx).scalars["noise_trace_C"]
    b = probe.measure(ctx).scalars["noise_trace_C"]
    c = NoiseCurvatureProbe(k=2, max_samples=None, trace_samples=2).measure(ctx)
    assert a == b and a != c.scalars["noise_trace_C"]


def test_batchnorm_needs_eval_mode():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with pytest.raises(ConfigError, match="bn_mode='eval'"):
        per_sample_grads(
            model, nn.functional.cross_entropy, x, y, flat_params(model), bn_mode="train"
        )
    g = per_sample_grads(model.eval(), nn.functional.cross_entropy, x, y, flat_params(model))
    assert g.shape == (8, flat_params(model).numel())


def test_missing_or_mismatched_eigenbasis_is_a_clear_error():
    ctx, _ = _setup()
    with pytest.raises(BasisMismatchError, match="bn_mode='train'"):
        NoiseCurvatureProbe(k=K, bn_mode="train").measure(ctx)
    with pytest.raises(ConfigError, match="holds k=3"):
        NoiseCurvatureProbe(k=5).measure(ctx)
    ctx.eigenbasis = None
    with pytest.raises(ConfigError, match="give the run an eigenbasis"):
        NoiseCurvatureProbe().measure(ctx)


def test_measures_on_the_eigenbasis_data():
    """C and tr(H) are of the basis's data, not of the context's."""
    ctx, dense = _setup()
    x, y = ctx.data
    ctx.data = (x[:5], y[:5])  # what the run's data would be; the basis keeps (x, y)
    m = NoiseCurvatureProbe(k=K, max_samples=None, trace_method="exact").measure(ctx)
    assert math.isclose(m.scalars["noise_trace_C"], float(torch.trace(dense["cov"])), rel_tol=1e-10)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(k=0), "k=0"),
        (dict(max_samples=1), "max_samples"),
        (dict(trace_method="lanczos"), "trace_method"),
        (dict(trace_samples=1), "trace_samples"),
        (dict(trace_method="hutch++", trace_samples=5), ">= 6"),
        (dict(dtype="float16"), "dtype"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(bn_mode="batch"), "bn_mode"),
    ],
)
def test_invalid_options(options, match):
    with pytest.raises(ConfigError, match=match):
        NoiseCurvatureProbe(**options)


def test_registered_with_hvp_flag():
    assert PROBES.flags("noise_curvature")["needs_hvp"] is True
    probe = build_probe("noise_curvature", When(every=100), k=2, dtype="float64")
    assert isinstance(probe, NoiseCurvatureProbe) and probe.dtype is torch.float64
