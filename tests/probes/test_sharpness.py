"""SharpnessProbe in a hand-written training loop (no Trainer): values at θ_t, shared
eigenvectors, warm starts, exact resume, options."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import sgdscope as ss
import sgdscope.probes.sharpness
from sgdscope.errors import ConfigError
from sgdscope.probes import PROBES, ProbeContext, When, build_probe, flat_grads, flat_params
from sgdscope.probes.sharpness import SharpnessProbe

LR, MOMENTUM = 0.1, 0.9


def _bundle():
    return ss.load_dataset("synthetic", num_samples=64, num_test=8, probe_size=16, seed=0)


def _dense(model, data, theta, names=None, bn_mode="train"):
    """Dense float64 Hessian of the mean loss over ``data`` at flat θ (all trainable params),
    restricted to ``names`` (reverse-over-reverse; see tests/curvature/curvature_cases.py)."""
    x, y = data
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    values, o = {}, 0
    for n, p in named:
        values[n] = theta[o : o + p.numel()].view(p.shape).double()
        o += p.numel()
    names = names or [n for n, _ in named]
    bufs = {n: (b.double() if b.is_floating_point() else b) for n, b in model.named_buffers()}
    if bn_mode != "eval":
        bufs = {n: None for n in bufs}
    shapes = [values[n].shape for n in names]

    def f(flat):
        ps, o = dict(values), 0
        for n, s in zip(names, shapes, strict=True):
            ps[n] = flat[o : o + s.numel()].view(s)
            o += s.numel()
        flags = [(m, m.training) for m in model.modules()]
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(bn_mode != "eval")
        try:
            return F.cross_entropy(functional_call(model, {**ps, **bufs}, (x.double(),)), y)
        finally:
            for m, t in flags:
                m.training = t

    flat = torch.cat([values[n].reshape(-1) for n in names])
    return torch.autograd.functional.hessian(f, flat)


def _snapshot(model):
    tensors = [p.detach().clone() for p in model.parameters()]
    tensors += [p.grad.clone() for p in model.parameters() if p.grad is not None]
    tensors += [b.clone() for b in model.buffers()] + [torch.get_rng_state()]
    return tensors, [m.training for m in model.modules()]


def _loop(model, probe, bundle, steps, shared=None, start_state=None):
    """SGD with momentum; the probe sees each step as the Trainer shows it (after the step)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    if start_state is not None:
        model.load_state_dict(start_state["model"])
        opt.load_state_dict(start_state["opt"])
    shared = {} if shared is None else shared
    theta0 = flat_params(model)
    out, states = {}, {}
    x, y = bundle.train.tensors()
    first = 0 if start_state is None else start_state["step"]
    for step in range(first, first + steps):
        xb, yb = x[(step * 16) % 64 :][:16], y[(step * 16) % 64 :][:16]
        theta = flat_params(model)
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        grad = flat_grads(model)
        opt.step()
        ctx = ProbeContext(
            model=model,
            loss_fn=F.cross_entropy,
            step=step,
            epoch=0,
            lr=LR,
            theta0=theta0,
            batch=(xb, yb),
            loss=float(loss.detach()),
            grad=grad,
            theta=theta,
            theta_next=flat_params(model),
            data=bundle,
            optimizer=opt,
            shared=shared,
        )
        probe.observe(ctx)
        if probe.due(step, 0):
            before = _snapshot(model)
            out[step] = (probe.measure(ctx), theta, ctx)
            after = _snapshot(model)  # the model (θ_{t+1}, grads, buffers, flags) is untouched
            assert all(torch.equal(a, b) for a, b in zip(before[0], after[0], strict=True))
            assert before[1] == after[1]
        states[step] = {
            "model": copy.deepcopy(model.state_dict()),
            "opt": copy.deepcopy(opt.state_dict()),
            "probe": copy.deepcopy(probe.state_dict()),
            "step": step + 1,
        }
    return out, states


def test_values_at_theta_t_shared_vectors_and_model_untouched():
    bundle = _bundle()
    torch.manual_seed(0)
    model = ss.build_model(
        "mlp", bundle.input_shape, bundle.num_classes, widths=[6], activation="tanh"
    )
    probe = SharpnessProbe(
        When(every=2), k=3, tol=1e-6, trace_samples=30, fro_samples=30, per_layer=True
    )
    shared: dict = {}
    out, _ = _loop(model, probe, bundle, 5, shared)
    assert sorted(out) == [0, 2, 4]
    probe_data = bundle.probe.tensors()
    for step, (meas, theta, _ctx) in out.items():
        H = _dense(model, probe_data, theta)
        ev = torch.linalg.eigvalsh(H)
        s = meas.scalars
        got = torch.tensor([s["lambda_1"], s["lambda_2"], s["lambda_3"]], dtype=torch.float64)
        # float32 products (error ~1e3·eps32·‖H‖) and tol=1e-6: 1e-4 relative covers both
        assert torch.allclose(got, ev.flip(0)[:3], rtol=1e-4), step
        assert s["lambda_min"] == pytest.approx(float(ev[0]), rel=1e-4, abs=1e-4 * float(ev[-1]))
        assert s["stability"] == pytest.approx(LR * s["lambda_1"] / (2 + 2 * MOMENTUM))
        assert abs(s["hessian_trace"] - float(H.trace())) < 5 * s["hessian_trace_se"]
        assert abs(s["hessian_fro"] - float(H.norm())) < 5 * s["hessian_fro_se"]
        assert list(meas.arrays["eigenvalues"]) == pytest.approx(got.tolist())
        # per-layer λ₁: the top eigenvalue of each layer's diagonal block
        for group, names in (("1", ["1.weight", "1.bias"]), ("3", ["3.weight", "3.bias"])):
            block = _dense(model, probe_data, theta, names)
            top = float(torch.linalg.eigvalsh(block)[-1])
            assert s[f"lambda_1/{group}"] == pytest.approx(top, rel=1e-4)
    # measured at θ_t, not at θ_{t+1} (which the model holds during measure)
    meas, theta, ctx = out[4]
    H_next = _dense(model, probe_data, ctx.theta_next)
    assert abs(meas.scalars["lambda_1"] - float(torch.linalg.eigvalsh(H_next)[-1])) > 1e-5
    # the latest eigenvectors are shared with the probes and optimizers of the same step
    assert shared["eigen_step"] == 4
    E = shared["eigenvectors"]
    assert E.shape == (theta.numel(), 3) and shared["eigenvalues"].shape == (3,)
    H = _dense(model, probe_data, theta).float()
    assert torch.allclose(H @ E, E * shared["eigenvalues"].float(), atol=1e-3)


