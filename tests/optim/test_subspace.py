"""Nudged-SGD and projected SGD: γ = 1 is torch SGD bit for bit; γ rescales exactly the top-k
components; parameters matched to the basis by identity; the basis refreshed on its schedule
inside a plain loop; top-only / remove-top geometry; errors; exact resume."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import sgdscope.curvature
from sgdscope.eigenbasis import EigenBasis, RandomBasis
from sgdscope.errors import ConfigError, EigenvectorsUnavailableError, SgdscopeError
from sgdscope.optim import NudgedSGD, ProjectedSGD
from sgdscope.probes import ProbeSet, SharpnessProbe, When, flat_params

from ..probes.cases import (
    CE,
    attached_basis,
    checkpoint,
    dense_hessian,
    fixed_basis,
    make_bundle,
    make_mlp,
    mean_loss,
    n_params,
    orthonormal,
    quadratic,
    subspace_distance,
    top_eigh,
)


def _batches(n_steps: int, dtype: torch.dtype = torch.float32, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 6, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (64,), generator=gen)
    return [(x[(16 * t) % 64 :][:16], y[(16 * t) % 64 :][:16]) for t in range(n_steps)]


def _step(model: nn.Module, opt: torch.optim.Optimizer, batch) -> torch.Tensor:
    """One update; returns θ_{t+1} − θ_t (flat)."""
    before = flat_params(model)
    opt.zero_grad()
    CE(model(batch[0]), batch[1]).backward()
    opt.step()
    return flat_params(model) - before


class _LanczosCalls:
    """Counts the Lanczos runs (each eigenbasis refresh is one), with the optimizer's step."""

    def __init__(self, monkeypatch, opt=None):
        self.steps: list[int | None] = []
        self.opt = opt
        original = sgdscope.curvature.lanczos

        def spy(*args, **kwargs):
            self.steps.append(None if self.opt is None else self.opt.step_count)
            return original(*args, **kwargs)

        monkeypatch.setattr(sgdscope.curvature, "lanczos", spy)


# ----------------------------------------------------------------------------- γ = 1 ≡ SGD
@pytest.mark.parametrize(
    "momentum, weight_decay, nesterov, nudge",
    [
        (0.0, 0.0, False, "gradient"),
        (0.9, 0.0, False, "gradient"),
        (0.9, 1e-3, False, "update"),
        (0.5, 1e-3, True, "gradient"),
        (0.5, 1e-3, True, "update"),
    ],
)
def test_gamma_one_is_torch_sgd_bitwise(momentum, weight_decay, nesterov, nudge):
    ref = make_mlp(widths=(5,))
    mine = copy.deepcopy(ref)
    sgd = torch.optim.SGD(
        ref.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )
    # armed with a basis that is due every 3 steps: γ = 1 must neither refresh nor change a bit
    basis = fixed_basis(mine, orthonormal(n_params(mine), 3), every=3)
    nsgd = NudgedSGD(
        mine.parameters(),
        lr=0.1,
        gamma=1.0,
        basis=basis,
        k=3,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        nudge=nudge,
    )
    assert nsgd.is_identity
    for batch in _batches(50):
        for model, opt in ((ref, sgd), (mine, nsgd)):
            opt.zero_grad()
            CE(model(batch[0]), batch[1]).backward()
            opt.step()
    for p, q in zip(ref.parameters(), mine.parameters(), strict=True):
        assert torch.equal(p, q), "NSGD(γ=1) drifted from torch.optim.SGD"
        if momentum:
            assert torch.equal(sgd.state[p]["momentum_buffer"], nsgd.state[q]["momentum_buffer"])
    assert basis.num_refreshes == 1 and nsgd.step_count == 50


# ----------------------------------------------------------------------------- the rescale
@pytest.mark.parametrize("gamma", [0.0, 0.1, 3.0])
@pytest.mark.parametrize("k", [1, 3])
def test_scales_exactly_the_top_k_components(gamma, k):
    model, _, _, q, _ = quadratic(n=8, seed=3, top=10.0)
    ref = copy.deepcopy(model)
    basis = fixed_basis(model, q[:, :5], loss_fn=mean_loss)  # more columns than k
    opt = NudgedSGD(model.parameters(), lr=0.05, gamma=gamma, basis=basis, k=k)
    sgd = torch.optim.SGD(ref.parameters(), lr=0.05)
    x = torch.zeros(1, 1)
    steps = []
    for m, o in ((model, opt), (ref, sgd)):
        before = flat_params(m)
        o.zero_grad()
        mean_loss(m(x), None).backward()
        o.step()
        steps.append(q.T @ (flat_params(m) - before))
    want = steps[1].clone()
    want[:k] *= gamma
    torch.testing.assert_close(steps[0], want, rtol=0, atol=1e-12)
    assert torch.equal(opt.eigenvectors, q[:, :k])


