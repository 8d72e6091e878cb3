"""The sharpness probe's threshold and stability ratio for each optimizer, and the preconditioned
sharpness λ₁(P⁻¹ᐟ² H P⁻¹ᐟ²) against a dense float64 computation with Adam's own P."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import sgdscope as ss
from sgdscope import metrics as M
from sgdscope.curvature import PreconditionedOperator, lanczos
from sgdscope.errors import ConfigError, InvalidArgumentError
from sgdscope.optim import SGD, Adam, preconditioner
from sgdscope.probes import ProbeSet, SharpnessProbe, When, flat_params
from sgdscope.store import load_run

from ..helpers import tiny_config

TOL = 1e-9  # Lanczos tolerance of the basis: eigenvalues to ~1e-9 relative


def _case(seed: int = 0):
    torch.manual_seed(seed)
    model = ss.build_model("mlp", (4,), 3, widths=[5], activation="tanh").double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    return model, (x, y)


def _dense_hessian(model, x, y, theta):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [s.numel() for s in shapes]

    def f(th):
        pieces = torch.split(th, sizes)
        params = {n: v.view(s) for n, v, s in zip(names, pieces, shapes, strict=True)}
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    return torch.func.hessian(f)(theta)


def _run(make_opt, steps: int = 3, **probe_options):
    model, data = _case()
    opt = make_opt(model.parameters())
    basis = ss.EigenBasis(k=2, every=1, tol=TOL, lambda_min=False)
    probes = ProbeSet(
        [SharpnessProbe(When(every=1), **probe_options)], eigenbasis=basis, loss_fn=F.cross_entropy
    )
    probes.on_train_start(model, data, optimizer=opt)
    thetas, out = [], []
    for _ in range(steps):
        thetas.append(flat_params(model))
        opt.zero_grad()
        loss = F.cross_entropy(model(data[0]), data[1])
        loss.backward()
        opt.step()
        out.append(probes.after_step(model, data, loss, opt))
    return model, data, opt, thetas, out


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: Adam(p, lr=0.01, betas=(0.9, 0.99), eps=1e-4),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.99), eps=1e-4),
    ],
    ids=["ours", "torch"],
)
def test_preconditioned_sharpness_against_dense(make_opt) -> None:
    model, (x, y), opt, thetas, out = _run(make_opt)
    params = list(model.parameters())
    diag = torch.cat([d.reshape(-1) for d in preconditioner(opt, params)])
    h = _dense_hessian(model, x, y, thetas[-1])
    s = diag.rsqrt()
    m = s[:, None] * h * s[None, :]
    expected = float(torch.linalg.eigvalsh(m)[-1])
    got = out[-1].scalars
    assert got["precond_lambda_1"] == pytest.approx(expected, rel=1e-7)
    assert got["stability_threshold"] == pytest.approx(38 / 0.01, rel=1e-12)
    assert got["stability"] == pytest.approx(expected * 0.01 / 38, rel=1e-7)
    assert got["lambda_1"] == pytest.approx(float(torch.linalg.eigvalsh(h)[-1]), rel=1e-7)
    # The extra Lanczos is counted in the measurement's products.
    assert got["hessian_matvecs"] > 0


def test_sgd_threshold_and_stability_ratio() -> None:
    _, (x, y), _, thetas, out = _run(lambda p: SGD(p, lr=0.1, momentum=0.5))
    model, _ = _case()
    lam = float(torch.linalg.eigvalsh(_dense_hessian(model, x, y, thetas[-1]))[-1])
    got = out[-1].scalars
    assert got["stability_threshold"] == pytest.approx(3.0 / 0.1, rel=1e-12)
    assert got["stability"] == pytest.approx(lam * 0.1 / 3.0, rel=1e-7)
    assert "precond_lambda_1" not in got


def test_preconditioned_option_checks() -> None:
    with pytest.raises(ConfigError, match="needs a preconditioning optimizer"):
        _run(lambda p: SGD(p, lr=0.1), steps=1, preconditioned=True)
    _, _, _, _, out = _run(lambda p: Adam(p, lr=0.01), steps=1, preconditioned=False)
    assert "precond_lambda_1" not in out[0].scalars
    assert math.isnan(out[0].scalars["stability"])  # λ₁(H) is not what Adam's threshold bounds
    with pytest.raises(ConfigError, match="preconditioned"):
        SharpnessProbe(preconditioned="yes")


def test_preconditioned_operator_against_dense_and_its_checks() -> None:
    model, (x, y) = _case(seed=2)
    h = _dense_hessian(model, x, y, flat_params(model))
    g = torch.Generator().manual_seed(5)
    diag = torch.rand(h.shape[0], generator=g, dtype=torch.float64) + 0.1
    op = PreconditionedOperator(ss.HessianOperator(model, F.cross_entropy, (x, y)), diag)
    dense = diag.rsqrt()[:, None] * h * diag.rsqrt()[None, :]
    v = torch.randn(h.shape[0], 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op @ v, dense @ v, rtol=1e-10, atol=1e-12)
    res = lanczos(op, 3, tol=1e-10)
    torch.testing.assert_close(
        res.eigenvalues, torch.linalg.eigvalsh(dense).flip(0)[:3], rtol=1e-8, atol=1e-10
    )
    with pytest.raises(InvalidArgumentError, match="shape"):
        PreconditionedOperator(h, diag[:-1])
    with pytest.raises(InvalidArgumentError, match="> 0"):
        PreconditionedOperator(h, torch.zeros_like(diag))


def test_an_adam_run_writes_the_preconditioned_sharpness(tmp_path) -> None:
    cfg = tiny_config()
    cfg["optim"] = {"name": "adam", "lr": 0.01}
    cfg["train"]["epochs"] = 1
    cfg["eigenbasis"] = {"k": 1, "every": 4}
    cfg["probes"] = [{"name": "sharpness"}]
    run = load_run(ss.run(cfg, out=tmp_path / "adam"))
    s = run.scalars
    values = s[s.name == M.PRECOND_LAMBDA_1].value
    assert len(values) == 2 and (values > 0).all()
    assert s[s.name == M.STABILITY_THRESHOLD].value.tolist() == pytest.approx([38 / 0.01] * 2)


def test_ggn_option_records_lambda_1_of_the_gauss_newton_matrix() -> None:
    model, (x, y), _, thetas, out = _run(lambda p: SGD(p, lr=0.1), steps=2, ggn=True)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [s.numel() for s in shapes]

    def logits(th: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(th, sizes)
        params = {n: v.view(s) for n, v, s in zip(names, pieces, shapes, strict=True)}
        return functional_call(model, params, (x,))

    theta = thetas[-1]
    jac = torch.func.jacrev(logits)(theta).reshape(-1, theta.numel())
    o = logits(theta).detach()
    h_out = torch.func.hessian(lambda oo: F.cross_entropy(oo, y))(o).reshape(o.numel(), -1)
    expected = float(torch.linalg.eigvalsh(jac.T @ h_out @ jac)[-1])
    got = out[-1].scalars
    assert got["ggn_lambda_1"] == pytest.approx(expected, rel=1e-7)
    with pytest.raises(ConfigError, match="ggn"):
        SharpnessProbe(ggn="yes")
