"""The α-test on a quadratic with a known eigenbasis matches its closed form; epoch means; state."""

from __future__ import annotations

import math

import pytest
import torch

from sgdscope.errors import ConfigError
from sgdscope.probes import PROBES, When, build_probe, flat_params
from sgdscope.probes.step_scale import StepScaleProbe

from .cases import ETA, fixed_basis, mean_loss, quadratic_case


def closed_form(alpha: float, lam: torch.Tensor, g: torch.Tensor) -> float:
    """ΔL(α) for a step −η Σ g_i e_i on a quadratic: Σ −αη g_i² + ½ λ_i α² η² g_i²."""
    return float((-alpha * ETA * g**2 + 0.5 * lam * alpha**2 * ETA**2 * g**2).sum())


def test_alpha_test_matches_closed_form():
    case = quadratic_case()
    ctx, q, lam = case.ctx, case.q, case.lam
    probe = StepScaleProbe(alphas=[0.25, 0.5, 1, 2, 4], ks=[1, 5], seed=3)
    theta_next = flat_params(ctx.model)
    m = probe.measure(ctx)
    assert torch.equal(flat_params(ctx.model), theta_next), "the model must keep θ_{t+1}"
    g = q.T @ ctx.grad  # components g_i = ⟨g_t, e_i⟩
    for alpha in (0.25, 0.5, 1.0, 2.0, 4.0):
        a = f"{alpha:g}"
        for k in (1, 5):
            want = closed_form(alpha, lam[:k], g[:k])
            assert math.isclose(m.scalars[f"alpha_test_k{k}_a{a}"], want, abs_tol=1e-10), (k, a)
        for i in range(5):
            want = closed_form(alpha, lam[i : i + 1], g[i : i + 1])
            assert math.isclose(m.scalars[f"alpha_test_e{i + 1}_a{a}"], want, abs_tol=1e-10)
        # the random baseline: the probe's first draw from its seeded generator
        r = torch.randn(10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        r = r / r.norm()
        gr = r @ ctx.grad
        want = float(-alpha * ETA * gr**2 + 0.5 * alpha**2 * ETA**2 * gr**2 * (r @ ctx.model.a @ r))
        assert math.isclose(m.scalars[f"alpha_test_random_a{a}"], want, abs_tol=1e-10)
    assert m.arrays["alpha_test_alphas"].tolist() == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert m.arrays["alpha_test_k1"].shape == (5,)
    # Paper A's finding holds where ηλ₁ = 1.5 > 1 (the step overshoots the minimum along e_1):
    assert m.scalars["alpha_test_e1_a0.5"] < m.scalars["alpha_test_e1_a1"]
    assert m.scalars["alpha_test_e1_a2"] > 0


def test_matched_random_scale_moves_as_far_as_the_top_step():
    case = quadratic_case()
    ctx = case.ctx
    probe = StepScaleProbe(alphas=[1], ks=[1], per_direction=False, random_scale="matched")
    m = probe.measure(ctx)
    r = torch.randn(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = r / r.norm()
    step = ETA * abs(float(case.q[:, 0] @ ctx.grad))
    want = case.loss(ctx.theta - step * r) - case.loss(ctx.theta)
    assert math.isclose(m.scalars["alpha_test_random_a1"], want, abs_tol=1e-10)
    assert set(m.scalars) == {"alpha_test_k1_a1", "alpha_test_random_a1"}


def test_epoch_means_and_resume_mid_epoch():
    probe = StepScaleProbe(alphas=[0.5, 2], ks=[1], per_direction=False, random_baseline=False)
    ctxs = [quadratic_case(seed=s, step=s).ctx for s in range(3)]
    values = [probe.measure(c).scalars for c in ctxs[:2]]
    # resume after two of three measurements: a fresh probe with the saved state
    fresh = StepScaleProbe(alphas=[0.5, 2], ks=[1], per_direction=False, random_baseline=False)
    fresh.load_state_dict(probe.state_dict())
    values.append(fresh.measure(ctxs[2]).scalars)
    epoch = fresh.on_epoch_end(ctxs[2])
    assert epoch is not None
    for key in ("alpha_test_k1_a0.5", "alpha_test_k1_a2"):
        want = sum(v[key] for v in values) / 3
        assert math.isclose(epoch.scalars[key.replace("test_", "test_epoch_")], want, rel_tol=1e-12)
    assert epoch.scalars["alpha_test_epoch_count"] == 3
    assert fresh.on_epoch_end(ctxs[2]) is None, "sums reset after each epoch"


def test_needs_an_eigenbasis_with_enough_directions():
    case = quadratic_case()
    ctx = case.ctx
    ctx.eigenbasis = fixed_basis(ctx.model, case.q[:, :2], dataset=ctx.data, loss_fn=mean_loss)
    with pytest.raises(ConfigError, match="top 5 eigenvectors but the eigenbasis holds k=2"):
        StepScaleProbe(ks=[1, 5]).measure(ctx)
    StepScaleProbe(ks=[1, 2]).measure(ctx)  # enough
    ctx.eigenbasis = None
    with pytest.raises(ConfigError, match="give the run an eigenbasis"):
        StepScaleProbe().measure(ctx)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(alphas=[]), "alphas"),
        (dict(alphas=["x"]), "alphas"),
        (dict(ks=[0]), "ks"),
        (dict(random_scale="huge"), "random_scale"),
        (dict(bn_mode="running"), "bn_mode"),
    ],
)
def test_invalid_options(options, match):
    with pytest.raises(ConfigError, match=match):
        StepScaleProbe(**options)


def test_registered():
    assert "step_scale" in PROBES
    probe = build_probe("step_scale", When(every=10), alphas=[0.5, 1, 2])
    assert isinstance(probe, StepScaleProbe) and probe.due(20, 0) and not probe.due(5, 0)
    with pytest.raises(ConfigError, match="did you mean 'alphas'"):
        build_probe("step_scale", When(), alpha=[1])
    with pytest.raises(ConfigError, match="unknown option"):  # the eigenbasis's option now
        build_probe("step_scale", When(), eigen_source="lanczos")
