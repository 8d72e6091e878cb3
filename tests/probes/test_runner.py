"""ProbeSet, the probe runner of every loop: hook order, what the hooks see, state keyed by probe
name, exact mid-run resume (eigenbasis included), the store, misuse, and a user's own loop
writing the same metrics as the Trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import sgdscope as ss
from sgdscope.config import load_config
from sgdscope.eigenbasis import EigenBasis
from sgdscope.errors import InvalidArgumentError
from sgdscope.probes import (
    AlignmentProbe,
    DistanceProbe,
    EigendirectionLossProbe,
    GradCosineProbe,
    GradNormProbe,
    LearningRateProbe,
    Measurement,
    Probe,
    ProbeContext,
    ProbeSet,
    SharpnessProbe,
    StepScaleProbe,
    WalkProbe,
    When,
    flat_grads,
    flat_params,
)
from sgdscope.store import load_run
from sgdscope.train import build_parts, run

from ..helpers import tiny_config
from .cases import CE, epoch_batches, make_bundle, make_mlp, run_loop


class Recorder(Probe):
    """Logs every hook call (hook, probe, step, epoch) and checks what the context holds."""

    def __init__(self, log, label, order=0, every=None, expect=None):
        super().__init__(every)
        self.name = "recorder"
        self.log, self.label, self.order, self.expect = log, label, order, expect

    def _record(self, hook, ctx):
        self.log.append((hook, self.label, ctx.step, ctx.epoch))
        if self.expect is not None:
            self.expect(hook, ctx)
        return Measurement({f"{self.label}_{hook}": float(ctx.step)})

    def on_train_start(self, ctx):
        return self._record("on_train_start", ctx)

    def observe(self, ctx):
        return self._record("observe", ctx)

    def measure(self, ctx):
        return self._record("measure", ctx)

    def on_epoch_end(self, ctx):
        return self._record("on_epoch_end", ctx)

    def state_dict(self):
        return {"label": self.label}


# ----------------------------------------------------------------------------- hook order
def _hook_loop(*, split_epoch_end: bool, expect=None, log=None):
    """2 epochs of 3 steps, two recorders (given out of order), an eigenbasis due every 2."""
    log = [] if log is None else log
    bundle = make_bundle()
    model = make_mlp()
    late = Recorder(log, "late", order=5, every=When(every=2), expect=expect)
    early = Recorder(log, "early", order=-5, expect=expect)
    basis = ss.EigenBasis(k=2, every=2)
    probes = ProbeSet([late, early], eigenbasis=basis)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probes.on_train_start(model, bundle, loss_fn=CE, optimizer=opt)
    x, y = bundle.train.tensors()
    for t in range(6):
        for g in opt.param_groups:
            g["lr"] = 0.1 / (t + 1)  # a schedule
        opt.zero_grad()
        loss = CE(model(x[8 * t : 8 * t + 8]), y[8 * t : 8 * t + 8])
        loss.backward()
        opt.step()
        epoch_end = t % 3 == 2
        probes.after_step(model, None, loss, opt, epoch_end=epoch_end and not split_epoch_end)
        if epoch_end and split_epoch_end:
            probes.on_epoch_end()
    return log, probes


def _expected_calls():
    calls = [("on_train_start", "early", 0, 0), ("on_train_start", "late", 0, 0)]
    for t in range(6):
        epoch = t // 3
        calls.append(("observe", "early", t, epoch))
        calls.append(("measure", "early", t, epoch))  # due at every step
        calls.append(("observe", "late", t, epoch))
        if t % 2 == 0:
            calls.append(("measure", "late", t, epoch))
        if t % 3 == 2:
            calls += [("on_epoch_end", "early", t, epoch), ("on_epoch_end", "late", t, epoch)]
    return calls


@pytest.mark.parametrize("split_epoch_end", [False, True])
def test_hook_order(split_epoch_end):
    """Like Lightning's test_hooks: the exact sequence of hook calls, per probe in ``order``,
    with after_step(epoch_end=True) or a separate on_epoch_end() alike."""
    log, probes = _hook_loop(split_epoch_end=split_epoch_end)
    assert log == _expected_calls()
    assert [p.order for p in probes.probes] == [-5, 5] and probes.keys == ["recorder", "recorder#2"]
    assert (probes.step, probes.epoch) == (6, 2)


def test_what_each_hook_sees():
    """θ₀ at on_train_start; at step t: θ_t, θ_{t+1}, g_t, η_t, the optimizer, the data, and the
    eigenbasis refreshed for t when due (before the probes run); at on_epoch_end the context of
    the epoch's last step, whether it comes from after_step(epoch_end=True) or on_epoch_end()."""
    seen: dict = {"theta": [], "grad": []}

    def expect(hook, ctx):
        model = ctx.model
        assert ctx.loss_fn is CE and ctx.data is not None and ctx.eigenbasis is not None
        assert torch.equal(ctx.theta0, seen["theta0"])
        if hook == "on_train_start":
            assert torch.equal(ctx.theta, seen["theta0"])
            assert ctx.theta_next is None and ctx.grad is None and ctx.step == 0
            return
        t = ctx.step  # at on_epoch_end: the context of the epoch's last step
        assert torch.equal(ctx.theta, seen["theta"][t])
        assert torch.equal(ctx.theta_next, flat_params(model))
        assert torch.equal(ctx.grad, seen["grad"][t])
        assert ctx.lr == 0.1 / (t + 1) and ctx.optimizer is not None
        if t % 2 == 0:
            assert ctx.eigenbasis.step == t
        else:
            assert ctx.eigenbasis.step == t - 1

    class Watch(torch.optim.SGD):
        """Records θ_t and g_t at each step (what the probes must be shown)."""

        def step(self, closure=None):
            params = self.param_groups[0]["params"]
            seen["theta"].append(torch.cat([p.detach().reshape(-1) for p in params]))
            seen["grad"].append(torch.cat([p.grad.reshape(-1) for p in params]))
            return super().step(closure)

    bundle = make_bundle()
    model = make_mlp()
    seen["theta0"] = flat_params(model)
    basis = ss.EigenBasis(k=2, every=2)
    log: list = []
    probes = ProbeSet([Recorder(log, "r", expect=expect)], eigenbasis=basis)
    opt = Watch(model.parameters(), lr=0.1)
    probes.on_train_start(model, bundle, loss_fn=CE, optimizer=opt)
    x, y = bundle.train.tensors()
    for t in range(4):
        opt.param_groups[0]["lr"] = 0.1 / (t + 1)
        opt.zero_grad()
        loss = CE(model(x[8 * t : 8 * t + 8]), y[8 * t : 8 * t + 8])
        loss.backward()
        opt.step()
        m = probes.after_step(model, None, loss, opt, epoch_end=t == 1)  # the loss, undetached
        assert m.scalars["batch_loss"] == float(loss.detach())
        assert ("eigenbasis_matvecs" in m.scalars) == (t % 2 == 0)
        if t == 3:
            probes.on_epoch_end()
    assert [h for h, *_ in log].count("on_epoch_end") == 2 and len(log) == 1 + 4 * 2 + 2


