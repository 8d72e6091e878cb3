"""WalkProbe: per-step curve and valley statistics, per-epoch aggregates, exact resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import sgdscope
from sgdscope._defaults import DEFAULT_BN_MODE
from sgdscope.errors import ConfigError
from sgdscope.landscape import interpolate, loss_at, valley_stats
from sgdscope.probes import ProbeSet, When, build_probe, flat_params, list_probes
from sgdscope.probes.walk import WalkProbe

from . import cases

CE = nn.functional.cross_entropy
BN = DEFAULT_BN_MODE


def make_bundle():
    return cases.make_bundle(num_samples=120, probe_size=24, num_classes=3, input_shape=(6,))


def make_model(batchnorm: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return sgdscope.build_model("mlp", (6,), 3, widths=[12], batchnorm=batchnorm)


WALK_KEYS = (
    "valley_floor",
    "alpha_star",
    "height",
    "barrier",
    "barrier_height",
    "barrier_height_rel",
    "minimum_inside",
    "walk_on_probe",
)


def train(
    probe: WalkProbe,
    *,
    epochs: int,
    lr: float = 0.5,
    batch_size: int = 20,
    stop_after: int | None = None,
    start: dict | None = None,
):
    """SGD in a user's loop with the probe run by a ProbeSet (cases.run_loop).

    Returns (per-step rows, per-epoch aggregates, resume state) — the resume state (model,
    optimizer, probes, position) when ``stop_after`` steps were done.
    """
    bundle = make_bundle()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    batches, steps_per_epoch = cases.epoch_batches(bundle.train, batch_size, epochs, seed=1)
    loop = cases.run_loop(
        model,
        ProbeSet([probe]),
        bundle,
        batches,
        opt,
        steps_per_epoch=steps_per_epoch,
        start=start,
        stop_after=stop_after,
        keep_states=stop_after is not None,
    )
    rows, epoch_rows = [], []
    for step, m in sorted(loop.measured.items()):
        epoch = step // steps_per_epoch
        if "height" in m.scalars:
            walk = {k: m.scalars[k] for k in WALK_KEYS}
            curve = m.arrays["interp_loss"]
            rows.append({"step": step, "epoch": epoch, **walk, "interp_loss": curve})
        agg = {k: v for k, v in m.scalars.items() if k.startswith("epoch_")}
        if agg:
            epoch_rows.append({"epoch": epoch, **agg})
    state = loop.states[stop_after - 1] if stop_after is not None else None
    return rows, epoch_rows, state


def test_registered_and_built_from_config_options():
    assert "walk" in list_probes()
    p = build_probe(
        "walk", When(every=2), num_points=5, split="probe", bn_mode="eval", barrier_threshold=0.01
    )
    assert isinstance(p, WalkProbe) and p.num_points == 5 and p.split == "probe"
    with pytest.raises(ConfigError, match="did you mean 'num_points'"):
        build_probe("walk", When(), num_point=5)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"num_points": 2}, "num_points"),
        ({"split": "val"}, "split"),
        ({"bn_mode": "running"}, "bn_mode"),
        ({"bn_mode": "ghost"}, "bn_mode"),
        ({"barrier_threshold": -1.0}, "barrier_threshold"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_raise_at_construction(options, field):
    with pytest.raises(ConfigError, match=field):
        WalkProbe(When(), **options)


def test_measure_matches_interpolate_and_leaves_theta_next_in_the_model():
    bundle = make_bundle()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    theta = flat_params(model)
    x, y = bundle.train.x[:20], bundle.train.y[:20]
    CE(model(x), y).backward()
    opt.step()
    theta_next = flat_params(model)
    buffers = [b.clone() for b in model.buffers()]
    ctx = cases.context(model, theta=theta, theta_next=theta_next, data=bundle, lr=0.3)
    m = WalkProbe(num_points=7).measure(ctx)
    assert torch.equal(flat_params(model), theta_next)
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers(), strict=True))
    # the probe measures in the library's BatchNorm default (landscape's own default differs)
    want = interpolate(model, CE, bundle.train, theta, theta_next, num_points=7, bn_mode=BN)
    np.testing.assert_array_equal(m.arrays["interp_loss"], want.losses)
    ends = loss_at(model, CE, bundle.train, torch.stack([theta, theta_next]), bn_mode=BN)
    assert m.arrays["interp_loss"][0] == ends[0].item()
    assert m.arrays["interp_loss"][-1] == ends[1].item()
    st = valley_stats(want)
    assert m.scalars == {
        "valley_floor": st.floor,
        "alpha_star": st.alpha_star,
        "height": st.height,
        "barrier": float(st.barrier),
        "barrier_height": st.barrier_height,
        "barrier_height_rel": st.barrier_height_rel,
        "minimum_inside": float(st.minimum_inside),
        "walk_on_probe": 0.0,
    }


def test_probe_split_is_used_and_recorded():
    bundle = make_bundle()
    model = make_model()
    theta = flat_params(model)
    theta_next = theta - 0.1 * torch.randn(theta.shape, generator=torch.Generator().manual_seed(3))
    ctx = cases.context(model, theta=theta, theta_next=theta_next, data=bundle)
    m = WalkProbe(split="probe", num_points=5).measure(ctx)
    assert m.scalars["walk_on_probe"] == 1.0
    want = interpolate(model, CE, bundle.probe, theta, theta_next, num_points=5, bn_mode=BN)
    np.testing.assert_array_equal(m.arrays["interp_loss"], want.losses)


def test_epoch_aggregates_equal_pandas_over_the_per_step_scalars():
    probe = WalkProbe(When(every=2), num_points=9, barrier_threshold=0.0)
    rows, epoch_rows, _ = train(probe, epochs=3, lr=1.5)
    df = pd.DataFrame(rows)
    assert len(df) == 9 and df["step"].tolist() == list(range(0, 18, 2))
    want = df.groupby("epoch").agg(
        epoch_height_mean=("height", "mean"),
        epoch_height_std=("height", lambda h: h.std(ddof=0)),
        epoch_barriers=("barrier", "sum"),
        epoch_min_inside_frac=("minimum_inside", "mean"),
        epoch_walk_steps=("height", "size"),
    )
    got = pd.DataFrame(epoch_rows).set_index("epoch")
    pd.testing.assert_frame_equal(got, want.astype(float), check_exact=False, rtol=1e-12)
    # the per-step values are consistent with their stored curves
    for _, r in df.iterrows():
        st = valley_stats((np.linspace(0, 1, 9), r["interp_loss"]))
        assert r["height"] == st.height and r["barrier"] == float(st.barrier)


def test_epochs_where_the_probe_is_not_due_give_no_aggregate():
    probe = WalkProbe(When(epochs=[1]), num_points=3)
    rows, epoch_rows, _ = train(probe, epochs=2)
    assert {r["epoch"] for r in rows} == {1}
    assert [r["epoch"] for r in epoch_rows] == [1]
    assert epoch_rows[0]["epoch_walk_steps"] == 6.0


def test_resume_mid_epoch_is_exact():
    rows_full, epochs_full, _ = train(WalkProbe(num_points=5), epochs=2)
    rows_a, epochs_a, state = train(WalkProbe(num_points=5), epochs=2, stop_after=9)
    rows_b, epochs_b, _ = train(WalkProbe(num_points=5), epochs=2, start=state)
    walk_state = state["probes"]["probes"]["walk"]  # keyed by probe name
    assert walk_state["epoch"] == 1 and len(walk_state["heights"]) == 3
    assert state["probes"]["step"] == 9 and state["probes"]["epoch"] == 1
    assert epochs_a + epochs_b == epochs_full
    assert [r["height"] for r in rows_a + rows_b] == [r["height"] for r in rows_full]


def test_measure_needs_the_vectors_and_the_data():
    model = make_model()
    theta = flat_params(model)
    ctx = cases.context(model, theta=theta, data=make_bundle())
    with pytest.raises(ValueError, match=r"needs ProbeContext\.theta_next"):
        WalkProbe().measure(ctx)
    ctx.theta_next, ctx.data = theta, None
    with pytest.raises(ValueError, match=r"needs ProbeContext\.data"):
        WalkProbe().measure(ctx)
