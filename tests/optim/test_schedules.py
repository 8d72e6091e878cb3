"""Learning-rate schedules: formulas at key steps, CLR period and bounds, trapezoid phases,
errors with suggestions, and the torch scheduler wrapper across a resume."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from sgdscope.errors import ConfigError
from sgdscope.optim.schedules import (
    ScheduleLR,
    constant,
    cyclical,
    list_schedules,
    make_schedule,
    step_decay,
    trapezoid,
)

SPE = 10  # steps per epoch


def make(name, lr=0.1, total_steps=1000, **options):
    return make_schedule(name, lr=lr, steps_per_epoch=SPE, total_steps=total_steps, **options)


def test_constant():
    fn = make("constant", lr=0.05)
    assert [fn(s) for s in (0, 1, 999, 10**6)] == [0.05] * 4
    assert constant(3, lr=0.2) == 0.2


def test_step_decay_multiplies_at_the_given_epochs():
    fn = make("step_decay", lr=0.1, epochs=[3, 5], factor=0.5)
    assert fn(0) == fn(29) == 0.1
    assert fn(30) == fn(49) == pytest.approx(0.05, abs=1e-15)
    assert fn(50) == fn(10**5) == pytest.approx(0.025, abs=1e-15)
    assert make("step_decay", epochs=[2])(20) == pytest.approx(0.01)  # default factor 0.1
    assert step_decay(7, lr=1.0, milestones=(7,), factor=0.3) == 0.3


def test_cyclical_triangle_values_period_and_bounds():
    base, top, h = 0.01, 0.11, 20  # half cycle: 2 epochs = 20 steps
    fn = make("cyclical", lr=base, max_lr=top, half_cycle_epochs=2)
    assert fn(0) == pytest.approx(base) and fn(h) == pytest.approx(top)
    assert fn(2 * h) == pytest.approx(base) and fn(3 * h) == pytest.approx(top)
    assert fn(5) == pytest.approx(base + (top - base) * 5 / h)
    assert fn(h + 5) == pytest.approx(top - (top - base) * 5 / h)
    values = [fn(s) for s in range(10 * h)]
    assert min(values) == pytest.approx(base) and max(values) == pytest.approx(top)
    assert all(base - 1e-15 <= v <= top + 1e-15 for v in values)
    for s in range(4 * h):  # period 2h
        assert fn(s) == pytest.approx(fn(s + 2 * h), abs=1e-15)
    # rising on the first half of each cycle, falling on the second
    assert all(fn(s + 1) > fn(s) for s in range(h))
    assert all(fn(s + 1) < fn(s) for s in range(h, 2 * h))
    by_steps = make("cyclical", lr=base, max_lr=top, half_cycle_steps=h)
    assert [by_steps(s) for s in range(100)] == [fn(s) for s in range(100)]
    assert cyclical(3, lr=0.0, max_lr=1.0, half_cycle=4) == 0.75


def test_trapezoid_phases():
    lr, top, floor = 0.01, 0.1, 0.001
    fn = make(
        "trapezoid",
        lr=lr,
        max_lr=top,
        warmup_epochs=2,
        flat_epochs=3,
        anneal_epochs=4,
        floor_lr=floor,
    )
    w, f, a = 20, 30, 40
    assert fn(0) == pytest.approx(lr)
    assert fn(w // 2) == pytest.approx((lr + top) / 2)
    assert fn(w) == pytest.approx(top) and fn(w + f - 1) == pytest.approx(top)
    assert fn(w + f) == pytest.approx(top)
    assert fn(w + f + a // 2) == pytest.approx((top + floor) / 2)
    assert fn(w + f + a) == pytest.approx(floor) and fn(10**6) == pytest.approx(floor)
    values = [fn(s) for s in range(w + f + a + 5)]
    assert all(values[s + 1] > values[s] for s in range(w))
    assert all(values[s + 1] < values[s] for s in range(w + f, w + f + a))
    # defaults: anneal until the end of training, to the base lr
    fn = make("trapezoid", lr=lr, total_steps=100, max_lr=top, warmup_epochs=1, flat_epochs=1)
    assert fn(20) == pytest.approx(top) and fn(60) == pytest.approx((top + lr) / 2)
    assert fn(100) == pytest.approx(lr)
    assert trapezoid(5, lr=0.0, max_lr=1.0, warmup=0, flat=5, anneal=10, floor_lr=0.0) == 1.0


def test_fractional_epochs_round_to_steps():
    fn = make("step_decay", lr=1.0, epochs=[0.55])  # 5.5 steps → 6 (round half to even)
    assert fn(5) == 1.0 and fn(6) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("cyclic", {}, "did you mean 'cyclical'"),
        ("warp", {}, "available: constant, cyclical, step_decay, trapezoid"),
        ("step_decay", {"epoch": [3]}, "did you mean 'epochs'"),
        ("step_decay", {"epochs": [5, 3]}, "increasing"),
        ("step_decay", {"epochs": "3"}, "list of epoch counts"),
        ("step_decay", {"epochs": [3], "factor": 0.0}, "factor"),
        ("cyclical", {"max_lr": 0.1}, "exactly one of"),
        (
            "cyclical",
            {"max_lr": 0.1, "half_cycle_epochs": 1, "half_cycle_steps": 5},
            "exactly one of",
        ),
        ("cyclical", {"half_cycle_steps": 5}, "max_lr"),
        ("cyclical", {"max_lr": 0.1, "half_cycle_steps": 0}, "half_cycle_steps"),
        ("cyclical", {"max_lr": 0.1, "half_cycle_epochs": 0.01}, "less than one step"),
        ("trapezoid", {"warmup_epochs": 1}, "max_lr"),
        ("trapezoid", {"max_lr": 0.1, "warmup_epochs": 60, "flat_epochs": 50}, "anneal"),
        ("trapezoid", {"max_lr": 0.1, "warmup_epochs": -1, "anneal_epochs": 1}, "warmup_epochs"),
        ("trapezoid", {"max_lr": float("nan"), "anneal_epochs": 1}, "max_lr"),
        ("constant", {"max_lr": 1.0}, "unknown option"),
    ],
)
def test_errors_name_the_field_and_the_fix(name, options, match):
    with pytest.raises(ConfigError, match=match):
        make(name, **options)


def test_bad_common_arguments():
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        make_schedule("constant", lr=0.1, steps_per_epoch=0, total_steps=10)
    with pytest.raises(ConfigError, match="total_steps"):
        make_schedule("constant", lr=0.1, steps_per_epoch=1, total_steps=-1)
    with pytest.raises(ConfigError, match="lr"):
        make_schedule("constant", lr=-0.1, steps_per_epoch=1, total_steps=1)
    assert list_schedules() == ["constant", "cyclical", "step_decay", "trapezoid"]


def run_loop(state=None, steps=12):
    """A user's loop with ScheduleLR; ``state`` resumes (model, optimizer, scheduler, step)."""
    fn = make("cyclical", lr=0.01, max_lr=0.05, half_cycle_steps=4)
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = ScheduleLR(opt, fn)  # before opt.load_state_dict, as torch's docs ask
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        start = state["step"]
    used = []
    for _ in range(start, steps):
        used.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        sched.step()
    saved = {
        "model": model.state_dict(),
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "step": steps,
    }
    return used, sched, fn, saved


def test_schedule_lr_sets_fn_of_step_and_survives_resume():
    used, sched, fn, _ = run_loop()
    assert used == [fn(s) for s in range(12)]
    assert sched.get_last_lr() == [fn(12)]
    # stop after 5 steps, checkpoint with torch.save (weights_only load), resume
    _, _, _, saved = run_loop(steps=5)
    buf = io.BytesIO()
    torch.save(saved, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert "fn" not in state["sched"] and state["sched"]["last_epoch"] == 5
    resumed, sched2, _, _ = run_loop(state=state)
    assert resumed == [fn(s) for s in range(5, 12)]
    assert sched2.get_last_lr() == [fn(12)]


def test_schedule_lr_needs_a_callable():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="fn"):
        ScheduleLR(opt, 0.1)
