"""Gradient–eigenvector alignment: constructed gradients, the random baseline, full-batch cosine."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sgdscope.errors import ConfigError
from sgdscope.probes import PROBES, ProbeContext, When, build_probe, flat_params
from sgdscope.probes.alignment import AlignmentProbe, unflatten


def _ctx(model: nn.Module, grad: torch.Tensor, vectors: torch.Tensor | None, **kw) -> ProbeContext:
    theta = flat_params(model)
    shared = {} if vectors is None else {"eigenvectors": vectors, "eigen_step": 0}
    return ProbeContext(
        model=model,
        loss_fn=nn.functional.cross_entropy,
        step=kw.pop("step", 4),
        epoch=0,
        lr=0.1,
        theta0=theta,
        grad=grad,
        theta=theta,
        shared=shared,
        **kw,
    )


def test_alignment_of_a_constructed_gradient():
    model = nn.Linear(10, 5).double()  # n = 55
    n = 55
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(n, 7, generator=gen, dtype=torch.float64)).Q
    vectors, w = basis[:, :6], basis[:, 6]  # w ⟂ every e_i
    coef = torch.tensor([3.0, -1.0, 0.0, 2.0, -0.5, 4.0], dtype=torch.float64)
    c_w = 5.0
    grad = vectors @ coef + c_w * w
    norm = math.sqrt(float(coef @ coef) + c_w**2)
    m = AlignmentProbe(k=6).measure(_ctx(model, grad, vectors))
    want = [abs(float(c)) / norm for c in coef]
    for i, c in enumerate(want, start=1):
        assert math.isclose(m.scalars[f"alignment_{i}"], c, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(m.scalars["alignment_mean5"], sum(want[:5]) / 5, rel_tol=1e-12)
    assert m.arrays["alignment"].tolist() == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert m.scalars["eigen_age"] == 4.0
    # in float32 too (device/dtype follow θ); the cosine is computed in float64
    m32 = AlignmentProbe(k=2).measure(_ctx(model.float(), grad.float(), vectors))
    assert math.isclose(m32.scalars["alignment_1"], want[0], rel_tol=1e-5)


def test_random_baseline_mean_is_sqrt_2_over_pi_n():
    """E|cos(g, r)| for a Gaussian direction r in n dimensions ≈ sqrt(2/(πn)) (seeded)."""
    model = nn.Linear(20, 20)  # n = 420
    n = 420
    gen = torch.Generator().manual_seed(1)
    grad = torch.randn(n, generator=gen)
    vectors = torch.linalg.qr(torch.randn(n, 2, generator=gen)).Q
    probe = AlignmentProbe(k=2, seed=5)
    ctx = _ctx(model, grad, vectors)
    draws = [probe.measure(ctx).scalars["alignment_random"] for _ in range(4000)]
    mean = sum(draws) / len(draws)
    # std of |cos| ≈ sqrt((1 − 2/π)/n) ≈ 0.029: the mean of 4000 draws is within ±0.0005 (1σ)
    assert math.isclose(mean, math.sqrt(2 / (math.pi * n)), rel_tol=0.05), mean
    assert len(set(draws)) == len(draws), "a fresh direction at every measurement"


def test_random_baseline_is_restored_with_the_state():
    model = nn.Linear(4, 3)
    grad = torch.randn(15)
    vectors = torch.linalg.qr(torch.randn(15, 1)).Q
    probe = AlignmentProbe(k=1, seed=2)
    probe.measure(_ctx(model, grad, vectors))
    fresh = AlignmentProbe(k=1, seed=99)
    fresh.load_state_dict(probe.state_dict())
    a = probe.measure(_ctx(model, grad, vectors)).scalars["alignment_random"]
    b = fresh.measure(_ctx(model, grad, vectors)).scalars["alignment_random"]
    assert a == b


def test_full_batch_cosine_at_theta_t_without_touching_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(30, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (30,))
    theta_t = flat_params(model)

    def loss_of(th, xb, yb):
        return nn.functional.cross_entropy(
            torch.func.functional_call(model, unflatten(model, th), (xb,)), yb
        )

    full = torch.func.grad(loss_of)(theta_t, x, y)
    mini = torch.func.grad(loss_of)(theta_t, x[:8], y[:8])
    with torch.no_grad():  # the model holds θ_{t+1}
        for p in model.parameters():
            p.add_(0.3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    before = copy.deepcopy(model.state_dict())
    data = SimpleNamespace(train=(x, y), probe=(x[:10], y[:10]))
    ctx = _ctx(model, mini, torch.linalg.qr(torch.randn(theta_t.numel(), 1)).Q.double(), data=data)
    ctx.theta = theta_t
    m = AlignmentProbe(k=1, full_batch=True, batch_size=7).measure(ctx)
    want = float(mini @ full / (mini.norm() * full.norm()))
    assert math.isclose(m.scalars["alignment_full_batch"], want, rel_tol=1e-12)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_missing_or_too_few_eigenvectors_are_config_errors():
    model = nn.Linear(4, 3)
    grad = torch.randn(15)
    with pytest.raises(ConfigError, match="add a `sharpness` probe"):
        AlignmentProbe().measure(_ctx(model, grad, None))
    with pytest.raises(ConfigError, match="top 5 eigenvectors but only 2"):
        AlignmentProbe(k=5).measure(_ctx(model, grad, torch.linalg.qr(torch.randn(15, 2)).Q))
    with pytest.raises(ConfigError, match=r"n=15"):
        AlignmentProbe(k=1).measure(_ctx(model, grad, torch.randn(14, 2)))


def test_own_eigenvectors_through_curvature():
    curvature = pytest.importorskip("sgdscope.curvature")
    if not hasattr(curvature, "lanczos"):
        pytest.skip("sgdscope.curvature does not export lanczos yet")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    theta = flat_params(model)

    def loss_of(th):
        return nn.functional.cross_entropy(
            torch.func.functional_call(model, unflatten(model, th), (x,)), y
        )

    _, vecs = torch.linalg.eigh(torch.func.jacrev(torch.func.jacrev(loss_of))(theta))
    grad = torch.randn(theta.numel(), dtype=torch.float64)
    ctx = _ctx(model, grad, None, data=(x, y))
    probe = AlignmentProbe(k=2, eigen_source="own", refresh_every=5, lanczos_tol=1e-10)
    m = probe.measure(ctx)
    want = (vecs.flip(1)[:, :2].T @ grad).abs() / grad.norm()
    assert m.arrays["alignment"].tolist() == pytest.approx(want.tolist(), rel=1e-6)
    assert m.scalars["eigen_age"] == 0.0


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(k=0), "k=0"),
        (dict(full_batch_split="val"), "full_batch_split"),
        (dict(refresh_every=0), "refresh_every"),
        (dict(bn_mode="batch"), "bn_mode"),
    ],
)
def test_invalid_options(options, match):
    with pytest.raises(ConfigError, match=match):
        AlignmentProbe(**options)


def test_registered_with_option_check():
    assert "alignment" in PROBES
    probe = build_probe("alignment", When(every=2), k=3, full_batch=True)
    assert isinstance(probe, AlignmentProbe) and probe.k == 3
    with pytest.raises(ConfigError, match="did you mean 'full_batch'"):
        build_probe("alignment", When(), fullbatch=True)