def test_state_dict_makes_resume_exact_and_warm_starts():
    bundle = _bundle()
    torch.manual_seed(1)
    model = ss.build_model("mlp", bundle.input_shape, bundle.num_classes, widths=[6])
    init = copy.deepcopy(model.state_dict())
    probe = SharpnessProbe(When(every=2), k=2)
    out, states = _loop(model, probe, bundle, 6)
    # resume after step 2 (the checkpoint holds the probe's eigenvectors)
    model2 = ss.build_model("mlp", bundle.input_shape, bundle.num_classes, widths=[6])
    model2.load_state_dict(init)
    probe2 = SharpnessProbe(When(every=2), k=2)
    probe2.load_state_dict(states[2]["probe"])
    shared: dict = {}
    ctx0 = ProbeContext(
        model=model2,
        loss_fn=F.cross_entropy,
        step=3,
        epoch=0,
        lr=LR,
        theta0=flat_params(model2),
        shared=shared,
    )
    probe2.on_train_start(ctx0)
    assert shared["eigen_step"] == 2  # restored vectors are handed out again
    out2, _ = _loop(model2, probe2, bundle, 3, start_state=states[2])
    assert out2[4][0].scalars == out[4][0].scalars  # bit-identical
    # a warm start (previous eigenvectors) against a cold one at the same step
    cold = SharpnessProbe(When(every=2), k=2)
    meas_cold = cold.measure(out[4][2])
    assert meas_cold.scalars["lambda_1"] == pytest.approx(out[4][0].scalars["lambda_1"], rel=1e-4)


def test_batchnorm_eval_and_ghost_modes():
    bundle = _bundle()
    torch.manual_seed(2)
    model = ss.build_model(
        "mlp", bundle.input_shape, bundle.num_classes, widths=[6], activation="tanh", batchnorm=True
    )
    probe = SharpnessProbe(When(steps=[1]), k=2, bn_mode="eval", tol=1e-6, lambda_min=False)
    out, _ = _loop(model, probe, bundle, 2)
    meas, theta, ctx = out[1]
    H = _dense(model, bundle.probe.tensors(), theta, bn_mode="eval")
    assert meas.scalars["lambda_1"] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-4)
    assert "lambda_min" not in meas.scalars
    ghost = SharpnessProbe(k=1, bn_mode="ghost", ghost_batch_size=8, split="train")
    m = ghost.measure(ctx)
    assert m.scalars["lambda_1"] > 0 and "eigenvalues" in m.arrays


def test_registry_and_option_validation():
    assert "sharpness" in ss.list_probes()
    assert PROBES.flags("sharpness") == {"needs_hvp": True}
    probe = build_probe("sharpness", When(every=5), k=4, trace_samples=10)
    assert isinstance(probe, SharpnessProbe) and probe.order == -10 and probe.k == 4
    with pytest.raises(ConfigError, match="did you mean 'trace_samples'"):
        build_probe("sharpness", When(every=5), trace_sample=10)
    for bad in (
        {"k": 0},
        {"bn_mode": "batch"},
        {"bn_mode": "ghost"},
        {"split": "val"},
        {"trace_samples": 1},
        {"tol": 2.0},
    ):
        with pytest.raises(ConfigError):
            SharpnessProbe(**bad)
    with pytest.raises(ConfigError, match=r"ctx\.data"):
        SharpnessProbe(k=1).measure(
            ProbeContext(
                model=nn.Linear(2, 2),
                loss_fn=F.mse_loss,
                step=0,
                epoch=0,
                lr=0.1,
                theta0=torch.zeros(6),
            )
        )


def test_warm_start_choice_backs_off_after_rough_vectors():
    # Previous vectors that are far off make the Ritz warm start fall back to one Lanczos chain;
    # the probe then uses the sum start for one measurement (a back-off that doubles) and tries
    # the Ritz start again after; the choice is part of the state (exact resume).
    bundle = _bundle()
    torch.manual_seed(1)
    model = ss.build_model("mlp", bundle.input_shape, bundle.num_classes, widths=[6])
    probe = SharpnessProbe(When(every=1), k=2)
    out, _ = _loop(model, probe, bundle, 1)
    ctx = out[0][2]
    n = probe._vectors.shape[0]
    probe._vectors = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    probe.measure(ctx)
    assert (probe._sum_left, probe._backoff) == (1, 2)
    state = probe.state_dict()
    assert (state["warm_sum_left"], state["warm_backoff"]) == (1, 2)
    probe.measure(ctx)  # sum start from accurate vectors
    assert probe._sum_left == 0
    clone = SharpnessProbe(When(every=1), k=2)
    clone.load_state_dict(state)
    assert (clone._sum_left, clone._backoff) == (1, 2)
    meas = probe.measure(ctx)  # Ritz start again from converged vectors: k + 1 products + few
    assert meas.scalars["hessian_matvecs"] <= 5 and probe._backoff == 1
