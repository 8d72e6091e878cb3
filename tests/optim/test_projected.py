"""ProjectedSGD: top-only updates lie in the subspace, remove-top updates are orthogonal to it."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sgdscope.errors import ConfigError
from sgdscope.optim import OptimContext, build_optimizer
from sgdscope.optim.nudged import EigenvectorsUnavailableError, ProjectedSGD
from sgdscope.probes import flat_params

ATOL = 1e-12


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    n = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(seed + 1)
    v = torch.linalg.qr(torch.randn(n, 3, generator=gen, dtype=torch.float64)).Q
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    return model, v, [(x[i : i + 8], y[i : i + 8]) for i in range(0, 40, 8)]


def _steps(model: nn.Module, opt: torch.optim.Optimizer, batches) -> list[torch.Tensor]:
    """Run the batches; return every update θ_{t+1} − θ_t (flat)."""
    deltas = []
    for batch in batches:
        before = flat_params(model)
        opt.zero_grad()
        nn.functional.cross_entropy(model(batch[0]), batch[1]).backward()
        opt.step()
        deltas.append(flat_params(model) - before)
    return deltas


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("k", [1, 3])
def test_top_only_updates_lie_in_the_subspace(momentum, k):
    model, v, batches = _setup()
    opt = ProjectedSGD(model.parameters(), lr=0.2, mode="top_only", k=k, momentum=momentum)
    opt.set_eigenvectors(v)
    vk = v[:, :k]
    for delta in _steps(model, opt, batches):
        assert delta.norm() > 1e-6, "a zero update would pass trivially"
        outside = delta - vk @ (vk.T @ delta)
        torch.testing.assert_close(outside, torch.zeros_like(delta), rtol=0, atol=ATOL)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("k", [1, 3])
def test_remove_top_updates_are_orthogonal_to_the_subspace(momentum, k):
    model, v, batches = _setup()
    opt = ProjectedSGD(model.parameters(), lr=0.2, mode="remove_top", k=k, momentum=momentum)
    opt.set_eigenvectors(v)
    for delta in _steps(model, opt, batches):
        assert delta.norm() > 1e-6
        torch.testing.assert_close(
            v[:, :k].T @ delta, torch.zeros(k, dtype=torch.float64), rtol=0, atol=ATOL
        )


def test_top_only_plus_remove_top_is_the_sgd_step():
    model, v, batches = _setup()
    deltas = {}
    for mode in ("top_only", "remove_top", "sgd"):
        m = copy.deepcopy(model)
        if mode == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(m.parameters(), lr=0.2)
        else:
            opt = ProjectedSGD(m.parameters(), lr=0.2, mode=mode, k=2)
            opt.set_eigenvectors(v)
        deltas[mode] = _steps(m, opt, batches[:1])[0]
    torch.testing.assert_close(
        deltas["top_only"] + deltas["remove_top"], deltas["sgd"], rtol=0, atol=ATOL
    )


def test_projected_needs_eigenvectors_and_validates_mode():
    model, _, batches = _setup()
    with pytest.raises(ConfigError, match="mode must be one of"):
        ProjectedSGD(model.parameters(), lr=0.1, mode="top")
    opt = ProjectedSGD(model.parameters(), lr=0.1, mode="remove_top")
    with pytest.raises(EigenvectorsUnavailableError):
        _steps(model, opt, batches[:1])


def test_built_from_config():
    model, _, _ = _setup()
    opt = build_optimizer(
        "projected_sgd",
        list(model.parameters()),
        OptimContext(lr=0.1),
        mode="remove_top",
        k=2,
        burn_in=5,
    )
    assert isinstance(opt, ProjectedSGD)
    assert (opt.mode, opt.k, opt.burn_in) == ("remove_top", 2, 5)
    with pytest.raises(ConfigError, match="did you mean 'mode'"):
        build_optimizer(
            "projected_sgd", list(model.parameters()), OptimContext(lr=0.1), mod="top_only"
        )
