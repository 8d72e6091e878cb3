"""EigenBasis, RandomBasis and ParameterLayout: options, schedule, refresh against dense float64
Hessians, user-given directions, warm starts, state; the random control."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import sgdscope as ss
import sgdscope.curvature
import sgdscope.curvature._hvp
from sgdscope.curvature import HessianOperator
from sgdscope.eigenbasis import EigenBasis, ParameterLayout, RandomBasis
from sgdscope.errors import (
    BasisMismatchError,
    ConfigError,
    EigenvectorsUnavailableError,
    InvalidArgumentError,
)
from sgdscope.probes import flat_params

from .probes.cases import (
    CE,
    Quadratic,
    attached_basis,
    checkpoint,
    dense_hessian,
    make_bundle,
    make_mlp,
    mean_loss,
    n_params,
    orthonormal,
    subspace_distance,
    top_eigh,
)


@pytest.fixture
def lanczos_calls(monkeypatch):
    """The number of Lanczos runs so far (one per refresh)."""
    calls = []
    original = sgdscope.curvature.lanczos

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(sgdscope.curvature, "lanczos", spy)
    return calls


# ----------------------------------------------------------------------------- options
def test_options_are_the_config_sections_with_did_you_mean():
    with pytest.raises(ConfigError, match=r"'eigenbasis\.kk'; did you mean 'eigenbasis\.k'"):
        EigenBasis(kk=5)
    with pytest.raises(ConfigError, match=r"did you mean 'eigenbasis\.warm_start'"):
        EigenBasis(warmstart=False)
    for bad, field in (
        ({"k": 0}, "k"),
        ({"tol": 2.0}, "tol"),
        ({"data": "val"}, "data"),
        ({"bn_mode": "batch"}, "bn_mode"),
        ({"every": 0}, "every"),
        ({"every": "weekly"}, "every"),
        ({"every": None}, "every"),
        ({"hvp": "fast"}, "hvp"),
    ):
        with pytest.raises(ConfigError, match=rf"eigenbasis\.{field}"):
            EigenBasis(**bad)
    with pytest.raises(InvalidArgumentError, match="ghost_batch_size"):
        EigenBasis(bn_mode="ghost")
    # one declaration: the signature is generated from the config section
    sig = inspect.signature(EigenBasis)
    assert list(sig.parameters) == [*ss.config.EigenBasisConfig.model_fields, "steps_per_epoch"]
    assert sig.parameters["k"].default == 5 and sig.parameters["every"].default == 100
    basis = EigenBasis(k=3, every=7, data="train", bn_mode="train", tol=1e-6)
    assert (basis.k, basis.every, basis.data_source, basis.bn_mode) == (3, 7, "train", "train")
    assert EigenBasis().bn_mode == ss._defaults.DEFAULT_BN_MODE == "eval"


def test_every_schedule():
    basis = EigenBasis(every=4)
    assert [t for t in range(13) if basis.due(t)] == [0, 4, 8, 12]
    epoch = EigenBasis(every="epoch")
    assert epoch.every is None
    with pytest.raises(InvalidArgumentError, match="steps_per_epoch"):
        epoch.due(0)
    epoch.set_steps_per_epoch(5)
    assert epoch.every == 5 and [t for t in range(11) if epoch.due(t)] == [0, 5, 10]
    assert EigenBasis(every="epoch", steps_per_epoch=3).every == 3
    basis.set_steps_per_epoch(9)  # a step count stays as given
    assert basis.every == 4
    with pytest.raises(InvalidArgumentError, match="steps_per_epoch must be >= 1"):
        EigenBasis(every="epoch", steps_per_epoch=0)


def test_update_refreshes_when_due_and_ensure_when_stale(lanczos_calls):
    bundle = make_bundle()
    basis = attached_basis(make_mlp(), bundle, k=2, every=3)
    assert basis.update(1) is None and basis.vectors is None  # not due
    assert basis.update(0) is not None and basis.step == 0
    assert basis.update(0) is None  # done for this step
    assert basis.ensure(0) is None  # already current
    assert basis.update(2) is None and basis.step == 0
    assert basis.ensure(2) is not None and basis.step == 2  # a probe asked
    assert basis.update(3) is not None and basis.step == 3
    assert len(lanczos_calls) == basis.num_refreshes == 3


# ----------------------------------------------------------------------------- attach, set
def test_attach_checks_the_model():
    with pytest.raises(InvalidArgumentError, match=r"torch\.nn\.Module"):
        EigenBasis().attach("model")
    with pytest.raises(InvalidArgumentError, match="k=50 eigen-directions but the model has only"):
        EigenBasis(k=50).attach(nn.Linear(3, 2))
    frozen = nn.Linear(3, 2).requires_grad_(False)
    with pytest.raises(InvalidArgumentError, match="no trainable parameters"):
        EigenBasis(k=1).attach(frozen)
    with pytest.raises(EigenvectorsUnavailableError, match="not attached"):
        EigenBasis(k=1).rows_of([])
    # re-attached to another model, the layout follows it
    basis = EigenBasis(k=2).attach(nn.Linear(3, 2))
    basis.attach(nn.Linear(4, 2))
    assert basis.layout.n == 10


def test_set_checks_shape_and_orthonormality():
    model = make_mlp()
    n = n_params(model)
    with pytest.raises(EigenvectorsUnavailableError, match="attach"):
        EigenBasis(k=3).set(orthonormal(n, 3))
    basis = EigenBasis(k=3).attach(model)
    with pytest.raises(InvalidArgumentError, match=rf"\({n}, >=3\)"):
        basis.set(torch.zeros(n + 1, 3))
    with pytest.raises(InvalidArgumentError, match=rf"\({n}, >=3\)"):
        basis.set(orthonormal(n, 2))
    with pytest.raises(InvalidArgumentError, match=r"\(n, k\)"):
        basis.set(torch.zeros(n))
    with pytest.raises(InvalidArgumentError, match="not orthonormal"):
        basis.set(torch.ones(n, 3))
    v = orthonormal(n, 5, dtype=torch.float64)  # extra columns are dropped, cast to the model
    basis.set(v, values=[3.0, 2.0, 1.0, 0.5, 0.1], step=7)
    assert basis.vectors.dtype == torch.float32 and torch.equal(basis.vectors, v[:, :3].float())
    assert basis.values.tolist() == [3.0, 2.0, 1.0] and basis.values.dtype == torch.float64
    assert basis.step == 7 and basis.num_refreshes == 1
    # a basis given by the user is current at its step: an optimizer does not recompute it
    assert basis.update(7) is None and basis.ensure(7) is None


# ----------------------------------------------------------------------------- refresh
@pytest.mark.parametrize("data", ["probe", "train", "batch"])
def test_eigenvalues_equal_eigvalsh_of_the_dense_hessian(data):
    """float64 model, tol 1e-10: λ₁…λ₃ and λ_min to 1e-6 relative; the vectors span the top-3
    eigenspace; the Hessian is of the chosen data."""
    bundle = make_bundle(dtype=torch.float64)
    model = make_mlp(widths=(5,), dtype=torch.float64)
    basis = attached_basis(model, bundle, k=3, data=data, tol=1e-10)
    held = flat_params(model)
    theta = held + 0.1  # at a given θ, not the model's
    x, y = bundle.train.tensors()
    batch = (x[:16], y[:16])
    res = basis.refresh(4, theta=theta, batch=batch if data == "batch" else None)
    source = {"probe": bundle.probe.tensors(), "train": (x, y), "batch": batch}[data]
    H = dense_hessian(model, CE, source, theta)
    ev = torch.linalg.eigvalsh(H)
    torch.testing.assert_close(basis.values, ev.flip(0)[:3], rtol=1e-6, atol=0)
    assert basis.lambda_min == pytest.approx(float(ev[0]), rel=1e-6)
    assert basis.spectral_norm == max(abs(float(basis.values[0])), abs(basis.lambda_min))
    assert basis.spectral_norm == pytest.approx(float(ev.abs().max()), rel=1e-6)
    assert subspace_distance(basis.vectors, top_eigh(H, 3)[1]) < 1e-6
    assert basis.step == 4 and basis.last_matvecs == res.num_matvecs > 0
    assert torch.equal(flat_params(model), held), "the model is not touched"
    # the basis's consumers measure on the same data
    got = basis.data_for()
    assert (got is batch) if data == "batch" else (got is getattr(bundle, data))


def test_batch_data_needs_the_steps_batch():
    basis = attached_basis(make_mlp(), make_bundle(), k=2, data="batch")
    with pytest.raises(EigenvectorsUnavailableError, match="mini-batch"):
        basis.ensure(0)
    with pytest.raises(EigenvectorsUnavailableError, match="no data"):
        EigenBasis(k=2).attach(make_mlp(), CE).ensure(0)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_batchnorm_mode_is_the_bases(bn_mode):
    bundle = make_bundle(dtype=torch.float64)
    model = make_mlp(widths=(5,), batchnorm=True, dtype=torch.float64)
    basis = attached_basis(model, bundle, k=2, bn_mode=bn_mode, tol=1e-10, lambda_min=False)
    basis.ensure(0)
    H = dense_hessian(model, CE, bundle.probe, flat_params(model), bn_mode=bn_mode)
    want = torch.linalg.eigvalsh(H)
    torch.testing.assert_close(basis.values, want.flip(0)[:2], rtol=1e-6, atol=0)
    assert basis.lambda_min is None and basis.spectral_norm == float(basis.values[0])
    op = basis.operator()
    assert isinstance(op, HessianOperator) and op.bn_mode == bn_mode
    # a consumer restating the mode is fine, another mode is refused, None follows the basis
    assert basis.check_consumer("probe 'x'", None) == bn_mode
    assert basis.check_consumer("probe 'x'", bn_mode) == bn_mode
    other = "train" if bn_mode == "eval" else "eval"
    with pytest.raises(BasisMismatchError, match=f"bn_mode='{other}'.*bn_mode='{bn_mode}'"):
        basis.check_consumer("probe 'x'", other)


def _rotating_quadratic(n=100, steps=6, angle=1e-4):
    """A sequence of Hessians Q_i Λ Q_iᵀ whose eigenvectors rotate by about ``angle`` per step."""
    gen = torch.Generator().manual_seed(0)
    q0 = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64)).Q
    lam = torch.cat(
        [
            torch.tensor([10.0, 9.0, 8.0], dtype=torch.float64),
            6 * torch.rand(n - 3, generator=gen, dtype=torch.float64),
        ]
    )
    lam[-1] = -2.0
    s = torch.randn(n, n, generator=gen, dtype=torch.float64)
    s = (s - s.T) / s.norm() * n**0.5
    return [torch.linalg.matrix_exp(i * angle * s) @ q0 for i in range(steps)], lam


@pytest.mark.parametrize("lambda_min", [True, False])
def test_warm_start_uses_fewer_products_on_a_slowly_rotating_problem(lambda_min):
    qs, lam = _rotating_quadratic()
    data = (torch.zeros(4, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    totals = {}
    for warm in (True, False):
        zeros = torch.zeros(100, dtype=torch.float64)
        model = Quadratic(torch.eye(100, dtype=torch.float64), zeros, zeros)
        basis = attached_basis(
            model, data, mean_loss, k=3, tol=1e-4, warm_start=warm, lambda_min=lambda_min
        )
        total = 0
        for step, q in enumerate(qs):
            model.a.copy_((q * lam) @ q.T)
            basis.refresh(step)
            # residuals ≤ 1e-4·|λ| and gaps ≥ 1: eigenvalues to ~1e-7, vectors to ~1e-3
            top = torch.tensor([10.0, 9.0, 8.0], dtype=torch.float64)
            torch.testing.assert_close(basis.values, top, rtol=1e-6, atol=0)
            if lambda_min:
                assert basis.lambda_min == pytest.approx(-2.0, rel=1e-6)
            assert subspace_distance(basis.vectors, q[:, :3]) < 5e-3
            total += basis.last_matvecs if step > 0 else 0
        totals[warm] = total
    assert totals[True] < 0.6 * totals[False], totals


def test_warm_start_backs_off_after_rough_vectors():
    """Vectors far off make the Ritz start fall back to one Lanczos chain; the basis then uses
    the sum start for one refresh (a back-off that doubles) and tries the Ritz start again after;
    the choice is part of the state."""
    bundle = make_bundle()
    model = make_mlp(widths=(6,), seed=1)
    basis = attached_basis(model, bundle, k=2, lambda_min=False)
    basis.ensure(0)
    basis._vectors = torch.randn(basis.layout.n, 2, generator=torch.Generator().manual_seed(0))
    assert basis.refresh(0).warm_start == "ritz+lanczos"
    assert (basis._sum_left, basis._backoff) == (1, 2)
    state = checkpoint(basis.state_dict())
    assert (state["warm_sum_left"], state["warm_backoff"]) == (1, 2)
    assert basis.refresh(0).warm_start == "sum"  # from accurate vectors
    assert basis._sum_left == 0
    clone = EigenBasis(k=2, lambda_min=False)
    clone.load_state_dict(state)
    assert (clone._sum_left, clone._backoff) == (1, 2)
    res = basis.refresh(0)  # Ritz again, from converged vectors: k + 1 products
    assert res.warm_start == "ritz" and basis.last_matvecs <= 3 and basis._backoff == 1


def test_state_round_trip_continues_exactly():
    bundle = make_bundle()
    model = make_mlp(widths=(6,))
    basis = attached_basis(model, bundle, k=2, every=2)
    thetas = [flat_params(model) + 0.05 * i for i in range(4)]
    for i in range(3):
        basis.refresh(2 * i, theta=thetas[i])
    state = checkpoint(basis.state_dict())
    assert state["kind"] == "EigenBasis" and state["step"] == 4 and state["num_refreshes"] == 3
    fresh = EigenBasis(k=2, every=2)
    fresh.load_state_dict(state)  # before attach, as the ProbeSet does on resume
    fresh.attach(model, CE, bundle)
    for name in ("vectors", "values", "step", "lambda_min", "num_refreshes", "last_matvecs"):
        a, b = getattr(basis, name), getattr(fresh, name)
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, name
    basis.refresh(6, theta=thetas[3])
    fresh.refresh(6, theta=thetas[3])
    assert torch.equal(basis.vectors, fresh.vectors) and torch.equal(basis.values, fresh.values)
    assert basis.lambda_min == fresh.lambda_min
    with pytest.raises(InvalidArgumentError, match="resume with the same eigenbasis"):
        EigenBasis(k=3).load_state_dict(state)
    with pytest.raises(InvalidArgumentError, match="RandomBasis"):
        EigenBasis(k=2).load_state_dict(RandomBasis(k=2).state_dict())


_REFRESHES = """
import torch, sys
sys.path.insert(0, {root!r})
from tests.probes.cases import attached_basis, make_bundle, make_mlp
from sgdscope.probes import flat_params
torch.manual_seed(0)
bundle = make_bundle()
model = make_mlp(widths=(6,), seed=1)
basis = attached_basis(model, bundle, k=2, every=1)
for i in range(3):
    basis.refresh(i, theta=flat_params(model) + 0.02 * i)  # Ritz warm starts: block products
    print(repr(basis.values.tolist()), basis.last_matvecs)
