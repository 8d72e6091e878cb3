"""NudgedSGD: γ = 1 is torch SGD bit for bit; γ rescales exactly the top-k components; refresh,
errors, checkpoints."""

from __future__ import annotations

import copy
import io
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sgdscope.errors import ConfigError, SgdscopeError
from sgdscope.optim import OptimContext, build_optimizer, list_optimizers
from sgdscope.optim._registry import OPTIMIZERS
from sgdscope.optim.nudged import EigenvectorsUnavailableError, NudgedSGD
from sgdscope.probes import flat_params
from sgdscope.probes.alignment import unflatten


def _mlp(dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)


def _batches(n_steps: int, dtype: torch.dtype = torch.float32, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 6, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (64,), generator=gen)
    return [(x[(16 * t) % 64 :][:16], y[(16 * t) % 64 :][:16]) for t in range(n_steps)]


def _orthonormal(n: int, k: int, dtype: torch.dtype = torch.float32, seed: int = 2):
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64)).Q.to(dtype)


def _n(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _loss(model: nn.Module, batch) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


@pytest.mark.parametrize(
    "momentum, weight_decay, nesterov, nudge",
    [
        (0.0, 0.0, False, "gradient"),
        (0.9, 0.0, False, "gradient"),
        (0.9, 1e-3, False, "update"),
        (0.5, 1e-3, True, "gradient"),
    ],
)
def test_gamma_one_is_torch_sgd_bitwise(momentum, weight_decay, nesterov, nudge):
    ref = _mlp()
    mine = copy.deepcopy(ref)
    sgd = torch.optim.SGD(
        ref.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )
    nsgd = NudgedSGD(
        mine.parameters(),
        lr=0.1,
        gamma=1.0,
        k=3,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        nudge=nudge,
    )
    nsgd.set_eigenvectors(_orthonormal(_n(mine), 3))  # armed, but γ = 1 must not change a bit
    for t, batch in enumerate(_batches(50)):
        for model, opt in ((ref, sgd), (mine, nsgd)):
            opt.zero_grad()
            _loss(model, batch).backward()
        nsgd.prepare(step=t, epoch=t // 10, shared={})
        sgd.step()
        nsgd.step()
    for p, q in zip(ref.parameters(), mine.parameters(), strict=True):
        assert torch.equal(p, q), "NSGD(γ=1) drifted from torch.optim.SGD"
        if momentum:
            assert torch.equal(sgd.state[p]["momentum_buffer"], nsgd.state[q]["momentum_buffer"])


def _quadratic(n: int = 8, seed: int = 3):
    """L(θ) = ½ θᵀAθ − bᵀθ with a known eigenbasis Q (columns by descending eigenvalue)."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64)).Q
    lam = torch.linspace(10.0, 0.5, n, dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    theta = nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64))
    return theta, a, b, q, lam


def _quad_step(opt: torch.optim.Optimizer, theta: nn.Parameter, a, b) -> torch.Tensor:
    before = theta.detach().clone()
    opt.zero_grad()
    (0.5 * theta @ a @ theta - b @ theta).backward()
    opt.step()
    return theta.detach() - before


@pytest.mark.parametrize("gamma", [0.0, 0.1, 3.0])
@pytest.mark.parametrize("k", [1, 3])
def test_scales_exactly_the_top_k_components(gamma, k):
    theta, a, b, q, _ = _quadratic()
    theta_ref = nn.Parameter(theta.detach().clone())
    opt = NudgedSGD([theta], lr=0.05, gamma=gamma, k=k)
    # The Trainer hands over the SharpnessProbe's eigenvectors (more columns than k).
    opt.prepare(step=0, epoch=0, shared={"eigenvectors": q[:, :5], "eigen_step": 0})
    sgd = torch.optim.SGD([theta_ref], lr=0.05)
    step = q.T @ _quad_step(opt, theta, a, b)
    want = q.T @ _quad_step(sgd, theta_ref, a, b)
    want[:k] *= gamma
    torch.testing.assert_close(step, want, rtol=0, atol=1e-12)


def test_nudge_update_rescales_velocity_not_buffer():
    theta = nn.Parameter(torch.zeros(6, dtype=torch.float64))
    v = _orthonormal(6, 2, torch.float64)
    p_top = v @ v.T
    gen = torch.Generator().manual_seed(5)
    grads = [torch.randn(6, generator=gen, dtype=torch.float64) for _ in range(3)]
    for nudge in ("gradient", "update"):
        theta.data.zero_()
        opt = NudgedSGD([theta], lr=0.1, gamma=0.25, k=2, momentum=0.9, nudge=nudge)
        opt.set_eigenvectors(v)
        buf = torch.zeros(6, dtype=torch.float64)
        for g in grads:
            before = theta.detach().clone()
            theta.grad = g.clone()
            opt.step()
            nudged = g - 0.75 * p_top @ g
            if nudge == "gradient":
                buf = 0.9 * buf + nudged
                applied = buf
            else:
                buf = 0.9 * buf + g
                applied = buf - 0.75 * p_top @ buf
            torch.testing.assert_close(theta.detach() - before, -0.1 * applied, rtol=0, atol=1e-14)
            torch.testing.assert_close(opt.state[theta]["momentum_buffer"], buf, rtol=0, atol=1e-14)
            assert torch.equal(theta.grad, g), "the gradient itself must not be modified"


def test_no_eigenvectors_raises_unless_burn_in_covers():
    model = _mlp()
    batch = _batches(1)[0]
    opt = NudgedSGD(model.parameters(), lr=0.1, gamma=0.1, k=2)
    _loss(model, batch).backward()
    before = flat_params(model)
    with pytest.raises(EigenvectorsUnavailableError, match="sharpness") as info:
        opt.prepare(step=0, epoch=0, shared={})
        opt.step()
    assert isinstance(info.value, SgdscopeError) and isinstance(info.value, RuntimeError)
    assert torch.equal(flat_params(model), before), "a refused step must not move θ"

    opt = NudgedSGD(model.parameters(), lr=0.1, gamma=0.1, k=2, burn_in=3)
    for t in range(3):  # plain SGD while burning in
        opt.prepare(step=t, epoch=0, shared={})
        opt.step()
    opt.prepare(step=3, epoch=0, shared={})
    with pytest.raises(EigenvectorsUnavailableError, match="burn_in=3"):
        opt.step()
    v = _orthonormal(_n(model), 4)
    opt.prepare(step=3, epoch=0, shared={"eigenvectors": v, "eigen_step": 2})
    opt.step()
    assert torch.equal(opt.eigenvectors, v[:, :2])


def test_refresh_policy_steps_epochs_and_eigen_fn():
    model = _mlp()
    n = _n(model)
    calls: list[int] = []

    def eigen_fn():
        calls.append(len(calls))
        return _orthonormal(n, 3, seed=10 + len(calls))

    opt = NudgedSGD(model.parameters(), lr=0.0, gamma=0.5, k=2, refresh_every=3, eigen_fn=eigen_fn)
    shared: dict = {}
    for t in range(7):
        if t == 4:  # a SharpnessProbe measured after step 3: newer than ours from step 3
            shared = {"eigenvectors": _orthonormal(n, 5, seed=99), "eigen_step": 4}
        opt.prepare(step=t, epoch=0, shared=shared)
        opt.zero_grad()
        _loss(model, _batches(1)[0]).backward()
        opt.step()
    # refreshes at steps 0 (eigen_fn), 3 (eigen_fn), 6 (the newer shared vectors)
    assert calls == [0, 1]
    assert opt.num_refreshes == 3
    assert torch.equal(opt.eigenvectors, _orthonormal(n, 5, seed=99)[:, :2])

    opt = NudgedSGD(
        model.parameters(), lr=0.0, gamma=0.5, k=2, refresh_every="epoch", eigen_fn=eigen_fn
    )
    calls.clear()
    for t in range(9):
        opt.prepare(step=t, epoch=t // 4, shared={})
        opt.step()
    assert calls == [0, 1, 2]  # epochs 0, 1, 2


def test_random_subspace_is_seeded_orthonormal_and_refreshed():
    model = _mlp()
    opts = [
        NudgedSGD(
            model.parameters(), lr=0.0, gamma=0.5, k=4, refresh_every=2, subspace="random", seed=7
        )
        for _ in range(2)
    ]
    seen = []
    for t in range(4):
        for opt in opts:
            opt.prepare(step=t, epoch=0, shared={"eigenvectors": _orthonormal(_n(model), 4)})
        v = opts[0].eigenvectors
        assert torch.equal(v, opts[1].eigenvectors)
        torch.testing.assert_close(v.T @ v, torch.eye(4), rtol=0, atol=1e-6)
        seen.append(v.clone())
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    assert not torch.allclose(seen[0], _orthonormal(_n(model), 4)), "ignores the shared ones"


def _run(model, opt, batches, start, n_data_steps):
    for t in range(start, n_data_steps):
        opt.prepare(step=t, epoch=t // 6, shared={})
        opt.zero_grad()
        _loss(model, batches[t]).backward()
        opt.step()


def _dense_eigen_fn(model: nn.Module, k: int, batch):
    """Top-k eigenvectors of the dense float64 Hessian at the model's current parameters."""

    def fn():
        m64 = copy.deepcopy(model).double()
        x, y = batch[0].double(), batch[1]

        def f(th):
            out = torch.func.functional_call(m64, unflatten(m64, th), (x,))
            return nn.functional.cross_entropy(out, y)

        _, vecs = torch.linalg.eigh(torch.func.jacrev(torch.func.jacrev(f))(flat_params(m64)))
        return vecs.flip(1)[:, :k].float()

    return fn


@pytest.mark.parametrize("subspace", ["top", "random"])
def test_resume_mid_run_is_bitwise_identical(subspace):
    batches = _batches(20)
    kwargs = dict(
        lr=0.1, gamma=0.2, k=3, refresh_every=4, burn_in=2, momentum=0.9, subspace=subspace
    )

    def make(seed_model: nn.Module):
        model = copy.deepcopy(seed_model)
        fn = _dense_eigen_fn(model, 3, batches[0]) if subspace == "top" else None
        return model, NudgedSGD(model.parameters(), eigen_fn=fn, **kwargs)

    init = _mlp()
    model_a, opt_a = make(init)
    _run(model_a, opt_a, batches, 0, 20)

    model_b, opt_b = make(init)
    _run(model_b, opt_b, batches, 0, 11)
    buf = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "optim": opt_b.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model_c, opt_c = make(_mlp(seed=123))  # fresh objects, different weights
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["optim"])
    _run(model_c, opt_c, batches, 11, 20)

    assert torch.equal(flat_params(model_a), flat_params(model_c))
    assert opt_a.num_refreshes == opt_c.num_refreshes
    assert torch.equal(opt_a.eigenvectors, opt_c.eigenvectors)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gamma=-1.0), "gamma"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(gamma=0.1, k=0), "k must be"),
        (dict(gamma=0.1, k=10_000), "trainable parameters"),
        (dict(gamma=0.1, nudge="velocity"), "nudge"),
        (dict(gamma=0.1, subspace="bottom"), "subspace"),
        (dict(gamma=0.1, refresh_every=0), "refresh_every"),
        (dict(gamma=0.1, refresh_every="weekly"), "refresh_every"),
        (dict(gamma=0.1, burn_in=-1), "burn_in"),
        (dict(gamma=0.1, momentum=1.0), "momentum"),
        (dict(gamma=0.1, nesterov=True), "nesterov"),
    ],
)
def test_invalid_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        NudgedSGD(_mlp().parameters(), lr=0.1, **kwargs)