def test_nudge_update_rescales_velocity_not_buffer():
    model, *_ = quadratic(n=6, seed=0)
    theta = model.theta
    v = orthonormal(6, 2, dtype=torch.float64)
    p_top = v @ v.T
    gen = torch.Generator().manual_seed(5)
    grads = [torch.randn(6, generator=gen, dtype=torch.float64) for _ in range(3)]
    for nudge in ("gradient", "update"):
        with torch.no_grad():
            theta.zero_()
        basis = fixed_basis(model, v, loss_fn=mean_loss)
        opt = NudgedSGD([theta], lr=0.1, gamma=0.25, basis=basis, k=2, momentum=0.9, nudge=nudge)
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


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_groups_in_reversed_order_are_matched_by_identity(weight_decay):
    """γ = 0 with the parameter groups given backwards: every step is orthogonal to the basis
    (|VᵀΔθ| / |Δθ| ≤ 1e-6; 8.7e-2 when rows were matched by group order) and equals the step
    with the groups in model order (to rounding: the projection sums in another order)."""
    bundle = make_bundle(dtype=torch.float64)
    models = {order: make_mlp(widths=(5,), dtype=torch.float64) for order in ("model", "reversed")}
    opts = {}
    for order, model in models.items():
        params = list(model.parameters())
        if order == "reversed":
            params = params[::-1]
        groups = [{"params": [p]} for p in params]
        basis = attached_basis(model, bundle, k=3, every=4, tol=1e-8)
        opts[order] = NudgedSGD(
            groups, lr=0.2, gamma=0.0, basis=basis, k=3, weight_decay=weight_decay
        )
    x, y = bundle.train.tensors()
    for t in range(10):
        batch = (x[(8 * t) % 64 :][:8], y[(8 * t) % 64 :][:8])
        deltas = {order: _step(models[order], opts[order], batch) for order in models}
        v = opts["reversed"].eigenvectors
        d = deltas["reversed"]
        assert float((v.T @ d).norm() / d.norm()) < 1e-6, t
        torch.testing.assert_close(d, deltas["model"], rtol=0, atol=1e-13 * float(d.abs().max()))
        # the same basis (refreshed at steps 0, 4, 8 at θ_t that agree to rounding)
        assert subspace_distance(v, opts["model"].eigenvectors) < 1e-9


def test_parameters_of_another_model_are_refused():
    model, other = make_mlp(widths=(5,)), make_mlp(widths=(5,))
    basis = fixed_basis(model, orthonormal(n_params(model), 2))
    opt = NudgedSGD(other.parameters(), lr=0.1, gamma=0.5, basis=basis, k=2)
    with pytest.raises(SgdscopeError, match="exactly the trainable parameters"):
        _step(other, opt, _batches(1)[0])
    some = NudgedSGD(list(model.parameters())[:2], lr=0.1, gamma=0.5, basis=basis, k=2)
    with pytest.raises(SgdscopeError, match="exactly the trainable parameters"):
        _step(model, some, _batches(1)[0])


# ----------------------------------------------------------------------------- the schedule
def test_refreshes_on_the_basis_schedule_in_a_plain_loop(monkeypatch):
    """Counted in the optimizer's own steps: no call besides zero_grad/backward/step."""
    bundle = make_bundle(dtype=torch.float64)
    model = make_mlp(widths=(4,), dtype=torch.float64)
    basis = attached_basis(model, bundle, k=2, every=3, tol=1e-10)
    opt = NudgedSGD(model.parameters(), lr=0.3, gamma=0.5, basis=basis, k=2)
    calls = _LanczosCalls(monkeypatch, opt)
    x, y = bundle.train.tensors()
    for t in range(7):
        theta_t = flat_params(model)
        _step(model, opt, (x[8 * t : 8 * t + 8], y[8 * t : 8 * t + 8]))
        if t in (0, 3, 6):  # refreshed inside step t, at θ_t (before its update)
            assert basis.step == t
            _, want = top_eigh(dense_hessian(model, CE, bundle.probe, theta_t), 2)
            assert subspace_distance(opt.eigenvectors, want) < 1e-6
    assert calls.steps == [0, 3, 6] and basis.num_refreshes == 3

    # every="epoch": the optimizer counts steps; the epoch length comes with the basis
    model = make_mlp(widths=(4,), dtype=torch.float64)
    basis = attached_basis(model, bundle, k=2, every="epoch", steps_per_epoch=4)
    opt = NudgedSGD(model.parameters(), lr=0.3, gamma=0.5, basis=basis, k=2)
    calls = _LanczosCalls(monkeypatch, opt)
    for t in range(9):
        _step(model, opt, (x[8 * (t % 8) :][:8], y[8 * (t % 8) :][:8]))
    assert calls.steps == [0, 4, 8]