# ----------------------------------------------------------------------------- state
def test_state_is_keyed_by_probe_name():
    probes = ProbeSet([GradNormProbe(), DistanceProbe(), GradNormProbe(), GradNormProbe()])
    assert probes.keys == ["grad_norm", "distance", "grad_norm#2", "grad_norm#3"]
    state = probes.state_dict()
    assert list(state["probes"]) == probes.keys
    assert {"step", "epoch", "theta0", "eigenbasis"} <= set(state)
    # a different list of probes refuses the state by name (not by position)
    other = ProbeSet([GradNormProbe(), DistanceProbe()])
    other.load_state_dict(state)  # a subset is fine
    bigger = ProbeSet([GradNormProbe(), DistanceProbe(), WalkProbe()])
    with pytest.raises(InvalidArgumentError, match=r"no walk .*resume with the same probes"):
        bigger.load_state_dict(state)
    # probes run by ascending order, stable: sharpness first, walk last
    mixed = ProbeSet(
        [WalkProbe(), GradNormProbe(), SharpnessProbe(), DistanceProbe()],
        eigenbasis=ss.EigenBasis(k=2),
    )
    assert mixed.keys == ["sharpness", "grad_norm", "distance", "walk"]


def _resume_probes():
    return ProbeSet(
        [
            SharpnessProbe(When(every=2), trace_samples=4),
            AlignmentProbe(When(every=3), k=2),
            StepScaleProbe(When(every=2), alphas=[0.5, 1.0, 2.0], ks=[1, 2]),
            EigendirectionLossProbe(When(every=3), grid=[-1.0, 1.0], directions=2),
            WalkProbe(When(every=2), num_points=5),
            GradCosineProbe(),
            DistanceProbe(),
            LearningRateProbe(),
        ],
        # forward-over-reverse products: the default style picks batched or looped block products
        # by timing, which round differently (test_eigenbasis.py::test_block_products_...)
        eigenbasis=ss.EigenBasis(k=2, every=2, hvp="forward_over_reverse"),
    )