"""


def test_refreshes_do_not_depend_on_the_process_or_its_history(capsys):
    """Block products are chosen by shapes and device, never by timing (issue 11): the same
    refreshes in this process, again in it, and in a fresh process (another clock, another
    memory state) are bit for bit the same, as a resumed run needs."""
    import subprocess
    import sys
    from pathlib import Path

    code = _REFRESHES.format(root=str(Path(__file__).resolve().parents[1]))
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    here: dict = {}
    exec(code, here)
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.count("\n") == 3


# ----------------------------------------------------------------------------- random basis
def test_random_basis_is_seeded_orthonormal_and_redrawn_on_schedule():
    model = make_mlp()
    n = n_params(model)
    a = RandomBasis(k=4, every=3, seed=5).attach(model)
    b = RandomBasis(k=4, every=3, seed=5).attach(model)
    c = RandomBasis(k=4, every=3, seed=6).attach(model)
    seen = []
    for t in range(7):
        for basis in (a, b, c):
            basis.update(t)
        assert torch.equal(a.vectors, b.vectors) and not torch.equal(a.vectors, c.vectors)
        assert a.vectors.shape == (n, 4) and a.vectors.dtype == torch.float32
        torch.testing.assert_close(a.vectors.T @ a.vectors, torch.eye(4), rtol=0, atol=1e-6)
        seen.append(a.vectors.clone())
    assert a.step == 6 and a.num_refreshes == 3
    assert torch.equal(seen[0], seen[2]) and not torch.equal(seen[2], seen[3])
    assert a.values is None and a.check_consumer("x", None) == "eval"
    assert a.check_consumer("x", "train") == "train"  # measures nothing: no mismatch
    # the first draw is a QR of a seeded float64 Gaussian
    g = torch.randn(n, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(seen[0], torch.linalg.qr(g).Q.float())
    # every=None: drawn once, at the first use
    once = RandomBasis(k=2, every=None, seed=1).attach(model)
    assert [once.update(t) for t in range(3)] == [None] * 3 and once.num_refreshes == 1


def test_random_basis_state_continues_the_draws():
    model = make_mlp()
    a = RandomBasis(k=3, every=2, seed=9).attach(model)
    for t in range(3):
        a.update(t)
    state = checkpoint(a.state_dict())
    b = RandomBasis(k=3, every=2, seed=0)
    b.load_state_dict(state)
    b.attach(model)
    assert torch.equal(a.vectors, b.vectors) and b.step == 2
    a.update(4)
    b.update(4)
    assert torch.equal(a.vectors, b.vectors)
    for bad in (0, 2.5, True):
        with pytest.raises(InvalidArgumentError, match="k: expected an integer"):
            RandomBasis(k=bad)
    with pytest.raises(InvalidArgumentError, match="every"):
        RandomBasis(k=2, every=0)


# ----------------------------------------------------------------------------- layout
def test_parameter_layout_by_identity():
    model = make_mlp(widths=(4,))
    model[1].bias.requires_grad_(False)  # frozen: not in the layout
    layout = ParameterLayout(model)
    assert layout.names == ["1.weight", "3.weight", "3.bias"]
    assert layout.numels == [24, 12, 3] and layout.n == 39
    params = [model[3].bias, model[1].weight]
    assert layout.rows_of(params) == [slice(36, 39), slice(0, 24)]
    assert layout.covers([model[3].weight, *params]) and not layout.covers(params)
    with pytest.raises(InvalidArgumentError, match="not a trainable parameter"):
        layout.rows_of([model[1].bias])
    with pytest.raises(InvalidArgumentError, match="not a trainable parameter"):
        layout.rows_of([nn.Parameter(torch.zeros(3))])
    assert (layout.dtype, layout.device) == (torch.float32, torch.device("cpu"))