def test_default_schedule_in_a_users_loop_of_two_hundred_steps(monkeypatch):
    """The default EigenBasis (every 100 steps) refreshes at steps 0, 100 and 200 of a loop that
    only calls backward() and step()."""
    bundle = make_bundle()
    model = make_mlp(widths=(4,))
    basis = EigenBasis(k=2).attach(model, CE, bundle)
    assert basis.every == 100
    opt = NudgedSGD(model.parameters(), lr=0.1, gamma=0.1, basis=basis, k=2, momentum=0.9)
    calls = _LanczosCalls(monkeypatch, opt)
    x, y = bundle.train.tensors()
    thetas = {}
    for t in range(201):
        thetas[t] = flat_params(model)
        _step(model, opt, (x[(8 * t) % 64 :][:8], y[(8 * t) % 64 :][:8]))
    assert calls.steps == [0, 100, 200]
    assert basis.step == 200 and opt.step_count == 201
    # the last refresh is of the probe-set Hessian at θ_200
    _, want = top_eigh(dense_hessian(model, CE, bundle.probe, thetas[200]), 2)
    assert subspace_distance(basis.vectors, want) < 1e-2  # float32, tol 1e-4


def test_one_refresh_per_due_step_when_optimizer_and_probes_share_the_basis(monkeypatch):
    """Whoever gets to a step first refreshes: the optimizer inside step() at the basis's due
    steps, the probe runner (for a probe that needs fresh eigenpairs) at the others; never
    twice, and the runner records each refresh's cost at its step."""
    bundle = make_bundle()
    model = make_mlp(widths=(4,))
    basis = EigenBasis(k=2, every=3)
    probes = ProbeSet([SharpnessProbe(When(1))], eigenbasis=basis)  # due at every step
    probes.on_train_start(model, bundle, loss_fn=CE)
    opt = NudgedSGD(model.parameters(), lr=0.1, gamma=0.5, basis=basis, k=2)
    calls = _LanczosCalls(monkeypatch)
    x, y = bundle.train.tensors()
    for t in range(6):
        batch = (x[8 * t : 8 * t + 8], y[8 * t : 8 * t + 8])
        before = len(calls.steps)
        _step(model, opt, batch)
        by_optimizer = len(calls.steps) - before
        m = probes.after_step(model, batch, None, opt)
        by_probes = len(calls.steps) - before - by_optimizer
        assert (by_optimizer, by_probes) == ((1, 0) if t % 3 == 0 else (0, 1)), t
        assert basis.step == t and m.scalars["eigenbasis_matvecs"] == basis.last_matvecs > 0
    assert basis.num_refreshes == 6


# ----------------------------------------------------------------------------- errors
def test_no_usable_basis_raises_unless_burn_in_covers():
    model = make_mlp(widths=(5,))
    with pytest.raises(ConfigError, match="needs basis=EigenBasis"):
        NudgedSGD(model.parameters(), lr=0.1, gamma=0.1, k=2)
    # a basis without loss and data cannot refresh itself
    basis = EigenBasis(k=4).attach(model)
    opt = NudgedSGD(model.parameters(), lr=0.1, gamma=0.1, basis=basis, k=2)
    before = flat_params(model)
    with pytest.raises(EigenvectorsUnavailableError, match=r"attach\(model, loss_fn") as info:
        _step(model, opt, _batches(1)[0])
    assert isinstance(info.value, SgdscopeError) and isinstance(info.value, RuntimeError)
    assert torch.equal(flat_params(model), before), "a refused step must not move θ"
    assert opt.step_count == 0

    ref = copy.deepcopy(model)
    sgd = torch.optim.SGD(ref.parameters(), lr=0.1)
    opt = NudgedSGD(model.parameters(), lr=0.1, gamma=0.1, basis=basis, k=2, burn_in=3)
    for batch in _batches(3):  # plain SGD while burning in, bit for bit
        _step(model, opt, batch)
        _step(ref, sgd, batch)
    assert torch.equal(flat_params(model), flat_params(ref))
    with pytest.raises(EigenvectorsUnavailableError):
        _step(model, opt, _batches(4)[3])
    v = orthonormal(n_params(model), 4)
    basis.set(v, step=3)
    _step(model, opt, _batches(4)[3])
    assert torch.equal(opt.eigenvectors, v[:, :2]) and opt.step_count == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gamma=-1.0), "gamma"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(gamma=0.1, k=-1), "k must be"),
        (dict(gamma=0.1, k=5), "k=5 directions but the basis has k=3"),
        (dict(gamma=0.1, nudge="velocity"), "nudge"),
        (dict(gamma=0.1, burn_in=-1), "burn_in"),
        (dict(gamma=0.1, momentum=1.0), "momentum"),
        (dict(gamma=0.1, nesterov=True), "nesterov"),
        (dict(gamma=0.1, weight_decay=-1.0), "weight_decay"),
        (dict(gamma=0.1, lr=float("inf")), "lr"),
    ],
)
def test_invalid_arguments_fail_at_construction(kwargs, match):
    model = make_mlp(widths=(5,))
    kwargs = {"lr": 0.1, **kwargs}
    basis = fixed_basis(model, orthonormal(n_params(model), 3))
    with pytest.raises(ConfigError, match=match):
        NudgedSGD(model.parameters(), basis=basis, **kwargs)