def _resume_loop(start=None, stop_after=None, seed=0):
    bundle = make_bundle()
    model = make_mlp(widths=(6,), seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    batches, spe = epoch_batches(bundle.train, 16, 3, seed=4)  # 3 epochs of 4 steps
    probes = _resume_probes()
    loop = run_loop(
        model,
        probes,
        bundle,
        batches,
        opt,
        steps_per_epoch=spe,
        start=start,
        stop_after=stop_after,
        keep_states=True,
    )
    return loop, probes


def _assert_same(a: Measurement, b: Measurement, step):
    assert a.scalars == b.scalars, step
    assert set(a.arrays) == set(b.arrays), step
    for name in a.arrays:
        np.testing.assert_array_equal(np.asarray(a.arrays[name]), np.asarray(b.arrays[name]))


@pytest.mark.parametrize("stop", [6, 8], ids=["mid-epoch", "epoch-boundary"])
def test_resume_mid_run_is_bit_identical(stop):
    full, _ = _resume_loop()
    part, _ = _resume_loop(stop_after=stop)
    ckpt = part.states[stop - 1]
    basis_state = ckpt["probes"]["eigenbasis"]
    assert basis_state["step"] == stop - 2 and basis_state["vectors"] is not None
    assert {"warm_sum_left", "warm_backoff", "bottom"} <= set(basis_state)
    resumed, probes = _resume_loop(start=ckpt, seed=9)  # fresh objects, other weights
    assert resumed.start == Measurement()  # on_train_start hooks do not run again
    assert sorted(resumed.measured) == list(range(stop, 12))
    for t in range(stop, 12):
        _assert_same(resumed.measured[t], full.measured[t], t)
    # the per-epoch aggregates of the epoch the resume fell in are complete
    assert "alpha_test_epoch_count" in resumed.measured[11].scalars
    assert (probes.step, probes.epoch) == (12, 3)
    assert probes.eigenbasis.num_refreshes == 6


# ----------------------------------------------------------------------------- the store
def test_store_writes_each_step_and_the_run_status(tmp_path):
    bundle = make_bundle()
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = bundle.train.tensors()
    with ProbeSet([GradNormProbe(), DistanceProbe(When(every=2))], store=tmp_path / "r") as probes:
        probes.on_train_start(model, bundle, loss_fn=CE)
        norms = []
        for t in range(5):
            opt.zero_grad()
            loss = CE(model(x[8 * t : 8 * t + 8]), y[8 * t : 8 * t + 8])
            loss.backward()
            opt.step()
            norms.append(float(flat_grads(model).double().norm()))
            probes.after_step(model, None, loss, opt)
    r = load_run(tmp_path / "r")
    assert r.status == "finished" and r.info["last_step"] == 4
    assert r.scalar("grad_norm").tolist() == norms
    assert r.scalar("distance").index.tolist() == [0, 2, 4]
    assert r.scalar("batch_loss").index.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError), ProbeSet([GradNormProbe()], store=tmp_path / "f") as p:
        p.on_train_start(model, bundle, loss_fn=CE)
        raise RuntimeError("the loop failed")
    assert load_run(tmp_path / "f").status == "failed"