def test_set_eigenvectors_checks_shape_and_orthonormality():
    model = _mlp()
    opt = NudgedSGD(model.parameters(), lr=0.1, gamma=0.1, k=3)
    with pytest.raises(ConfigError, match=rf"\({_n(model)}, >=3\)"):
        opt.set_eigenvectors(torch.zeros(_n(model) + 1, 3))
    with pytest.raises(ConfigError, match=r"\(n, k\)"):
        opt.set_eigenvectors(torch.zeros(_n(model)))
    with pytest.raises(ConfigError, match="orthonormal"):
        opt.set_eigenvectors(torch.ones(_n(model), 3))


def test_registered_with_hvp_flag_and_built_from_config():
    assert {"nsgd", "projected_sgd"} <= set(list_optimizers())
    assert OPTIMIZERS.flags("nsgd")["needs_hvp"] is True
    assert OPTIMIZERS.flags("projected_sgd")["needs_hvp"] is True
    model = _mlp()
    ctx = OptimContext(lr=0.05, momentum=0.9, seed=3)
    with pytest.raises(ConfigError, match="gamma is required"):
        build_optimizer("nsgd", list(model.parameters()), ctx)
    with pytest.raises(ConfigError, match="did you mean 'gamma'"):
        build_optimizer("nsgd", list(model.parameters()), ctx, gama=0.1)
    opt = build_optimizer(
        "nsgd", list(model.parameters()), ctx, gamma=0.1, k=2, eigen_source="probe"
    )
    assert isinstance(opt, NudgedSGD) and opt.gamma == 0.1 and opt.k == 2
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.eigen_fn is None
    with pytest.raises(ConfigError, match="eigen_source"):
        build_optimizer("nsgd", list(model.parameters()), ctx, gamma=0.1, eigen_source="x")
    with pytest.raises(ConfigError, match="needs the run's model"):
        build_optimizer("nsgd", list(model.parameters()), ctx, gamma=0.1, eigen_source="own")


def test_own_eigenvectors_by_lanczos_on_the_probe_set():
    """eigen_source=own: the optimizer runs sgdscope.curvature's Lanczos at θ_t when due."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(30, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (30,))
    data = SimpleNamespace(train=(x, y), probe=(x[:20], y[:20]))
    ctx = OptimContext(lr=0.1, model=model, loss_fn=nn.functional.cross_entropy, data=data)
    opt = build_optimizer(
        "nsgd",
        list(model.parameters()),
        ctx,
        gamma=0.5,
        k=2,
        eigen_source="own",
        refresh_every=3,
        lanczos_tol=1e-10,
    )
    for t in range(4):
        opt.prepare(step=t, epoch=0, shared={})
        if t in (0, 3):  # refreshed now: the top-2 eigenvectors of the probe-set Hessian at θ_t
            want = _dense_eigen_fn(model, 2, (x[:20], y[:20]))().double()
            overlap = (opt.eigenvectors.T @ want).abs()
            torch.testing.assert_close(
                overlap, torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-6
            )
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert opt.num_refreshes == 2