# ----------------------------------------------------------------------------- random basis
def test_random_subspace_is_seeded_orthonormal_and_redrawn():
    models = [make_mlp(widths=(5,)) for _ in range(2)]
    opts = [
        NudgedSGD(
            m.parameters(),
            lr=0.0,
            gamma=0.5,
            basis=RandomBasis(k=4, every=2, seed=7).attach(m),
            k=4,
        )
        for m in models
    ]
    seen = []
    for batch in _batches(4):
        for m, opt in zip(models, opts, strict=True):
            _step(m, opt, batch)
        v = opts[0].eigenvectors
        assert torch.equal(v, opts[1].eigenvectors)
        torch.testing.assert_close(v.T @ v, torch.eye(4), rtol=0, atol=1e-6)
        seen.append(v.clone())
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    assert torch.equal(seen[2], seen[3]) and opts[0].basis.num_refreshes == 2


# ----------------------------------------------------------------------------- resume
def _train(model, opt, batches, start, stop):
    for t in range(start, stop):
        _step(model, opt, batches[t])


@pytest.mark.parametrize("subspace", ["top", "random"])
@pytest.mark.parametrize("nudge", ["gradient", "update"])
def test_resume_mid_run_is_bitwise_identical(subspace, nudge):
    batches = _batches(20)

    def make(seed):
        model = make_mlp(widths=(5,), seed=seed)
        if subspace == "top":
            # forward-over-reverse products: the default style picks batched or looped block
            # products by timing (see test_eigenbasis.py::test_block_products_...)
            basis = attached_basis(model, batches[0], k=3, every=4, hvp="forward_over_reverse")
        else:
            basis = RandomBasis(k=3, every=4, seed=5).attach(model)
        opt = NudgedSGD(
            model.parameters(),
            lr=0.1,
            gamma=0.2,
            basis=basis,
            k=3,
            burn_in=2,
            momentum=0.9,
            nudge=nudge,
        )
        return model, basis, opt

    model_a, basis_a, opt_a = make(0)
    _train(model_a, opt_a, batches, 0, 20)

    model_b, basis_b, opt_b = make(0)
    _train(model_b, opt_b, batches, 0, 11)
    ckpt = checkpoint(
        {"model": model_b.state_dict(), "optim": opt_b.state_dict(), "basis": basis_b.state_dict()}
    )
    model_c, basis_c, opt_c = make(123)  # fresh objects, different weights
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["optim"])
    basis_c.load_state_dict(ckpt["basis"])
    assert opt_c.step_count == 11
    _train(model_c, opt_c, batches, 11, 20)

    assert torch.equal(flat_params(model_a), flat_params(model_c))
    assert basis_a.num_refreshes == basis_c.num_refreshes == 5
    assert torch.equal(opt_a.eigenvectors, opt_c.eigenvectors)


# ----------------------------------------------------------------------------- projected SGD
ATOL = 1e-12


