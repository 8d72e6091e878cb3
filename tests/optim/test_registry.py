"""Every registered optimizer, at the setting where it must be plain SGD, steps bit for bit as
``torch.optim.SGD`` (momentum, weight decay, Nesterov where it takes them); the factories' options
and flags."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from sgdscope.eigenbasis import EigenBasis, RandomBasis
from sgdscope.errors import ConfigError
from sgdscope.optim import (
    SGD,
    IsotropicNoiseGD,
    NudgedSGD,
    OptimContext,
    ProjectedSGD,
    build_optimizer,
    list_optimizers,
)
from sgdscope.optim._registry import OPTIMIZERS

from ..probes.cases import CE, attached_basis, make_bundle, make_mlp

#: Each registered optimizer with the option sets that make it plain SGD, and whether it takes
#: momentum (and so Nesterov). A newly registered optimizer fails the tests below until it is
#: listed here.
IDENTITY: dict[str, tuple[list[dict[str, Any]], bool]] = {
    "sgd": ([{}], True),
    "nsgd": (
        [{"gamma": 1.0, "k": 3}, {"gamma": 0.3, "k": 0}, {"gamma": 1.0, "subspace": "random"}],
        True,
    ),
    "projected_sgd": ([{"mode": "remove_top", "k": 0}], True),
    "noisy_gd": ([{"sigma": 0.0}, {"c": 0.0}], False),
}

#: Registered optimizers that are not SGD at any setting: the torch optimizer each must equal
#: bit for bit when built from the registry (through the same OptimContext as the Trainer).
TORCH_TWINS: dict[str, Any] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

#: (momentum, weight_decay, nesterov)
SETTINGS = [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 5e-3, False), (0.5, 5e-3, True)]


def test_every_registered_optimizer_has_a_reference():
    missing = sorted(set(list_optimizers()) - set(IDENTITY) - set(TORCH_TWINS))
    assert not missing, (
        f"list {missing} in IDENTITY with the options that make it plain SGD, or in TORCH_TWINS "
        "with the torch optimizer it equals"
    )
    assert sorted({*IDENTITY, *TORCH_TWINS}) == sorted(list_optimizers())


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
@pytest.mark.parametrize("name", sorted(TORCH_TWINS))
def test_registry_built_twin_steps_as_its_torch_optimizer(name, weight_decay):
    bundle = make_bundle()
    ref = make_mlp(widths=(5,))
    mine = copy.deepcopy(ref)
    ctx = _context(mine, bundle, None, 0.0, weight_decay, False)
    opt = build_optimizer(name, list(mine.parameters()), ctx, betas=[0.8, 0.99], eps=1e-7)
    twin = TORCH_TWINS[name](
        ref.parameters(), lr=0.1, betas=(0.8, 0.99), eps=1e-7, weight_decay=weight_decay
    )
    x, y = bundle.train.tensors()
    for t in range(10):
        batch = (x[(16 * t) % 64 :][:16], y[(16 * t) % 64 :][:16])
        for model, o in ((ref, twin), (mine, opt)):
            o.zero_grad()
            CE(model(batch[0]), batch[1]).backward()
            o.step()
        for p, q in zip(ref.parameters(), mine.parameters(), strict=True):
            assert torch.equal(p, q), f"{name} drifted from torch at step {t}"


def _context(model, bundle, basis, momentum, weight_decay, nesterov) -> OptimContext:
    return OptimContext(
        lr=0.1,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        seed=3,
        model=model,
        loss_fn=CE,
        data=bundle,
        eigenbasis=basis,
        steps_per_epoch=4,
    )


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "m{}-wd{}-nest{}".format(*s))
@pytest.mark.parametrize("name", sorted(IDENTITY))
def test_identity_setting_steps_as_torch_sgd_bit_for_bit(name, settings):
    momentum, weight_decay, nesterov = settings
    option_sets, takes_momentum = IDENTITY[name]
    for options in option_sets:
        _side_by_side(name, options, takes_momentum, momentum, weight_decay, nesterov)


def _side_by_side(name, options, takes_momentum, momentum, weight_decay, nesterov):
    bundle = make_bundle()
    ref = make_mlp(widths=(5,))
    mine = copy.deepcopy(ref)
    # the run's eigenbasis is there (and due every 2 steps): the identity must not use it
    basis = attached_basis(mine, bundle, k=3, every=2)
    ctx = _context(mine, bundle, basis, momentum, weight_decay, nesterov)
    params = list(mine.parameters())
    if momentum and not takes_momentum:
        with pytest.raises(ConfigError, match="momentum"):
            build_optimizer(name, params, ctx, **options)
        return
    opt = build_optimizer(name, params, ctx, **options)
    sgd = torch.optim.SGD(
        ref.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
    )
    x, y = bundle.train.tensors()
    for t in range(12):
        lr = 0.1 * 0.9**t  # a schedule writes the groups' lr, as the Trainer does
        for o in (opt, sgd):
            for g in o.param_groups:
                g["lr"] = lr
        batch = (x[(16 * t) % 64 :][:16], y[(16 * t) % 64 :][:16])
        for model, o in ((ref, sgd), (mine, opt)):
            o.zero_grad()
            CE(model(batch[0]), batch[1]).backward()
            o.step()
        for p, q in zip(ref.parameters(), mine.parameters(), strict=True):
            assert torch.equal(p, q), f"{name} {options} drifted from torch SGD at step {t}"
            if momentum:
                want = sgd.state[p]["momentum_buffer"]
                assert torch.equal(opt.state[q]["momentum_buffer"], want)
    assert basis.num_refreshes == 0, "an identity optimizer must not compute eigenvectors"


def test_per_group_hyper_parameters_as_torch_sgd():
    """Groups with their own lr, momentum, weight decay and Nesterov flag, in any order."""
    ref = make_mlp(widths=(5,))
    mine = copy.deepcopy(ref)

    def groups(model):
        p = list(model.parameters())
        return [
            {"params": [p[3], p[0]], "lr": 0.05, "momentum": 0.5, "nesterov": True},
            {"params": [p[1]], "weight_decay": 1e-2},
            {"params": [p[2]], "lr": 0.2, "momentum": 0.0},
        ]

    sgd = torch.optim.SGD(groups(ref), lr=0.1, momentum=0.9)
    nsgd = NudgedSGD(groups(mine), lr=0.1, gamma=1.0, momentum=0.9)
    bundle = make_bundle()
    x, y = bundle.train.tensors()
    for t in range(8):
        batch = (x[8 * t : 8 * t + 8], y[8 * t : 8 * t + 8])
        for model, o in ((ref, sgd), (mine, nsgd)):
            o.zero_grad()
            CE(model(batch[0]), batch[1]).backward()
            o.step()
    for p, q in zip(ref.parameters(), mine.parameters(), strict=True):
        assert torch.equal(p, q)


def test_flags():
    assert OPTIMIZERS.flags("sgd") == {}
    assert OPTIMIZERS.flags("nsgd") == {"needs_hvp": True, "uses_eigenbasis": True}
    assert OPTIMIZERS.flags("projected_sgd") == {"needs_hvp": True, "uses_eigenbasis": True}
    assert OPTIMIZERS.flags("noisy_gd") == {"full_batch": True}


def test_factories_build_the_chains_with_the_runs_settings():
    bundle = make_bundle()
    model = make_mlp(widths=(5,))
    basis = attached_basis(model, bundle, k=4, every=7)
    ctx = _context(model, bundle, basis, 0.9, 1e-3, True)
    params = list(model.parameters())
    sgd = build_optimizer("sgd", params, ctx)
    assert isinstance(sgd, SGD)
    assert {k: sgd.param_groups[0][k] for k in ("lr", "momentum", "weight_decay", "nesterov")} == {
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-3,
        "nesterov": True,
    }
    nsgd = build_optimizer("nsgd", params, ctx, gamma=0.1, k=2, burn_in=5, nudge="update")
    assert isinstance(nsgd, NudgedSGD) and nsgd.basis is basis
    assert (nsgd.gamma, nsgd.k, nsgd.burn_in, nsgd.nudge) == (0.1, 2, 5, "update")
    proj = build_optimizer("projected_sgd", params, ctx, mode="top_only", k=3)
    assert isinstance(proj, ProjectedSGD) and (proj.mode, proj.k, proj.basis) == (
        "top_only",
        3,
        basis,
    )
    # the random-subspace control: a RandomBasis on the run's schedule, seeded by the run
    rnd = build_optimizer("nsgd", params, ctx, gamma=0.1, k=2, subspace="random")
    assert isinstance(rnd.basis, RandomBasis)
    assert (rnd.basis.k, rnd.basis.every, rnd.basis.seed) == (2, 7, 3)
    assert rnd.basis.model is model
    # noisy GD: σ from the options, the seed offset from the run's
    ctx0 = _context(model, bundle, None, 0.0, 0.0, False)
    noisy = build_optimizer("noisy_gd", params, ctx0, sigma=0.25)
    assert isinstance(noisy, IsotropicNoiseGD) and noisy.param_groups[0]["sigma"] == 0.25


@pytest.mark.parametrize(
    "name, options, basis, match",
    [
        ("nsgd", {}, True, "gamma is required"),
        ("nsgd", {"gama": 0.1}, True, "did you mean 'gamma'"),
        ("nsgd", {"gamma": 0.1, "eigen_source": "own"}, True, "unknown option"),
        ("nsgd", {"gamma": 0.1, "refresh_every": 3}, True, "unknown option"),
        ("nsgd", {"gamma": 0.1}, False, "add an `eigenbasis:` section"),
        ("nsgd", {"gamma": 0.1, "k": 9}, True, "k must be <= eigenbasis.k"),
        ("nsgd", {"gamma": 0.1, "subspace": "bottom"}, True, "subspace"),
        ("projected_sgd", {"mod": "top_only"}, True, "did you mean 'mode'"),
        ("projected_sgd", {"mode": "top"}, True, "mode must be one of"),
        ("projected_sgd", {}, False, "add an `eigenbasis:` section"),
    ],
)
def test_factory_errors(name, options, basis, match):
    bundle = make_bundle()
    model = make_mlp(widths=(5,))
    eb = attached_basis(model, bundle, k=4) if basis else None
    ctx = _context(model, bundle, eb, 0.0, 0.0, False)
    with pytest.raises(ConfigError, match=match):
        build_optimizer(name, list(model.parameters()), ctx, **options)


def test_a_basis_on_the_mini_batch_cannot_drive_an_optimizer():
    model = make_mlp(widths=(5,))
    batch_basis = EigenBasis(k=4, data="batch").attach(model, CE, make_bundle())
    ctx = _context(model, None, batch_basis, 0.0, 0.0, False)
    with pytest.raises(ConfigError, match=r"eigenbasis\.data to 'probe' or 'train'"):
        build_optimizer("nsgd", list(model.parameters()), ctx, gamma=0.1)
    # the identity and the random control do not read it
    build_optimizer("nsgd", list(model.parameters()), ctx, gamma=1.0)
    build_optimizer("nsgd", list(model.parameters()), ctx, gamma=0.1, subspace="random")
