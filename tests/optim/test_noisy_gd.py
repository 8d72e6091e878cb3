"""GD with isotropic noise: σ = 0 is GD exactly, the noise has variance σ², seeded, resumable;
the σ estimate equals a per-sample-gradient loop."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

import sgdscope
from sgdscope.errors import ConfigError
from sgdscope.optim import OptimContext, build_optimizer, list_optimizers
from sgdscope.optim.noisy_gd import (
    NOISE_SEED_OFFSET,
    IsotropicNoiseGD,
    estimate_noise_sigma,
    per_sample_grad_variance,
)
from sgdscope.probes import flat_params

CE = nn.functional.cross_entropy


def data(n: int = 48, d: int = 5, classes: int = 3, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, classes, (n,), generator=g)


def model(dtype=torch.float64, batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(5, 7)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(7))
    layers += [nn.Tanh(), nn.Linear(7, 3)]
    return nn.Sequential(*layers).to(dtype)


def full_batch_steps(m: nn.Module, opt: torch.optim.Optimizer, steps: int) -> list[torch.Tensor]:
    x, y = data()
    out = []
    for _ in range(steps):
        opt.zero_grad()
        CE(m(x), y).backward()
        opt.step()
        out.append(flat_params(m))
    return out


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_sigma_zero_is_plain_gd_bit_for_bit(weight_decay):
    m1, m2 = model(), model()
    a = full_batch_steps(
        m1, IsotropicNoiseGD(m1.parameters(), lr=0.3, sigma=0.0, weight_decay=weight_decay), 5
    )
    b = full_batch_steps(m2, torch.optim.SGD(m2.parameters(), lr=0.3, weight_decay=weight_decay), 5)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_registered_c_zero_is_plain_gd_bit_for_bit():
    assert "noisy_gd" in list_optimizers()
    assert sgdscope.optim.OPTIMIZERS.flags("noisy_gd") == {"full_batch": True}
    m1, m2 = model(), model()
    ctx = OptimContext(lr=0.2, model=m1, loss_fn=CE, data=data())
    opt = build_optimizer("noisy_gd", list(m1.parameters()), ctx, c=0.0)
    assert opt.param_groups[0]["sigma"] == 0.0
    a = full_batch_steps(m1, opt, 4)
    b = full_batch_steps(m2, torch.optim.SGD(m2.parameters(), lr=0.2), 4)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_noise_has_variance_sigma_squared():
    """Zero gradient: the update is −η σ ξ; ξ's sample moments match N(0, 1) (seeded)."""
    n = 200_000
    p = nn.Parameter(torch.zeros(n, dtype=torch.float64))
    sigma, lr = 0.37, 0.5
    opt = IsotropicNoiseGD([p], lr=lr, sigma=sigma, seed=123)
    p.grad = torch.zeros_like(p)
    opt.step()
    noise = -p.detach() / lr  # = σ ξ
    var = noise.var().item()
    # Var of a sample variance of n normals: 2σ⁴/(n−1); 5 standard errors.
    assert abs(var - sigma**2) < 5 * sigma**2 * math.sqrt(2 / (n - 1))
    assert abs(noise.mean().item()) < 5 * sigma / math.sqrt(n)
    # fourth moment of a Gaussian: E ξ⁴ = 3
    kurt = ((noise / sigma) ** 4).mean().item()
    assert abs(kurt - 3.0) < 5 * math.sqrt(96 / n)


def test_noise_is_added_to_the_gradient():
    p = nn.Parameter(torch.zeros(10, dtype=torch.float64))
    q = nn.Parameter(torch.zeros(10, dtype=torch.float64))
    g = torch.linspace(-1, 1, 10, dtype=torch.float64)
    p.grad, q.grad = g.clone(), torch.zeros(10, dtype=torch.float64)
    IsotropicNoiseGD([p], lr=0.1, sigma=0.5, seed=7).step()
    IsotropicNoiseGD([q], lr=0.1, sigma=0.5, seed=7).step()  # same noise, zero gradient
    torch.testing.assert_close(p.detach(), q.detach() - 0.1 * g, rtol=0, atol=1e-15)


