"""GGN and empirical Fisher operators against dense float64 references: G = Jᵀ H_out J from
``torch.func.jacrev`` / ``hessian``, F from per-sample gradients; G = H for a linear model with
MSE; their top-k by Lanczos against ``eigvalsh``; the HessianOperator's data handling (several
batches, reductions, blocks, θ, dtype, BatchNorm modes) carried over; the eigenbasis option."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import sgdscope as ss
from sgdscope.curvature import (
    EmpiricalFisherOperator,
    GGNOperator,
    HessianOperator,
    hutchinson_trace,
    lanczos,
    spectral_density,
)
from sgdscope.errors import InvalidArgumentError

# float64 products against dense references: a few hundred ulps of O(1) entries
ATOL = 1e-12


def _mlp(activation: str = "tanh", out: int = 3, batchnorm: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    model = ss.build_model(
        "mlp", (4,), out, widths=[5], activation=activation, batchnorm=batchnorm
    ).double()
    if batchnorm:
        with torch.no_grad():
            model.train()
            model(torch.randn(32, 4, dtype=torch.float64) * 1.5 + 0.3)
        model.eval()
    return model


def _data(n: int = 10, classes: int = 3, seed: int = 1, regression: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    if regression:
        return x, torch.randn(n, classes, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=g)


class _Dense:
    """Dense float64 references over the model's parameters (or a named subset)."""

    def __init__(self, model: nn.Module, names: list[str] | None = None, train: bool = False):
        self.model = model
        self.names = names or [n for n, _ in model.named_parameters()]
        params = dict(model.named_parameters())
        self.shapes = [params[n].shape for n in self.names]
        self.sizes = [s.numel() for s in self.shapes]
        self.fixed = {n: p.detach() for n, p in params.items() if n not in self.names}
        self.theta = torch.cat([params[n].detach().reshape(-1) for n in self.names])
        self.train = train

    def out(self, th: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(th, self.sizes)
        tensors = {n: v.view(s) for n, v, s in zip(self.names, pieces, self.shapes, strict=True)}
        tensors.update(self.fixed)
        buffers = {k: b.clone() for k, b in self.model.named_buffers()}
        self.model.train(self.train)
        try:
            return functional_call(self.model, (tensors, buffers), (x,))
        finally:
            self.model.eval()

    def ggn(self, loss_fn, batches, weights) -> torch.Tensor:
        total = 0
        for (x, y), w in zip(batches, weights, strict=True):
            jac = torch.func.jacrev(lambda th, x=x: self.out(th, x))(self.theta)
            jac = jac.reshape(-1, self.theta.numel())
            o = self.out(self.theta, x).detach()
            h_out = torch.func.hessian(lambda oo, y=y: loss_fn(oo, y))(o).reshape(o.numel(), -1)
            total = total + w * jac.T @ h_out @ jac
        return total

    def hessian(self, loss_fn, x, y) -> torch.Tensor:
        return torch.func.hessian(lambda th: loss_fn(self.out(th, x), y))(self.theta)

    def per_sample(self, loss_fn, x, y) -> torch.Tensor:
        return torch.stack(
            [
                torch.func.grad(lambda th, i=i: loss_fn(self.out(th, x[i : i + 1]), y[i : i + 1]))(
                    self.theta
                )
                for i in range(len(x))
            ]
        )


def _block(n: int, m: int = 3, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize(
    ("activation", "loss", "regression"),
    [
        ("tanh", F.cross_entropy, False),
        ("relu", F.mse_loss, True),
        ("gelu", F.cross_entropy, False),
    ],
)
@pytest.mark.parametrize("products", ["autograd", "func"])
def test_ggn_products_against_dense(activation, loss, regression, products) -> None:
    model = _mlp(activation)
    x, y = _data(regression=regression)
    dense = _Dense(model)
    G = dense.ggn(loss, [(x, y)], [1.0])
    op = GGNOperator(model, loss, (x, y), products=products)
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, G @ V, rtol=0, atol=ATOL)
    torch.testing.assert_close(op @ V[:, 0], G @ V[:, 0], rtol=0, atol=ATOL)
    expected_blocks = "loop" if products == "autograd" else "batched"
    assert op.info["style"] == f"ggn ({products})"
    assert op.info["block_products"] == expected_blocks
    assert op.info["kept_batches"] == 1  # the graphs are kept within the memory budget
    # without a budget the same products are recomputed each time
    op0 = GGNOperator(model, loss, (x, y), products=products, memory_budget=0)
    torch.testing.assert_close(op0 @ V, op @ V, rtol=0, atol=ATOL)
    assert op0.info["kept_batches"] == 0
    # G is positive semi-definite (convex losses in the outputs).
    assert torch.linalg.eigvalsh(G).min() > -1e-12


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_ggn_over_several_batches_follows_the_reduction(reduction) -> None:
    model = _mlp()
    x, y = _data(n=11)
    loss = nn.CrossEntropyLoss(reduction=reduction)
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    weights = [4 / 11, 7 / 11] if reduction == "mean" else [1.0, 1.0]
    G = _Dense(model).ggn(loss, batches, weights)
    op = GGNOperator(model, loss, batches)
    assert op.reduction == reduction
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, G @ V, rtol=0, atol=ATOL)


