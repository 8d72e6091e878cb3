"""SharpnessProbe in a user's own loop (ProbeSet, no Trainer): values at θ_t against dense float64
Hessians, the eigenbasis it refreshes, exact resume, BatchNorm modes, options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sgdscope as ss
from sgdscope.curvature import HessianOperator, lanczos
from sgdscope.eigenbasis import EigenBasis
from sgdscope.errors import ConfigError
from sgdscope.probes import PROBES, ProbeSet, When, build_probe, flat_params
from sgdscope.probes.sharpness import SharpnessProbe, param_groups

from .cases import (
    CE,
    attached_basis,
    context,
    dense_hessian,
    make_bundle,
    make_mlp,
    run_loop,
    subspace_distance,
)

LR, MOMENTUM = 0.1, 0.9


def _batches(bundle, steps):
    x, y = bundle.train.tensors()
    return [(x[(16 * t) % 64 :][:16], y[(16 * t) % 64 :][:16]) for t in range(steps)]


def _run(seed, steps, probe_factory, *, stop_after=None, start=None, **basis):
    """SGD with momentum; a sharpness probe and its eigenbasis run by a ProbeSet."""
    bundle = make_bundle()
    model = make_mlp(widths=(6,), seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    probes = ProbeSet([probe_factory()], eigenbasis=EigenBasis(**basis))
    loop = run_loop(
        model,
        probes,
        bundle,
        _batches(bundle, steps),
        opt,
        start=start,
        stop_after=stop_after,
        keep_states=True,
        check_untouched=True,  # the model (θ_{t+1}, grads, buffers, flags) and RNG untouched
    )
    return loop, model, bundle, probes


def test_values_at_theta_t_against_dense_hessians():
    def probe():
        return SharpnessProbe(When(every=2), trace_samples=30, fro_samples=30, per_layer=True)

    loop, model, bundle, probes = _run(0, 5, probe, k=3, every=2, tol=1e-6)
    measured = {t: m for t, m in loop.measured.items() if "lambda_1" in m.scalars}
    assert sorted(measured) == [0, 2, 4]
    probe_data = bundle.probe.tensors()
    for step, meas in measured.items():
        theta = loop.thetas[step]
        H = dense_hessian(model, CE, probe_data, theta)
        ev = torch.linalg.eigvalsh(H)
        s = meas.scalars
        got = torch.tensor([s["lambda_1"], s["lambda_2"], s["lambda_3"]], dtype=torch.float64)
        # float32 products (error ~1e3·eps32·‖H‖) and tol=1e-6: 1e-4 relative covers both
        assert torch.allclose(got, ev.flip(0)[:3], rtol=1e-4), step
        assert s["lambda_min"] == pytest.approx(float(ev[0]), rel=1e-4, abs=1e-4 * float(ev[-1]))
        assert s["spectral_norm"] == max(abs(s["lambda_1"]), abs(s["lambda_min"]))
        assert s["stability"] == pytest.approx(LR * s["lambda_1"] / (2 + 2 * MOMENTUM))
        assert abs(s["hessian_trace"] - float(H.trace())) < 5 * s["hessian_trace_se"]
        assert abs(s["hessian_fro"] - float(H.norm())) < 5 * s["hessian_fro_se"]
        assert list(meas.arrays["eigenvalues"]) == pytest.approx(got.tolist())
        assert s["eigenbasis_matvecs"] > 0 and s["hessian_matvecs"] > s["eigenbasis_matvecs"]
        # per-layer λ₁: the top eigenvalue of each layer's diagonal block
        for group, names in (("1", ["1.weight", "1.bias"]), ("3", ["3.weight", "3.bias"])):
            block = dense_hessian(model, CE, probe_data, theta, names=names)
            top = float(torch.linalg.eigvalsh(block)[-1])
            assert s[f"lambda_1/{group}"] == pytest.approx(top, rel=1e-4)
    # measured at θ_t, not at θ_{t+1} (which the model holds during measure)
    theta_5 = flat_params(model)  # the model holds θ_5 after five steps
    H_next = dense_hessian(model, CE, probe_data, theta_5)
    assert abs(measured[4].scalars["lambda_1"] - float(torch.linalg.eigvalsh(H_next)[-1])) > 1e-5
    # the eigenbasis the other consumers of step 4 read: its vectors are eigenvectors at θ_4
    basis = probes.eigenbasis
    assert basis.step == 4 and basis.vectors.shape == (loop.thetas[4].numel(), 3)
    H = dense_hessian(model, CE, probe_data, loop.thetas[4])
    lam, vec = torch.linalg.eigh(H)
    assert subspace_distance(basis.vectors, vec.flip(1)[:, :3]) < 1e-3
    torch.testing.assert_close(basis.values, lam.flip(0)[:3], rtol=1e-4, atol=0)


def test_state_dict_makes_resume_exact_and_warm_starts():
    def probe():
        return SharpnessProbe(When(every=2))

    # forward-over-reverse products: the default style picks batched or looped block products
    # by timing, and the two round differently (test_eigenbasis.py::
    # test_block_products_do_not_depend_on_timing)
    basis = dict(k=2, every=2, hvp="forward_over_reverse")
    full, _, _, _ = _run(1, 6, probe, **basis)
    # stop after step 2 (3 steps), resume into fresh objects from the checkpoint of step 2
    part, _, _, _ = _run(1, 6, probe, stop_after=3, **basis)
    ckpt = part.states[2]
    assert ckpt["probes"]["eigenbasis"]["step"] == 2  # the warm-start vectors travel with it
    resumed, _, _, probes = _run(7, 6, probe, start=ckpt, **basis)
    assert sorted(resumed.measured) == [3, 4, 5]
    for t in (3, 4, 5):  # bit-identical
        assert resumed.measured[t].scalars == full.measured[t].scalars, t
    assert probes.eigenbasis.num_refreshes == 3  # steps 0, 2 (restored) and 4
    # the warm start (previous vectors) against a cold start at the same θ_4
    bundle = make_bundle()
    model = make_mlp(widths=(6,), seed=1)
    cold = attached_basis(model, bundle, k=2, warm_start=False, hvp="forward_over_reverse")
    m = SharpnessProbe().measure(context(model, theta=full.thetas[4], basis=cold, step=4, lr=LR))
    assert m.scalars["lambda_1"] == pytest.approx(full.measured[4].scalars["lambda_1"], rel=1e-4)
    assert m.scalars["hessian_matvecs"] > full.measured[4].scalars["hessian_matvecs"]


def test_batchnorm_eval_and_ghost_modes():
    bundle = make_bundle()
    model = make_mlp(widths=(6,), batchnorm=True, seed=2).train()
    basis = EigenBasis(k=2, bn_mode="eval", tol=1e-6, lambda_min=False)
    probes = ProbeSet([SharpnessProbe(When(steps=[1]))], eigenbasis=basis)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loop = run_loop(model, probes, bundle, _batches(bundle, 2), opt, check_untouched=True)
    meas = loop.measured[1]
    H = dense_hessian(model, CE, bundle.probe, loop.thetas[1], bn_mode="eval")
    assert meas.scalars["lambda_1"] == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-4)
    assert "lambda_min" not in meas.scalars and "spectral_norm" not in meas.scalars
    # ghost mode on the train set: the basis's settings reach the Hessian
    ghost = attached_basis(model, bundle, k=1, bn_mode="ghost", ghost_batch_size=8, data="train")
    theta = loop.thetas[1]
    m = SharpnessProbe().measure(context(model, theta=theta, basis=ghost, step=1))
    op = HessianOperator(model, CE, bundle.train, bn_mode="ghost", ghost_batch_size=8, theta=theta)
    want = float(lanczos(op, 1, which="both").eigenvalues[0])
    assert m.scalars["lambda_1"] == pytest.approx(want, rel=1e-4)
    H_train = dense_hessian(model, CE, bundle.train, theta, bn_mode="train")
    H_eval = dense_hessian(model, CE, bundle.train, theta, bn_mode="eval")
    for other in (H_train, H_eval):  # a mode of its own
        assert abs(m.scalars["lambda_1"] - float(torch.linalg.eigvalsh(other)[-1])) > 1e-3


def test_param_groups_one_per_module_owning_parameters():
    model = make_mlp(widths=(5, 4), batchnorm=True)
    assert param_groups(model) == [
        (group, [f"{group}.weight", f"{group}.bias"]) for group in ("1", "2", "4", "5", "7")
    ]
    model[1].bias.requires_grad_(False)  # frozen parameters belong to no group
    assert param_groups(model)[0] == ("1", ["1.weight"])


def test_registry_and_option_validation():
    assert "sharpness" in ss.list_probes()
    assert PROBES.flags("sharpness") == {"needs_hvp": True}
    probe = build_probe("sharpness", When(every=5), trace_samples=10, per_layer=True)
    assert isinstance(probe, SharpnessProbe) and probe.order == -10 and probe.trace_samples == 10
    assert probe.needs_fresh_eigenbasis and probe.uses_eigenbasis
    with pytest.raises(ConfigError, match="did you mean 'trace_samples'"):
        build_probe("sharpness", When(every=5), trace_sample=10)
    # the eigenbasis options are not the probe's any more: one declaration, on the basis
    with pytest.raises(ConfigError, match="unknown option"):
        build_probe("sharpness", When(), k=4)
    for bad in ({"trace_samples": 1}, {"fro_samples": -2}, {"trace_samples": True}):
        with pytest.raises(ConfigError):
            SharpnessProbe(**bad)
    with pytest.raises(ConfigError, match="give the run an eigenbasis"):
        SharpnessProbe().measure(context(nn.Linear(2, 2), theta=torch.zeros(6)))
    with pytest.raises(ConfigError, match="give the run an eigenbasis"):
        ProbeSet([SharpnessProbe()])