# ----------------------------------------------------------------------------- misuse
def test_misuse_gives_clear_errors():
    model = make_mlp()
    with pytest.raises(InvalidArgumentError, match="expected Probe objects, received str"):
        ProbeSet(["sharpness"])
    with pytest.raises(InvalidArgumentError, match="run directory path or a MetricsStore"):
        ProbeSet([GradNormProbe()], store=42)
    probes = ProbeSet([GradNormProbe()])
    with pytest.raises(InvalidArgumentError, match=r"call probes\.on_train_start"):
        probes.after_step(model, None, 0.0)
    with pytest.raises(InvalidArgumentError, match=r"on_train_start\(\.\.\.\) first"):
        probes.on_epoch_end()
    with pytest.raises(InvalidArgumentError, match="expected the model"):
        probes.on_train_start(make_bundle())
    with pytest.raises(InvalidArgumentError, match="needs the loss"):
        probes.on_train_start(model, make_bundle())
    probes.on_train_start(model, make_bundle(), loss_fn=CE)
    with pytest.raises(InvalidArgumentError, match="different model"):
        probes.after_step(make_mlp(), None, 0.0)
    # a probe reading a field the context lacks says which and how to fill it
    ctx = ss.ProbeContext(model=model, loss_fn=CE, step=0, epoch=0)
    with pytest.raises(InvalidArgumentError, match=r"needs ProbeContext\.grad.*ProbeSet"):
        GradNormProbe().measure(ctx)


# ----------------------------------------------------------------------------- own loop = Trainer
def test_own_loop_writes_the_same_metrics_as_the_trainer(tmp_path):
    """Full-batch GD in float64 with an eigenbasis: the user's loop with ProbeSet (three lines)
    and the Trainer on the same config write the same probe metrics at the same steps."""
    cfg = tiny_config(
        model__dtype="float64", train__batch_size="full", train__steps=6, optim__lr=0.3
    )
    cfg["eigenbasis"] = {"k": 2, "every": 2, "hvp": "forward_over_reverse"}
    cfg["probes"] = [
        {"name": "sharpness"},  # due at the basis's steps
        {"name": "alignment", "every": 3, "options": {"k": 2}},
        {"name": "step_scale", "every": 2, "options": {"alphas": [0.5, 1, 2], "ks": [1, 2]}},
        {"name": "grad_norm"},
        {"name": "distance"},
    ]
    trainer_run = load_run(run(cfg, out=tmp_path / "trainer"))

    parts = build_parts(load_config(cfg))  # the same initial weights and data
    model, data = parts.model, parts.data
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    probes = ss.ProbeSet(
        [
            ss.SharpnessProbe(ss.When(every=2)),
            ss.AlignmentProbe(ss.When(every=3), k=2),
            ss.StepScaleProbe(ss.When(every=2), alphas=[0.5, 1, 2], ks=[1, 2]),
            GradNormProbe(),
            DistanceProbe(),
        ],
        eigenbasis=ss.EigenBasis(k=2, every=2, hvp="forward_over_reverse"),
        store=tmp_path / "mine",
    )
    probes.on_train_start(model, data, loss_fn=nn.functional.cross_entropy)
    x, y = data.train.tensors()
    for _ in range(6):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        probes.after_step(model, (x, y), loss, opt, epoch_end=True)  # one step per epoch
    probes.close()

    mine = load_run(tmp_path / "mine")
    names = sorted(mine.scalars["name"].unique())
    assert {"lambda_1", "alignment_1", "alpha_test_k2_a1", "alpha_test_epoch_count"} <= set(names)
    for name in names:
        a, b = mine.scalar(name), trainer_run.scalar(name)
        assert a.index.tolist() == b.index.tolist(), name
        assert a.tolist() == b.tolist(), name
    for name in mine.array_names():
        for u, v in zip(mine.array(name), trainer_run.array(name), strict=True):
            np.testing.assert_array_equal(u, v)


