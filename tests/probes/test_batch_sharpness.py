"""Batch sharpness: against a hand computation over enumerated mini-batches (dense float64
Hessians), the closed form on a quadratic with known A and batches, and the probe along a loop."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import sgdscope as ss
from sgdscope.errors import ConfigError, InvalidArgumentError
from sgdscope.probes import BatchSharpnessProbe, ProbeSet, When, batch_sharpness, flat_params
from sgdscope.probes.batch_sharpness import sample_batches

RTOL = 1e-10  # float64 products through autograd vs torch.func.hessian: a few hundred ulps


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ss.build_model("mlp", (4,), 3, widths=[5], activation="tanh").double()


def _data(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=g)


def _flat_loss(model: nn.Module, loss_fn, x, y):
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for _, p in model.named_parameters() if p.requires_grad]
    sizes = [s.numel() for s in shapes]

    def f(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, sizes)
        params = {n: v.view(s) for n, v, s in zip(names, pieces, shapes, strict=True)}
        return loss_fn(functional_call(model, params, (x,)), y)

    return f


def _dense(model, loss_fn, x, y, theta):
    f = _flat_loss(model, loss_fn, x, y)
    return f(theta), torch.func.grad(f)(theta), torch.func.hessian(f)(theta), f


def test_equals_a_hand_computation_over_enumerated_batches() -> None:
    model = _mlp()
    x, y = _data()
    theta = flat_params(model)
    eta = 0.3
    batches = [(x[list(b)], y[list(b)]) for b in itertools.combinations(range(6), 3)]
    q, pred, act = [], [], []
    for xb, yb in batches:
        loss, g, h, f = _dense(model, F.cross_entropy, xb, yb, theta)
        q.append(float(g @ h @ g / (g @ g)))
        pred.append(float(-eta * (g @ g) + 0.5 * eta**2 * (g @ h @ g)))
        act.append(float(f(theta - eta * g) - loss))
    res = batch_sharpness(model, F.cross_entropy, batches, lr=eta, actual=True, bn_mode="eval")
    assert res.num_batches == 20 and res.num_matvecs == 20
    np.testing.assert_allclose(res.per_batch, q, rtol=RTOL)
    assert res.value == pytest.approx(np.mean(q), rel=RTOL)
    assert res.stderr == pytest.approx(np.std(q, ddof=1) / math.sqrt(20), rel=1e-8)
    assert res.predicted_change == pytest.approx(np.mean(pred), rel=RTOL)
    assert res.actual_change == pytest.approx(np.mean(act), rel=1e-9)
    # The model itself is untouched.
    torch.testing.assert_close(flat_params(model), theta, rtol=0, atol=0)


class _Quadratic(nn.Module):
    """Per-sample loss ½ (θ − c_i)ᵀ A (θ − c_i): the input of sample i is c_i."""

    def __init__(self, n: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.theta = nn.Parameter(torch.randn(n, generator=g, dtype=torch.float64))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return self.theta.unsqueeze(0) - c


def _quadratic_loss(a: torch.Tensor):
    def loss(out: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("bi,ij,bj->b", out, a, out).mean()

    return loss


def _spd(n: int, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    return q @ torch.diag(torch.linspace(0.2, 3.0, n, dtype=torch.float64)) @ q.T


def test_quadratic_closed_form_and_exact_prediction() -> None:
    """H_B = A and g_B = A d_B with d_B = θ − c̄_B, so BS = mean_B dᵀA³d / dᵀA²d, and the
    second-order prediction of the one-step change is exact."""
    n, N, S = 5, 7, 3
    a = _spd(n)
    model = _Quadratic(n)
    g = torch.Generator().manual_seed(4)
    c = torch.randn(N, n, generator=g, dtype=torch.float64)
    y = torch.zeros(N)
    batches = [(c[list(b)], y[list(b)]) for b in itertools.combinations(range(N), S)]
    theta = model.theta.detach()
    a_np, eta = a.numpy(), 0.2
    closed, changes = [], []
    for cb, _ in batches:
        d = (theta - cb.mean(0)).numpy()
        ad = a_np @ d
        closed.append(ad @ a_np @ ad / (ad @ ad))
        changes.append(-eta * (ad @ ad) + 0.5 * eta**2 * (ad @ a_np @ ad))
    res = batch_sharpness(model, _quadratic_loss(a), batches, lr=eta, actual=True)
    assert res.value == pytest.approx(np.mean(closed), rel=RTOL)
    assert res.predicted_change == pytest.approx(np.mean(changes), rel=RTOL)
    assert res.actual_change == pytest.approx(res.predicted_change, rel=1e-9)
    # A = a·I: every batch's directional curvature is a, with no spread.
    iso = batch_sharpness(model, _quadratic_loss(2.5 * torch.eye(n, dtype=torch.float64)), batches)
    assert iso.value == pytest.approx(2.5, rel=1e-13)
    assert iso.stderr == pytest.approx(0.0, abs=1e-13)


def test_zero_gradient_batches_are_skipped_and_arguments_checked() -> None:
    model = _Quadratic(3)
    theta = model.theta.detach()
    at_min = (theta.unsqueeze(0).repeat(2, 1), torch.zeros(2))  # g_B = 0
    other = (torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2))
    loss = _quadratic_loss(torch.eye(3, dtype=torch.float64))
    res = batch_sharpness(model, loss, [at_min, other])
    assert res.num_batches == 1 and math.isnan(res.stderr) and res.value == pytest.approx(1.0)
    assert math.isnan(batch_sharpness(model, loss, [at_min]).value)
    with pytest.raises(InvalidArgumentError, match="bn_mode"):
        batch_sharpness(model, loss, [other], bn_mode="ghost")
    with pytest.raises(InvalidArgumentError, match="needs lr"):
        batch_sharpness(model, loss, [other], actual=True)
    with pytest.raises(InvalidArgumentError, match=r"\(x, y\) pairs"):
        batch_sharpness(model, loss, [torch.zeros(3)])


def _loop(minibatch: int | None, steps: int = 3, **options):
    """SGD on the MLP with the probe measuring every step; returns (θ_t list, measurements)."""
    model = _mlp()
    x, y = _data(n=12)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    probes = ProbeSet([BatchSharpnessProbe(When(every=1), **options)], loss_fn=F.cross_entropy)
    probes.on_train_start(model, (x, y), optimizer=opt)
    thetas, out = [], []
    for t in range(steps):
        idx = torch.arange(t * 4, t * 4 + 4) % 12 if minibatch else torch.arange(12)
        xb, yb = x[idx], y[idx]
        thetas.append(flat_params(model))
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        out.append(probes.after_step(model, (xb, yb) if minibatch else None, loss, opt))
    return model, (x, y), thetas, out


def test_probe_samples_training_batches_of_the_step_size_at_theta_t() -> None:
    model, (x, y), thetas, out = _loop(4, num_batches=5, seed=7)
    for t, m in enumerate(out):
        gen = torch.Generator().manual_seed(7 + t)
        ref = batch_sharpness(
            model,
            F.cross_entropy,
            sample_batches(x, y, 4, 5, gen),
            theta=thetas[t],
            lr=0.2,
            actual=True,
        )
        s = m.scalars
        assert s["batch_sharpness"] == pytest.approx(ref.value, rel=1e-12)
        assert s["batch_sharpness_se"] == pytest.approx(ref.stderr, rel=1e-12)
        assert s["batch_sharpness_batches"] == 5
        assert s["batch_sharpness_stability"] == pytest.approx(0.2 * ref.value / 2, rel=1e-12)
        assert s["batch_loss_change_predicted"] == pytest.approx(ref.predicted_change, rel=1e-12)
        assert s["batch_loss_change_actual"] == pytest.approx(ref.actual_change, rel=1e-12)


def test_probe_under_gd_uses_the_whole_train_set_once() -> None:
    model, (x, y), thetas, out = _loop(None, steps=2, num_batches=4)
    for t, m in enumerate(out):
        _, g, h, _ = _dense(model, F.cross_entropy, x, y, thetas[t])
        assert m.scalars["batch_sharpness"] == pytest.approx(float(g @ h @ g / (g @ g)), rel=RTOL)
        assert m.scalars["batch_sharpness_se"] == 0.0
        assert m.scalars["batch_sharpness_batches"] == 1


def test_probe_batch_size_option_and_validation() -> None:
    _, _, _, out = _loop(4, steps=1, num_batches=3, batch_size=12, actual=False)
    assert out[0].scalars["batch_sharpness_se"] == 0.0  # S = N: exact
    assert "batch_loss_change_actual" not in out[0].scalars
    for kw, match in [
        ({"num_batches": 1}, "num_batches"),
        ({"batch_size": 0}, "batch_size"),
        ({"bn_mode": "ghost"}, "bn_mode"),
    ]:
        with pytest.raises(ConfigError, match=match):
            BatchSharpnessProbe(**kw)
    with pytest.raises(ConfigError, match="larger than the 12 training examples"):
        _loop(4, steps=1, batch_size=13)
    assert ss.probes.PROBES.flags("batch_sharpness") == {"needs_hvp": True}