def test_ggn_equals_the_hessian_for_a_linear_model_with_mse() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2).double()
    x, y = _data(regression=True, classes=2)
    G = GGNOperator(model, F.mse_loss, (x, y))
    H = HessianOperator(model, F.mse_loss, (x, y))
    V = _block(G.shape[0])
    torch.testing.assert_close(G @ V, H @ V, rtol=0, atol=ATOL)
    torch.testing.assert_close(
        G @ V, _Dense(model).hessian(F.mse_loss, x, y) @ V, rtol=0, atol=ATOL
    )


def test_ggn_block_theta_dtype_and_batchnorm_modes() -> None:
    model = _mlp(batchnorm=True)
    x, y = _data(n=12)
    names = ["1.weight", "1.bias"]
    # a diagonal block of G at a given θ: J of the chosen parameters only
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]) * 0.9
    op = GGNOperator(model, F.cross_entropy, (x, y), bn_mode="eval", params=names, theta=theta)
    shifted = _mlp(batchnorm=True)
    with torch.no_grad():
        for p, v in zip(
            shifted.parameters(),
            torch.split(theta, [p.numel() for p in model.parameters()]),
            strict=True,
        ):
            p.copy_(v.view_as(p))
    G = _Dense(shifted, names).ggn(F.cross_entropy, [(x, y)], [1.0])
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, G @ V, rtol=0, atol=ATOL)
    # BatchNorm in train mode: the Jacobian of the outputs with batch statistics
    op_train = GGNOperator(model, F.cross_entropy, (x, y), bn_mode="train")
    G_train = _Dense(model, train=True).ggn(F.cross_entropy, [(x, y)], [1.0])
    V = _block(op_train.shape[0])
    torch.testing.assert_close(op_train @ V, G_train @ V, rtol=0, atol=ATOL)
    # a float32 model measured in float64
    m32 = _mlp().float()
    x32 = x.float()
    op64 = GGNOperator(m32, F.cross_entropy, (x32, y), dtype=torch.float64)
    G64 = _Dense(m32.double()).ggn(F.cross_entropy, [(x, y)], [1.0])
    V = _block(op64.shape[0])
    assert (op64 @ V).dtype == torch.float64
    torch.testing.assert_close(op64 @ V, G64 @ V, rtol=0, atol=1e-6)  # x rounded to float32


def test_ggn_falls_back_to_the_other_product_style(monkeypatch) -> None:
    model = _mlp()
    x, y = _data()
    op = GGNOperator(model, F.cross_entropy, (x, y))
    V = _block(op.shape[0])
    expected = op @ V

    def broken(*args, **kwargs):
        raise RuntimeError("derivative for this op is not implemented")

    fresh = GGNOperator(model, F.cross_entropy, (x, y))
    monkeypatch.setattr(fresh._engine, "_batch_autograd", broken)
    torch.testing.assert_close(fresh @ V, expected, rtol=0, atol=ATOL)
    assert fresh.info["style"] == "ggn (func)"
    with pytest.raises(InvalidArgumentError, match="products"):
        GGNOperator(model, F.cross_entropy, (x, y), products="fast")


