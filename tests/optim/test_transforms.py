"""Each transform against a hand computation; the chain's rules (scale_by_lr last, state,
parameters without gradients); a chain of user transforms is an optimizer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sgdscope.eigenbasis import RandomBasis
from sgdscope.errors import ConfigError, InvalidArgumentError
from sgdscope.optim import SGD, ChainedOptimizer
from sgdscope.optim.transforms import (
    StepContext,
    Transform,
    add_weight_decay,
    isotropic_noise,
    momentum,
    scale_by_lr,
    subspace_rescale,
)

from ..probes.cases import CE, checkpoint, fixed_basis, make_bundle, make_mlp, orthonormal


def _params(*shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(*s, generator=gen, dtype=torch.float64)) for s in shapes]


def _grads(params, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]


def _run(transform, params, updates, step=0, **group):
    """``transform.update`` on one step of a one-group optimizer holding ``params``."""
    opt = ChainedOptimizer(params, [scale_by_lr()], lr=0.1, **group)
    sc = StepContext(opt, list(params), [opt.param_groups[0]] * len(params), step)
    return transform.update(list(updates), sc), opt


class _Record(Transform):
    """Keeps what it receives (copies), changes nothing."""

    def __init__(self):
        self.seen: list[list[torch.Tensor]] = []

    def update(self, updates, sc):
        self.seen.append([u.clone() for u in updates])
        return updates


def test_weight_decay_adds_lambda_theta_out_of_place():
    params = _params((3, 2), (4,))
    d = _grads(params, 1)
    kept = [x.clone() for x in d]
    out, _ = _run(add_weight_decay(), params, d, weight_decay=0.3)
    for o, x, p in zip(out, d, params, strict=True):
        torch.testing.assert_close(o, x + 0.3 * p.detach(), rtol=0, atol=1e-15)
    assert all(torch.equal(a, b) for a, b in zip(d, kept, strict=True)), "input modified"
    out, _ = _run(add_weight_decay(), params, d, weight_decay=0.0)
    assert all(o is x for o, x in zip(out, d, strict=True)), "λ = 0 must be a no-op"


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_is_torch_sgd_heavy_ball(nesterov):
    """buffer₀ = d₀, buffer_t = β buffer + d_t; applied: buffer, or d + β buffer (Nesterov)."""
    params = _params((5,))
    opt = ChainedOptimizer(params, [scale_by_lr()], lr=0.1, momentum=0.8, nesterov=nesterov)
    sc = StepContext(opt, params, [opt.param_groups[0]], 0)
    tf = momentum()
    buf = None
    for t in range(4):
        d = _grads(params, 10 + t)
        kept = d[0].clone()
        (out,) = tf.update(d, sc)
        buf = kept.clone() if buf is None else 0.8 * buf + kept
        want = kept + 0.8 * buf if nesterov else buf
        torch.testing.assert_close(out, want, rtol=0, atol=1e-15)
        torch.testing.assert_close(opt.state[params[0]]["momentum_buffer"], buf, rtol=0, atol=1e-15)
        assert torch.equal(d[0], kept), "the input must stay intact"
    # β = 0: nothing stored, the direction passes through
    opt0 = ChainedOptimizer(params, [scale_by_lr()], lr=0.1, momentum=0.0, nesterov=False)
    d = _grads(params, 3)
    (out,) = tf.update(d, StepContext(opt0, params, [opt0.param_groups[0]], 0))
    assert out is d[0] and "momentum_buffer" not in opt0.state[params[0]]


@pytest.mark.parametrize("a, b", [(1.0, 0.3), (0.0, 1.0), (1.0, 0.0), (0.5, 2.0), (0.0, 2.5)])
def test_subspace_rescale_against_the_projector(a, b):
    """d' = a (I − VVᵀ) d + b VVᵀ d over the flat concatenation of the parameters (model order),
    whatever order the parameters come in."""
    model = make_mlp(widths=(4,), dtype=torch.float64)
    n = sum(p.numel() for p in model.parameters())
    v = orthonormal(n, 3, dtype=torch.float64)
    basis = fixed_basis(model, v)
    params = list(model.parameters())[::-1]  # any order
    d = _grads(params, 4)
    flat = torch.cat([x.reshape(-1) for x in d[::-1]])  # model order
    proj = v[:, :2] @ (v[:, :2].T @ flat)
    want_flat = a * (flat - proj) + b * proj
    out, _ = _run(subspace_rescale(basis, coef_perp=a, coef_top=b, k=2), params, d)
    got = torch.cat([x.reshape(-1) for x in out[::-1]])
    torch.testing.assert_close(got, want_flat, rtol=0, atol=1e-14)
    assert [o.shape for o in out] == [p.shape for p in params]


def test_subspace_rescale_identity_k_zero_and_burn_in():
    model = make_mlp(widths=(4,), dtype=torch.float64)
    params = list(model.parameters())
    d = _grads(params, 5)
    basis = fixed_basis(model, orthonormal(sum(p.numel() for p in params), 2, dtype=torch.float64))
    ident = subspace_rescale(basis, coef_perp=1.0, coef_top=1.0, k=2)
    assert ident.is_identity and not ident.active(0)
    out, _ = _run(ident, params, d)
    assert all(o is x for o, x in zip(out, d, strict=True))
    # k = 0: P = 0, so d' = a d (no basis needed)
    zero = subspace_rescale(None, coef_perp=0.5, coef_top=0.0, k=0)
    out, _ = _run(zero, params, d)
    for o, x in zip(out, d, strict=True):
        torch.testing.assert_close(o, 0.5 * x, rtol=0, atol=0)
    # burn-in: the identity before step `burn_in`
    late = subspace_rescale(basis, coef_perp=1.0, coef_top=0.0, k=2, burn_in=3)
    assert [late.active(t) for t in range(5)] == [False, False, False, True, True]
    out, _ = _run(late, params, d, step=2)
    assert all(o is x for o, x in zip(out, d, strict=True))
    out, _ = _run(late, params, d, step=3)
    assert not torch.equal(out[0], d[0])


def test_isotropic_noise_draws_from_its_seeded_generator():
    params = _params((3, 4), (5,))
    d = _grads(params, 6)
    tf = isotropic_noise(seed=11)
    out, _ = _run(tf, params, d, sigma=0.4)
    gen = torch.Generator().manual_seed(11)
    for o, x, p in zip(out, d, params, strict=True):
        xi = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        torch.testing.assert_close(o, x + 0.4 * xi, rtol=0, atol=1e-15)
    # the state continues the stream exactly; σ = 0 draws nothing
    state = checkpoint(tf.state_dict())
    other = isotropic_noise(seed=99)
    other.load_state_dict(state)
    a, _ = _run(tf, params, d, sigma=0.4)
    b, _ = _run(other, params, d, sigma=0.4)
    assert all(torch.equal(u, w) for u, w in zip(a, b, strict=True))
    before = tf.state_dict()["rng"]["cpu"].clone()
    out, _ = _run(tf, params, d, sigma=0.0)
    assert all(o is x for o, x in zip(out, d, strict=True))
    assert torch.equal(tf.state_dict()["rng"]["cpu"], before)


def test_scale_by_lr_writes_theta_minus_eta_d():
    params = _params((4,), (2, 2))
    start = [p.detach().clone() for p in params]
    d = _grads(params, 7)
    with torch.no_grad():
        _run(scale_by_lr(), params, d)  # lr 0.1 in _run
    for p, s, x in zip(params, start, d, strict=True):
        # one fused add (as torch.optim.SGD), so bit for bit that and to rounding the formula
        assert torch.equal(p.detach(), s.add(x, alpha=-0.1))
        torch.testing.assert_close(p.detach(), s - 0.1 * x, rtol=0, atol=1e-15)


def test_a_chain_must_end_with_scale_by_lr():
    params = _params((3,))
    for bad in ([], [add_weight_decay()], [scale_by_lr(), momentum()]):
        with pytest.raises(InvalidArgumentError, match="must end with scale_by_lr"):
            ChainedOptimizer(params, bad, lr=0.1)
    with pytest.raises(InvalidArgumentError, match="must be the last"):
        ChainedOptimizer(params, [scale_by_lr(), add_weight_decay(), scale_by_lr()], lr=0.1)
    for lr in (-1.0, float("nan"), None):
        with pytest.raises(ConfigError, match="lr"):
            ChainedOptimizer(params, [scale_by_lr()], lr=lr)


def test_a_user_chain_is_torch_sgd_and_never_touches_grad():
    ref = make_mlp(widths=(5,))
    mine = copy.deepcopy(ref)
    record = _Record()
    chain = [add_weight_decay(), momentum(), record, scale_by_lr()]
    opt = ChainedOptimizer(
        mine.parameters(), chain, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True
    )
    sgd = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
    x, y = make_bundle().train.tensors()
    for t in range(5):
        for model, o in ((ref, sgd), (mine, opt)):
            o.zero_grad()
            CE(model(x[8 * t : 8 * t + 8]), y[8 * t : 8 * t + 8]).backward()
            grads = [p.grad.clone() for p in model.parameters()]
            o.step()
            assert all(
                torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True)
            )
    assert all(torch.equal(p, q) for p, q in zip(ref.parameters(), mine.parameters(), strict=True))
    assert opt.step_count == 5 and len(record.seen) == 5
    assert "ChainedOptimizer" in repr(opt) and "groups=1" in repr(opt)


def test_parameters_without_gradient_take_part_only_when_a_transform_mixes_them():
    model = make_mlp(widths=(4,), dtype=torch.float64)
    params = list(model.parameters())
    frozen = params[0]
    n = sum(p.numel() for p in params)
    v = orthonormal(n, 2, dtype=torch.float64)
    # plain SGD: a parameter without .grad is skipped (as torch does)
    opt = SGD(params, lr=0.1)
    for p in params[1:]:
        p.grad = torch.ones_like(p)
    before = frozen.detach().clone()
    opt.step()
    assert torch.equal(frozen, before)
    # top-only: the projection mixes coordinates, so a gradient-less parameter moves too
    record = _Record()
    rescale = subspace_rescale(fixed_basis(model, v), coef_perp=0.0, coef_top=1.0, k=2)
    opt = ChainedOptimizer(params, [record, rescale, scale_by_lr()], lr=0.1)
    flat_before = torch.cat([p.detach().reshape(-1) for p in params])
    opt.step()
    assert torch.equal(record.seen[0][0], torch.zeros_like(frozen))
    flat_after = torch.cat([p.detach().reshape(-1) for p in params])
    g = torch.cat([torch.zeros_like(frozen).reshape(-1)] + [p.grad.reshape(-1) for p in params[1:]])
    torch.testing.assert_close(flat_after - flat_before, -0.1 * v @ (v.T @ g), rtol=0, atol=1e-14)
    assert frozen.grad is None, "the optimizer must not create gradients"


def test_chain_state_round_trip_and_mismatch():
    model = make_mlp(widths=(4,))
    n = sum(p.numel() for p in model.parameters())
    basis = RandomBasis(k=2, every=3, seed=1).attach(model)

    def make():
        return ChainedOptimizer(
            model.parameters(),
            [
                add_weight_decay(),
                subspace_rescale(basis, coef_perp=1.0, coef_top=0.5, k=2),
                momentum(),
                isotropic_noise(seed=4),
                scale_by_lr(),
            ],
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-3,
            nesterov=False,
            sigma=0.01,
        )

    opt = make()
    for _ in range(4):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        opt.step()
    state = checkpoint(opt.state_dict())
    assert state["chain"]["step"] == 4
    assert state["chain"]["transforms"][1]["vectors"].shape == (n, 2)
    again = make()
    again.load_state_dict(state)
    assert again.step_count == 4
    assert torch.equal(again.transforms[1].vectors, opt.transforms[1].vectors)
    for p in model.parameters():  # same next step from both (noise stream included)
        p.grad = torch.ones_like(p)
    start = [p.detach().clone() for p in model.parameters()]
    opt.step()
    first = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, s in zip(model.parameters(), start, strict=True):
            p.copy_(s)
    again.step()
    assert all(torch.equal(p, f) for p, f in zip(model.parameters(), first, strict=True))
    short = ChainedOptimizer(model.parameters(), [scale_by_lr()], lr=0.1)
    with pytest.raises(InvalidArgumentError, match="has 5 transforms, this one 1"):
        short.load_state_dict(state)
