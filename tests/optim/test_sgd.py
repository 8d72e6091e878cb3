"""The SGD chain: its arguments are checked like torch's, and it checkpoints like torch's."""

from __future__ import annotations

import copy

import pytest
import torch

from sgdscope.errors import ConfigError
from sgdscope.optim import SGD

from ..probes.cases import CE, checkpoint, make_bundle, make_mlp


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(momentum=1.0), "momentum must be in"),
        (dict(momentum=-0.1), "momentum must be in"),
        (dict(weight_decay=-1e-3), "weight_decay"),
        (dict(nesterov=True), "nesterov=True needs momentum"),
        (dict(lr=-0.1), "lr"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SGD(make_mlp().parameters(), **{"lr": 0.1, **kwargs})


def test_resume_from_a_checkpoint_is_bit_identical():
    ref = make_mlp(widths=(5,))
    mine = copy.deepcopy(ref)
    x, y = make_bundle().train.tensors()

    def step(model, opt, t):
        opt.zero_grad()
        CE(model(x[8 * t : 8 * t + 8]), y[8 * t : 8 * t + 8]).backward()
        opt.step()

    def make(model):
        return SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)

    theirs = torch.optim.SGD(
        ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True
    )
    ours = make(mine)
    for t in range(3):
        step(mine, ours, t)
        step(ref, theirs, t)
    state = checkpoint(ours.state_dict())
    first = next(ref.parameters())
    assert torch.equal(state["state"][0]["momentum_buffer"], theirs.state[first]["momentum_buffer"])
    resumed = make(mine)
    resumed.load_state_dict(state)
    assert resumed.step_count == 3
    for t in range(3, 6):
        step(mine, resumed, t)
        step(ref, theirs, t)
    assert all(torch.equal(p, q) for p, q in zip(ref.parameters(), mine.parameters(), strict=True))