def test_ggn_refuses_losses_without_outputs() -> None:
    model = _mlp()
    x, y = _data()
    closure = ss.LossClosure(lambda m, b: F.cross_entropy(m(b[0]), b[1]))
    for bad in (closure, None):
        with pytest.raises(InvalidArgumentError, match="loss_fn\\(output, target\\)"):
            GGNOperator(model, bad, (x, y))
    with pytest.raises(InvalidArgumentError, match="hvp"):
        GGNOperator(model, F.cross_entropy, (x, y), hvp="reuse")
    with pytest.raises(InvalidArgumentError, match="hvp"):
        EmpiricalFisherOperator(model, F.cross_entropy, (x, y), hvp="reuse")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fisher_against_per_sample_gradients(reduction) -> None:
    model = _mlp()
    x, y = _data(n=9)
    loss = nn.CrossEntropyLoss(reduction=reduction)
    g = _Dense(model).per_sample(loss, x, y)
    Fm = g.T @ g / (9 if reduction == "mean" else 1)
    for data in ((x, y), [(x[:5], y[:5]), (x[5:], y[5:])]):
        op = EmpiricalFisherOperator(model, loss, data, bn_mode="eval")
        V = _block(op.shape[0])
        torch.testing.assert_close(op @ V, Fm @ V, rtol=0, atol=ATOL)


def test_fisher_reads_the_reduction_of_a_plain_function_and_accepts_closures() -> None:
    model = _mlp()
    x, y = _data(n=8)
    g = _Dense(model).per_sample(F.cross_entropy, x, y)

    def summed(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, t, reduction="sum")

    op = EmpiricalFisherOperator(model, summed, (x, y), bn_mode="eval")
    assert op.info["reduction_over_examples"] == "sum"
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, g.T @ (g @ V), rtol=0, atol=ATOL)
    closure = ss.LossClosure(lambda m, b: F.cross_entropy(m(b[0]), b[1]))
    op_c = EmpiricalFisherOperator(model, closure, (x, y), bn_mode="eval")
    torch.testing.assert_close(op_c @ V, g.T @ (g @ V) / 8, rtol=0, atol=ATOL)


def test_fisher_batchnorm_needs_eval_mode() -> None:
    model = _mlp(batchnorm=True)
    x, y = _data()
    with pytest.raises(InvalidArgumentError, match="bn_mode='eval'"):
        EmpiricalFisherOperator(model, F.cross_entropy, (x, y), bn_mode="train")
    op = EmpiricalFisherOperator(model, F.cross_entropy, (x, y), bn_mode="eval")
    g = _Dense(model).per_sample(F.cross_entropy, x, y)
    V = _block(op.shape[0])
    torch.testing.assert_close(op @ V, g.T @ (g @ V) / len(x), rtol=0, atol=ATOL)


@pytest.mark.parametrize("which", ["ggn", "fisher"])
def test_top_k_by_lanczos_against_eigvalsh_and_estimators_accept_them(which) -> None:
    model = _mlp()
    x, y = _data(n=12)
    dense = _Dense(model)
    if which == "ggn":
        op = GGNOperator(model, F.cross_entropy, (x, y))
        M = dense.ggn(F.cross_entropy, [(x, y)], [1.0])
    else:
        op = EmpiricalFisherOperator(model, F.cross_entropy, (x, y), bn_mode="eval")
        g = dense.per_sample(F.cross_entropy, x, y)
        M = g.T @ g / len(x)
    res = lanczos(op, 4, tol=1e-10)
    expected = torch.linalg.eigvalsh(M).flip(0)[:4]
    torch.testing.assert_close(res.eigenvalues, expected, rtol=1e-8, atol=1e-10)
    # Hutch++ whose sketch spans all n dimensions is exact
    tr = hutchinson_trace(op, num_samples=3 * op.shape[0], method="hutch++")
    assert tr.estimate == pytest.approx(float(torch.trace(M)), rel=1e-8)
    dens = spectral_density(op, num_runs=2, num_iter=10, seed=0)
    assert torch.isfinite(torch.as_tensor(dens.density)).all()


@pytest.mark.parametrize("curvature", ["ggn", "fisher"])
def test_eigenbasis_of_another_curvature(curvature) -> None:
    model = _mlp()
    x, y = _data(n=12)
    basis = ss.EigenBasis(k=2, every=1, curvature=curvature, tol=1e-10, lambda_min=False)
    basis.attach(model, F.cross_entropy, (x, y))
    basis.ensure(0)
    dense = _Dense(model)
    if curvature == "ggn":
        M = dense.ggn(F.cross_entropy, [(x, y)], [1.0])
    else:
        g = dense.per_sample(F.cross_entropy, x, y)
        M = g.T @ g / len(x)
    torch.testing.assert_close(
        basis.values, torch.linalg.eigvalsh(M).flip(0)[:2], rtol=1e-8, atol=1e-10
    )