# ----------------------------------------------------------------------------- failures
class _Flaky(Probe):
    """Fails at the steps it is told to, else measures a constant."""

    name = "distance"  # borrows a schema writer with one plain scalar

    def __init__(self, fail_at: set[int]) -> None:
        super().__init__(When(1))
        self.fail_at = fail_at

    def measure(self, ctx: ProbeContext) -> Measurement:
        if ctx.step in self.fail_at:
            raise RuntimeError("linalg.eigh: The algorithm failed to converge\nmore detail")
        return Measurement({"distance": 1.0})


def _short_loop(probes: ProbeSet, steps: int = 4) -> list[Measurement]:
    bundle = make_bundle()
    model = make_mlp(widths=(4,))
    probes.on_train_start(model, bundle, loss_fn=CE)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = bundle.train.tensors()
    out = []
    for t in range(steps):
        opt.zero_grad()
        loss = CE(model(x[8 * t : 8 * t + 8]), y[8 * t : 8 * t + 8])
        loss.backward()
        opt.step()
        out.append(probes.after_step(model, None, loss, opt))
    return out


def test_a_failing_probe_records_nan_and_a_warning_and_training_goes_on(caplog):
    with caplog.at_level("WARNING", logger="sgdscope"):
        ms = _short_loop(ProbeSet([_Flaky({1, 2})]))
    assert ms[0].scalars["distance"] == 1.0
    assert math.isnan(ms[1].scalars["distance"]) and math.isnan(ms[2].scalars["distance"])
    assert ms[3].scalars["distance"] == 1.0 and not ms[3].warnings
    assert ms[1].warnings == {
        "distance": "RuntimeError: linalg.eigh: The algorithm failed to converge"
    }
    assert "step 1: distance failed" in caplog.text


def test_on_error_raise_stops_and_config_errors_always_raise():
    with pytest.raises(RuntimeError, match="failed to converge"):
        _short_loop(ProbeSet([_Flaky({1})], on_error="raise"))
    with pytest.raises(InvalidArgumentError, match="on_error"):
        ProbeSet([], on_error="ignore")


def test_a_non_finite_probe_set_fails_the_basis_readers_not_the_run():
    """NaN in the data the eigenbasis is computed on: the refresh fails, each probe reading the
    basis records a warning at that step, the others and the training go on."""
    bundle = make_bundle()
    bundle.probe.x[0, 0] = float("nan")
    model = make_mlp(widths=(4,))
    probes = ProbeSet(
        [SharpnessProbe(), AlignmentProbe(k=2), DistanceProbe()],
        eigenbasis=EigenBasis(k=2, every=2),
    )
    probes.on_train_start(model, bundle, loss_fn=CE)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = bundle.train.tensors()
    for t in range(3):
        opt.zero_grad()
        loss = CE(model(x[8 * t : 8 * t + 8]), y[8 * t : 8 * t + 8])
        loss.backward()
        opt.step()
        m = probes.after_step(model, None, loss, opt)
        assert math.isfinite(m.scalars["distance"]) and math.isfinite(m.scalars["batch_loss"])
        if t % 2 == 0:
            assert set(m.warnings) == {"eigenbasis", "sharpness", "alignment"}, m.warnings
            assert math.isnan(m.scalars["alignment_mean5"])
        else:
            assert not m.warnings