def test_seeded_and_resume_is_exact():
    m_ref = model()
    ref = full_batch_steps(
        m_ref, IsotropicNoiseGD(m_ref.parameters(), lr=0.1, sigma=0.05, seed=3), 6
    )
    # same seed → same trajectory; another seed → another one
    m_same, m_other = model(), model()
    same = full_batch_steps(
        m_same, IsotropicNoiseGD(m_same.parameters(), lr=0.1, sigma=0.05, seed=3), 6
    )
    other = full_batch_steps(
        m_other, IsotropicNoiseGD(m_other.parameters(), lr=0.1, sigma=0.05, seed=4), 6
    )
    assert torch.equal(same[-1], ref[-1]) and not torch.equal(other[-1], ref[-1])
    # stop after 3 steps, checkpoint through torch.save (weights_only load), resume
    m1 = model()
    opt1 = IsotropicNoiseGD(m1.parameters(), lr=0.1, sigma=0.05, seed=3)
    full_batch_steps(m1, opt1, 3)
    buf = io.BytesIO()
    torch.save({"model": m1.state_dict(), "opt": opt1.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    m2 = model()
    m2.load_state_dict(ckpt["model"])
    opt2 = IsotropicNoiseGD(m2.parameters(), lr=0.1, sigma=999.0, seed=0)  # overwritten
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.param_groups[0]["sigma"] == 0.05 and opt2.seed == 3
    resumed = full_batch_steps(m2, opt2, 3)
    assert all(torch.equal(u, v) for u, v in zip(resumed, ref[3:], strict=True))


def naive_grad_variance(m: nn.Module, x, y) -> torch.Tensor:
    """Per-sample gradients one at a time with autograd; population variance in float64."""
    m = copy.deepcopy(m).eval()
    grads = []
    for i in range(len(y)):
        m.zero_grad()
        CE(m(x[i : i + 1]), y[i : i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in m.parameters()]).double())
    return torch.stack(grads).var(dim=0, unbiased=False)


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 48])
def test_per_sample_variance_equals_a_loop(chunk_size):
    m = model()
    x, y = data()
    got = per_sample_grad_variance(m, CE, (x, y), chunk_size=chunk_size)
    torch.testing.assert_close(got, naive_grad_variance(m, x, y), rtol=1e-10, atol=1e-14)
    sigma = estimate_noise_sigma(m, CE, (x, y), c=0.02, chunk_size=chunk_size)
    assert sigma == pytest.approx(0.02 * naive_grad_variance(m, x, y).max().item(), rel=1e-10)


def test_estimate_with_batchnorm_uses_eval_mode_and_keeps_state():
    m = model(batchnorm=True)
    x, y = data()
    m.train()
    buffers = [b.clone() for b in m.buffers()]
    params = flat_params(m)
    got = per_sample_grad_variance(m, CE, sgdscope.data.Split(x, y), chunk_size=10)
    torch.testing.assert_close(got, naive_grad_variance(m, x, y), rtol=1e-10, atol=1e-14)
    assert m.training and all(torch.equal(a, b) for a, b in zip(buffers, m.buffers(), strict=True))
    assert torch.equal(params, flat_params(m))
    assert all(p.grad is None for p in m.parameters())


def test_registered_factory_estimates_sigma_from_the_train_split():
    bundle = sgdscope.load_dataset(
        "synthetic", num_samples=60, num_test=8, input_shape=[5], num_classes=3, val_fraction=0.0
    )
    m = model(dtype=torch.float32)
    ctx = OptimContext(lr=0.1, seed=5, model=m, loss_fn=CE, data=bundle)
    opt = build_optimizer("noisy_gd", list(m.parameters()), ctx, c=0.02)
    want = estimate_noise_sigma(m, CE, bundle.train, c=0.02)
    assert opt.param_groups[0]["sigma"] == pytest.approx(want, rel=1e-12) and want > 0
    assert opt.seed == 5 + NOISE_SEED_OFFSET
    opt = build_optimizer("noisy_gd", list(m.parameters()), OptimContext(lr=0.1), sigma=0.3)
    assert opt.param_groups[0]["sigma"] == 0.3


@pytest.mark.parametrize(
    ("ctx", "options", "match"),
    [
        (OptimContext(lr=0.1), {"c": 0.02}, "sigma"),
        (OptimContext(lr=0.1, momentum=0.9), {"sigma": 0.1}, "momentum"),
        (OptimContext(lr=0.1), {"c": -1.0}, "optim.options.c"),
        (OptimContext(lr=0.1), {"sigma": -0.5}, "sigma"),
        (OptimContext(lr=0.1), {"sgima": 0.5}, "did you mean 'sigma'"),
    ],
)
def test_factory_errors(ctx, options, match):
    m = model()
    with pytest.raises(ConfigError, match=match):
        build_optimizer("noisy_gd", list(m.parameters()), ctx, **options)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_noise_resume_is_exact():
    p = nn.Parameter(torch.zeros(1000, device="cuda"))
    opt = IsotropicNoiseGD([p], lr=1.0, sigma=1.0, seed=1)
    p.grad = torch.zeros_like(p)
    opt.step()
    state, p1 = opt.state_dict(), p.detach().clone()
    assert "cuda:0" in state["noise_rng"]
    opt.step()
    q = nn.Parameter(p1.clone())
    opt2 = IsotropicNoiseGD([q], lr=1.0, sigma=1.0, seed=9)
    opt2.load_state_dict(state)
    q.grad = torch.zeros_like(q)
    opt2.step()
    assert torch.equal(q.detach(), p.detach())
