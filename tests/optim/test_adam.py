"""Adam and AdamW as transform chains equal torch.optim.Adam / AdamW step for step, bit for bit
(torch's default single-tensor path on the CPU), with state that checkpoints and resumes."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgdscope.errors import ConfigError
from sgdscope.optim import OPTIMIZERS, Adam, AdamW, OptimContext, build_optimizer

CASES = [
    (Adam, torch.optim.Adam, {}),
    (Adam, torch.optim.Adam, {"weight_decay": 0.1}),
    (Adam, torch.optim.Adam, {"amsgrad": True, "betas": (0.8, 0.99), "eps": 1e-6}),
    (AdamW, torch.optim.AdamW, {}),
    (AdamW, torch.optim.AdamW, {"weight_decay": 0.3, "amsgrad": True}),
]


def _model(dtype: torch.dtype, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def _data(dtype: torch.dtype, n: int = 20, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


def _step(model: nn.Module, opt: torch.optim.Optimizer, x, y) -> None:
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _groups(model: nn.Module) -> list[dict]:
    """Two param groups with their own learning rates (the schedule path of torch)."""
    first, second = model[0], model[2]
    return [{"params": first.parameters()}, {"params": second.parameters(), "lr": 0.003}]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("ours", "theirs", "kw"), CASES)
def test_equal_to_torch_bit_for_bit(ours, theirs, kw, dtype) -> None:
    m1 = _model(dtype)
    m2 = copy.deepcopy(m1)
    o1 = ours(_groups(m1), lr=0.01, **kw)
    o2 = theirs(_groups(m2), lr=0.01, foreach=False, **kw)
    x, y = _data(dtype)
    for t in range(30):
        if t == 10:  # a schedule changes lr mid-run
            for g1, g2 in zip(o1.param_groups, o2.param_groups, strict=True):
                g1["lr"] = g2["lr"] = g1["lr"] * 0.5
        _step(m1, o1, x, y)
        _step(m2, o2, x, y)
        for a, b in zip(m1.parameters(), m2.parameters(), strict=True):
            assert torch.equal(a, b), (ours.__name__, kw, dtype, t)
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        s1, s2 = o1.state[p1], o2.state[p2]
        assert set(s2) <= set(s1)
        for key in s2:
            assert torch.equal(s1[key], s2[key]), key


def test_parameters_without_gradient_are_skipped_as_torch_does() -> None:
    m1 = _model(torch.float64)
    m2 = copy.deepcopy(m1)
    m1[0].weight.requires_grad_(False)
    m2[0].weight.requires_grad_(False)
    o1 = Adam(m1.parameters(), lr=0.02)
    o2 = torch.optim.Adam(m2.parameters(), lr=0.02, foreach=False)
    x, y = _data(torch.float64)
    for _ in range(5):
        _step(m1, o1, x, y)
        _step(m2, o2, x, y)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters(), strict=True))
    assert m1[0].weight not in o1.state


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_resume_from_a_checkpoint_is_exact(cls) -> None:
    x, y = _data(torch.float32)
    ref = _model(torch.float32)
    ref_opt = cls(ref.parameters(), lr=0.01, weight_decay=0.05)
    model = copy.deepcopy(ref)
    opt = cls(model.parameters(), lr=0.01, weight_decay=0.05)
    for _ in range(7):
        _step(ref, ref_opt, x, y)
        _step(model, opt, x, y)
    saved_model, saved_opt = _roundtrip(model.state_dict()), _roundtrip(opt.state_dict())
    resumed = _model(torch.float32, seed=99)
    resumed.load_state_dict(saved_model)
    resumed_opt = cls(resumed.parameters(), lr=0.01, weight_decay=0.05)
    resumed_opt.load_state_dict(saved_opt)
    for _ in range(5):
        _step(ref, ref_opt, x, y)
        _step(resumed, resumed_opt, x, y)
    assert _same(ref, resumed)
    assert resumed_opt.step_count == 12


def test_continues_from_a_torch_adam_checkpoint() -> None:
    """The state keys are torch's: a torch.optim.Adam checkpoint continues in ours exactly."""
    x, y = _data(torch.float64)
    m_torch = _model(torch.float64)
    o_torch = torch.optim.Adam(m_torch.parameters(), lr=0.01, foreach=False)
    for _ in range(4):
        _step(m_torch, o_torch, x, y)
    m_ours = copy.deepcopy(m_torch)
    o_ours = Adam(m_ours.parameters(), lr=0.01)
    o_ours.load_state_dict(copy.deepcopy(o_torch.state_dict()))
    for _ in range(4):
        _step(m_torch, o_torch, x, y)
        _step(m_ours, o_ours, x, y)
    assert _same(m_torch, m_ours)


def test_registry_builds_adam_and_adamw_from_the_optim_section() -> None:
    model = _model(torch.float32)
    params = list(model.parameters())
    ctx = OptimContext(lr=0.003, weight_decay=0.01)
    adam = build_optimizer("adam", params, ctx, betas=[0.8, 0.95], eps=1e-7)
    assert isinstance(adam, Adam) and not isinstance(adam, AdamW)
    g = adam.param_groups[0]
    assert (g["lr"], g["betas"], g["eps"], g["weight_decay"]) == (0.003, (0.8, 0.95), 1e-7, 0.01)
    adamw = build_optimizer("adamw", params, ctx)
    assert isinstance(adamw, AdamW) and adamw.param_groups[0]["weight_decay"] == 0.01
    assert OPTIMIZERS.flags("adam") == {"preconditioned": True}
    with pytest.raises(ConfigError, match="momentum"):
        build_optimizer("adam", params, OptimContext(lr=0.1, momentum=0.9))
    with pytest.raises(ConfigError, match="did you mean 'betas'"):
        build_optimizer("adam", params, ctx, beta=[0.9, 0.99])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"betas": (0.9, 1.0)}, "betas must each be in"),
        ({"betas": (0.9,)}, "betas must be two numbers"),
        ({"eps": -1.0}, "eps must be"),
        ({"weight_decay": -0.1}, "weight_decay must be"),
        ({"lr": float("nan")}, "lr must be"),
    ],
)
def test_invalid_hyper_parameters_are_refused(kw, match) -> None:
    with pytest.raises(ConfigError, match=match):
        Adam(_model(torch.float32).parameters(), **{"lr": 0.01, **kw})