def _projected_setup(seed: int = 0):
    model = make_mlp(input_shape=(5,), widths=(4,), dtype=torch.float64, seed=seed)
    v = orthonormal(n_params(model), 3, dtype=torch.float64, seed=seed + 1)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    return model, v, [(x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)]


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("k", [1, 3])
def test_top_only_updates_lie_in_the_subspace(momentum, k):
    model, v, batches = _projected_setup()
    basis = fixed_basis(model, v)
    opt = ProjectedSGD(
        model.parameters(), lr=0.2, mode="top_only", basis=basis, k=k, momentum=momentum
    )
    vk = v[:, :k]
    for batch in batches:
        delta = _step(model, opt, batch)
        assert delta.norm() > 1e-6, "a zero update would pass trivially"
        outside = delta - vk @ (vk.T @ delta)
        torch.testing.assert_close(outside, torch.zeros_like(delta), rtol=0, atol=ATOL)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("k", [1, 3])
def test_remove_top_updates_are_orthogonal_to_the_subspace(momentum, k):
    model, v, batches = _projected_setup()
    basis = fixed_basis(model, v)
    opt = ProjectedSGD(
        model.parameters(), lr=0.2, mode="remove_top", basis=basis, k=k, momentum=momentum
    )
    for batch in batches:
        delta = _step(model, opt, batch)
        assert delta.norm() > 1e-6
        torch.testing.assert_close(
            v[:, :k].T @ delta, torch.zeros(k, dtype=torch.float64), rtol=0, atol=ATOL
        )


def test_top_only_plus_remove_top_is_the_sgd_step():
    model, v, batches = _projected_setup()
    deltas = {}
    for mode in ("top_only", "remove_top", "sgd"):
        m = copy.deepcopy(model)
        if mode == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(m.parameters(), lr=0.2)
        else:
            opt = ProjectedSGD(m.parameters(), lr=0.2, mode=mode, basis=fixed_basis(m, v), k=2)
        deltas[mode] = _step(m, opt, batches[0])
    torch.testing.assert_close(
        deltas["top_only"] + deltas["remove_top"], deltas["sgd"], rtol=0, atol=ATOL
    )


def test_projected_needs_a_basis_and_validates_mode():
    model, _, batches = _projected_setup()
    with pytest.raises(ConfigError, match="mode must be one of"):
        ProjectedSGD(model.parameters(), lr=0.1, mode="top")
    with pytest.raises(ConfigError, match="needs basis="):
        ProjectedSGD(model.parameters(), lr=0.1, mode="remove_top")
    opt = ProjectedSGD(model.parameters(), lr=0.1, mode="remove_top", basis=EigenBasis(k=1))
    with pytest.raises(EigenvectorsUnavailableError, match="not attached"):
        _step(model, opt, batches[0])
    # k = 0: remove-top of nothing is SGD (no basis needed)
    opt = ProjectedSGD(model.parameters(), lr=0.1, mode="remove_top", k=0)
    assert opt.is_identity


def test_a_step_refused_for_want_of_a_basis_changes_no_state():
    """nudge="update" puts the rescale after the momentum: the basis is fetched before any
    transform runs, so a refused step leaves the momentum buffer and θ as they were."""
    bundle = make_bundle()
    model = make_mlp(widths=(4,))
    basis = EigenBasis(k=2, every=3).attach(model)  # no loss, no data: it cannot refresh
    opt = NudgedSGD(
        model.parameters(), lr=0.1, gamma=0.5, basis=basis, k=2, momentum=0.9, nudge="update"
    )
    x, y = bundle.train.tensors()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(EigenvectorsUnavailableError):
        _step(model, opt, (x[:8], y[:8]))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert all("momentum_buffer" not in opt.state[p] for p in model.parameters())
    assert opt.step_count == 0


def test_random_basis_resumes_with_the_optimizer_alone():
    """The random-subspace control's basis has no other owner: the optimizer's state carries
    its generator and refresh step, so a checkpoint of model + optimizer resumes bit for bit
    (the Trainer checkpoints no separate random basis; issue 11, found by killing a run)."""
    batches = _batches(20)

    def make(seed):
        model = make_mlp(widths=(5,), seed=seed)
        basis = RandomBasis(k=3, every=4, seed=5).attach(model)
        opt = NudgedSGD(model.parameters(), lr=0.1, gamma=0.2, basis=basis, k=3, momentum=0.9)
        return model, opt

    model_a, opt_a = make(0)
    _train(model_a, opt_a, batches, 0, 20)
    model_b, opt_b = make(0)
    _train(model_b, opt_b, batches, 0, 14)  # resumed between two redraws (12 and 16)
    ckpt = checkpoint({"model": model_b.state_dict(), "optim": opt_b.state_dict()})
    model_c, opt_c = make(123)
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["optim"])
    _train(model_c, opt_c, batches, 14, 20)
    assert torch.equal(flat_params(model_a), flat_params(model_c))
    assert opt_a.basis.num_refreshes == opt_c.basis.num_refreshes == 5
