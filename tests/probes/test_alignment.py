"""Gradient–eigenvector alignment: constructed gradients, the random baseline, the full-batch
cosine, and the eigenbasis refreshing itself along a loop."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sgdscope.eigenbasis import EigenBasis
from sgdscope.errors import BasisMismatchError, ConfigError, EigenvectorsUnavailableError
from sgdscope.probes import PROBES, ProbeSet, When, build_probe, flat_params
from sgdscope.probes.alignment import AlignmentProbe

from .cases import (
    CE,
    context,
    dense_hessian,
    fixed_basis,
    full_grad,
    make_bundle,
    make_mlp,
    orthonormal,
    run_loop,
    top_eigh,
)


def _ctx(model: nn.Module, grad: torch.Tensor, vectors: torch.Tensor | None, **kw):
    """A context at the model's θ with the given gradient and a basis holding ``vectors``
    (computed at step 0)."""
    basis = None if vectors is None else fixed_basis(model, vectors, step=0)
    return context(model, theta=flat_params(model), grad=grad, basis=basis, step=4, **kw)


def test_alignment_of_a_constructed_gradient():
    model = nn.Linear(10, 5).double()  # n = 55
    basis = orthonormal(55, 7, dtype=torch.float64, seed=0)
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
    assert m.scalars["eigen_age"] == 4.0  # the context's step 4 minus the basis's step 0
    # in float32 too (the basis follows the model's dtype); the cosine is computed in float64
    m32 = AlignmentProbe(k=2).measure(_ctx(model.float(), grad.float(), vectors))
    assert math.isclose(m32.scalars["alignment_1"], want[0], rel_tol=1e-5)


def test_random_baseline_mean_is_sqrt_2_over_pi_n():
    """E|cos(g, r)| for a Gaussian direction r in n dimensions ≈ sqrt(2/(πn)) (seeded)."""
    model = nn.Linear(20, 20)  # n = 420
    n = 420
    grad = torch.randn(n, generator=torch.Generator().manual_seed(1))
    probe = AlignmentProbe(k=2, seed=5)
    ctx = _ctx(model, grad, orthonormal(n, 2, seed=1))
    draws = [probe.measure(ctx).scalars["alignment_random"] for _ in range(4000)]
    mean = sum(draws) / len(draws)
    # std of |cos| ≈ sqrt((1 − 2/π)/n) ≈ 0.029: the mean of 4000 draws is within ±0.0005 (1σ)
    assert math.isclose(mean, math.sqrt(2 / (math.pi * n)), rel_tol=0.05), mean
    assert len(set(draws)) == len(draws), "a fresh direction at every measurement"


def test_random_baseline_is_restored_with_the_state():
    model = nn.Linear(4, 3)
    grad = torch.randn(15, generator=torch.Generator().manual_seed(0))
    ctx = _ctx(model, grad, orthonormal(15, 1))
    probe = AlignmentProbe(k=1, seed=2)
    probe.measure(ctx)
    fresh = AlignmentProbe(k=1, seed=99)
    fresh.load_state_dict(probe.state_dict())
    a = probe.measure(ctx).scalars["alignment_random"]
    b = fresh.measure(ctx).scalars["alignment_random"]
    assert a == b


def test_full_batch_cosine_at_theta_t_without_touching_the_model():
    model = make_mlp(input_shape=(4,), widths=(5,), dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (30,), generator=gen)
    theta_t = flat_params(model)
    full = full_grad(model, CE, (x, y), theta_t)
    mini = full_grad(model, CE, (x[:8], y[:8]), theta_t)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    data = SimpleNamespace(train=(x, y), probe=(x[:10], y[:10]))
    basis = fixed_basis(
        model, orthonormal(theta_t.numel(), 1, dtype=torch.float64), dataset=data, batch_size=7
    )
    ctx = context(model, theta=theta_t, grad=mini, theta_next=theta_t + 0.3, data=data, basis=basis)
    before = copy.deepcopy(model.state_dict())
    m = AlignmentProbe(k=1, full_batch=True).measure(ctx)
    want = float(mini @ full / (mini.norm() * full.norm()))
    assert math.isclose(m.scalars["alignment_full_batch"], want, rel_tol=1e-12)
    for key, value in model.state_dict().items():  # θ_{t+1} and the buffers are kept
        assert torch.equal(value, before[key])
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    # on the probe split when asked
    m = AlignmentProbe(k=1, full_batch=True, full_batch_split="probe").measure(ctx)
    probe_grad = full_grad(model, CE, (x[:10], y[:10]), theta_t)
    want = float(mini @ probe_grad / (mini.norm() * probe_grad.norm()))
    assert math.isclose(m.scalars["alignment_full_batch"], want, rel_tol=1e-12)
    with pytest.raises(ConfigError, match="needs the run's data"):
        AlignmentProbe(k=1, full_batch=True).measure(_ctx(model, mini, basis.vectors))


def test_missing_too_few_or_foreign_eigenvectors_are_clear_errors():
    model = nn.Linear(4, 3)
    grad = torch.randn(15)
    with pytest.raises(ConfigError, match="give the run an eigenbasis"):
        AlignmentProbe().measure(_ctx(model, grad, None))
    with pytest.raises(ConfigError, match="top 5 eigenvectors but the eigenbasis holds k=2"):
        AlignmentProbe(k=5).measure(_ctx(model, grad, orthonormal(15, 2)))
    # a basis of another model (14 parameters) handed to a probe measuring this one (15)
    other = fixed_basis(nn.Linear(6, 2), orthonormal(14, 2))
    ctx = context(model, theta=flat_params(model), grad=grad, basis=other)
    with pytest.raises(BasisMismatchError, match=r"expected \(15, k\)"):
        AlignmentProbe(k=1).measure(ctx)
    # a basis that was never refreshed
    empty = EigenBasis(k=2).attach(model, CE, None)
    ctx = context(model, theta=flat_params(model), grad=grad, basis=empty)
    with pytest.raises(EigenvectorsUnavailableError, match="never refreshed"):
        AlignmentProbe(k=1).measure(ctx)


def test_the_eigenbasis_refreshes_itself_on_its_schedule():
    """The probe reads the basis a ProbeSet refreshes at steps 0, 5, ...: at a refresh step the
    alignment is with the top eigenvectors of the dense Hessian at θ_t, in between with those of
    the last refresh (eigen_age counts the steps since)."""
    bundle = make_bundle(dtype=torch.float64)
    model = make_mlp(widths=(4,), dtype=torch.float64)
    basis = EigenBasis(k=2, every=5, tol=1e-10)
    # every step (When(1)): without a schedule of its own it would follow the basis's
    probes = ProbeSet([AlignmentProbe(When(1), k=2, random_baseline=False)], eigenbasis=basis)
    x, y = bundle.train.tensors()
    batches = [(x[8 * t : 8 * t + 8], y[8 * t : 8 * t + 8]) for t in range(7)]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loop = run_loop(model, probes, bundle, batches, opt)
    ages = [loop.measured[t].scalars["eigen_age"] for t in range(7)]
    assert ages == [0, 1, 2, 3, 4, 0, 1]
    for t in range(7):
        refreshed_at = t - int(ages[t])
        theta = loop.thetas[refreshed_at]
        _, vecs = top_eigh(dense_hessian(model, CE, bundle.probe, theta), 2)
        grad = full_grad(model, CE, batches[t], loop.thetas[t], bn_mode="train")
        want = (vecs.T @ grad).abs() / grad.norm()
        got = loop.measured[t].arrays["alignment"]
        assert got.tolist() == pytest.approx(want.tolist(), rel=1e-6, abs=1e-9), t
    assert basis.num_refreshes == 2


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(k=0), "k=0"),
        (dict(full_batch_split="val"), "full_batch_split"),
        (dict(bn_mode="batch"), "bn_mode"),
    ],
)
def test_invalid_options(options, match):
    with pytest.raises(ConfigError, match=match):
        AlignmentProbe(**options)


def test_registered_with_option_check():
    assert "alignment" in PROBES
    probe = build_probe("alignment", When(every=2), k=3, full_batch=True)
    assert isinstance(probe, AlignmentProbe) and probe.k == 3 and probe.eigen_k == 3
    with pytest.raises(ConfigError, match="did you mean 'full_batch'"):
        build_probe("alignment", When(), fullbatch=True)
    for gone in ("eigen_source", "refresh_every", "lanczos_tol"):  # the eigenbasis's now
        with pytest.raises(ConfigError, match="unknown option"):
            build_probe("alignment", When(), **{gone: 1})
