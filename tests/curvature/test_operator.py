"""HessianOperator against dense float64 Hessians; data forms; BatchNorm modes; model state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from curvature_cases import (
    CASES,
    EPS32,
    EPS64,
    assert_unchanged,
    dense_hessian,
    flat_loss,
    make_case,
    make_data,
    state_snapshot,
)
from torch.utils.data import DataLoader, TensorDataset

import sgdscope as ss
from sgdscope.curvature import HessianOperator, hutchinson_trace, lanczos
from sgdscope.errors import InvalidArgumentError

STYLES = ["reuse", "double_backward", "forward_over_reverse"]

# Products in float64 are sums of ~1e3 rounded terms: the error is ~1e3·eps·‖H‖‖v‖ ≈ 2e-13
# relative; 1e3·eps·(1e3 margin) = 2e-10 bounds it with room.
RTOL64 = 1e6 * EPS64


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("case", CASES)
def test_products_match_dense_hessian(case, style):
    model, loss_fn, data, bn_mode = make_case(case)
    H = dense_hessian(model, loss_fn, data, bn_mode)
    op = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=torch.float64, hvp=style)
    assert op.shape == H.shape
    g = torch.Generator().manual_seed(1)
    V = torch.randn(H.shape[0], 4, generator=g, dtype=torch.float64)
    assert _rel(op @ V[:, 0], H @ V[:, 0]) < RTOL64
    assert _rel(op.matvec(V[:, 1]), H @ V[:, 1]) < RTOL64
    assert _rel(op.matmat(V), H @ V) < RTOL64
    assert op.num_matvecs == 6
    # the reference itself is symmetric to rounding (see curvature_cases for torch.func's bug)
    assert float((H - H.T).abs().max()) <= 1e3 * EPS64 * float(H.abs().max())


def test_reference_matches_finite_differences():
    """The BN-train reference (reverse-over-reverse) against central differences of ∇L."""
    model, loss_fn, data, bn_mode = make_case("mlp-bn-train")
    H = dense_hessian(model, loss_fn, data, bn_mode)
    f, theta = flat_loss(model, loss_fn, [data], bn_mode)
    grad = torch.func.grad(f)
    v = torch.randn(len(theta), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h = 1e-5  # central differences: error ~h²·‖∇³L‖ + eps/h ≈ 1e-10
    fd = (grad(theta + h * v) - grad(theta - h * v)) / (2 * h)
    assert _rel(H @ v, fd) < 1e-7


def test_float32_operator_close_to_float64():
    model, loss_fn, data, _ = make_case("cnn")
    H = dense_hessian(model, loss_fn, data, "train")
    op = HessianOperator(model, loss_fn, data)
    assert op.dtype == torch.float32
    v = torch.randn(op.shape[0])
    # float32 products: ~1e3 accumulated roundings of eps32 = 1.2e-7 each → 1e-4 bound
    assert _rel((op @ v).double(), H @ v.double()) < 1e3 * EPS32


@pytest.mark.parametrize("case", ["mlp-relu", "mlp-bn-eval"])
def test_pair_list_dataloader_agree(case):
    model, loss_fn, (x, y), bn_mode = make_case(case)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    kw = dict(bn_mode=bn_mode, dtype=torch.float64)
    ref = HessianOperator(model, loss_fn, (x, y), **kw) @ v
    lst = [(x[:10], y[:10]), (x[10:17], y[10:17]), (x[17:], y[17:])]
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=False)
    split = ss.Split(x, y, "probe")
    for data in (lst, loader, split):
        assert _rel(HessianOperator(model, loss_fn, data, **kw) @ v, ref) < RTOL64
    assert _rel(HessianOperator(model, loss_fn, (x, y), batch_size=7, **kw) @ v, ref) < RTOL64


def test_bn_train_depends_on_batching_as_documented():
    """BatchNorm train mode uses each batch's statistics: H = Σ_b w_b H_b, not H of the union."""
    model, loss_fn, (x, y), _ = make_case("mlp-bn-train")
    kw = dict(bn_mode="train", dtype=torch.float64)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    whole = HessianOperator(model, loss_fn, (x, y), **kw) @ v
    halves = [(x[:12], y[:12]), (x[12:], y[12:])]
    split = HessianOperator(model, loss_fn, halves, **kw) @ v
    assert _rel(split, whole) > 1e-3  # genuinely different matrices
    H_halves = dense_hessian(model, loss_fn, halves, "train")
    assert _rel(split, H_halves @ v) < RTOL64


def test_ghost_mode_is_independent_of_the_loader_batch_size():
    model, loss_fn, (x, y), _ = make_case("mlp-bn-train")
    kw = dict(bn_mode="ghost", ghost_batch_size=8, dtype=torch.float64)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    ref = HessianOperator(model, loss_fn, (x, y), **kw) @ v
    for bs in (5, 24):
        loader = DataLoader(TensorDataset(x, y), batch_size=bs)
        assert _rel(HessianOperator(model, loss_fn, loader, **kw) @ v, ref) < RTOL64
    ghosts = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 24, 8)]
    H = dense_hessian(model, loss_fn, ghosts, "train")
    assert _rel(ref, H @ v) < RTOL64


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("case", ["mlp-bn-train", "mlp-bn-eval", "cnn"])
def test_model_unchanged(case, style):
    model, loss_fn, data, bn_mode = make_case(case)
    params = list(model.parameters())
    params[-1].requires_grad_(False)  # a frozen parameter stays frozen
    loss_fn(model(data[0]), data[1]).backward()  # existing grads stay as they are
    params[0].grad = None
    model.eval() if case == "mlp-bn-eval" else model.train()
    model[0].train()  # mixed flags
    before = state_snapshot(model)
    op = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, hvp=style)
    op @ torch.randn(op.shape[0], generator=torch.Generator().manual_seed(0))
    lanczos(op, 2, tol=1e-2)
    hutchinson_trace(op, 4)
    op.gradient()
    op.loss()
    assert_unchanged(before, state_snapshot(model))
    assert op.shape[0] == sum(p.numel() for p in params[:-1])


def test_per_layer_operator_is_the_diagonal_block():
    model, loss_fn, data, bn_mode = make_case("cnn")
    H = dense_hessian(model, loss_fn, data, bn_mode)
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in model.parameters()]
    offsets = np.cumsum([0, *sizes])
    for i in (0, 3, len(names) - 2):  # a first conv, a later conv, the classifier weight
        group = names[i : i + 2]  # weight and bias of one layer
        lo, hi = offsets[i], offsets[i + 2]
        op = HessianOperator(model, loss_fn, data, params=group, dtype=torch.float64)
        assert op.shape == (hi - lo, hi - lo)
        V = torch.randn(hi - lo, 3, dtype=torch.float64)
        assert _rel(op @ V, H[lo:hi, lo:hi] @ V) < RTOL64
    # parameters given as tensors select the same block
    p = list(model.parameters())
    op_t = HessianOperator(model, loss_fn, data, params=p[:2], dtype=torch.float64)
    v = torch.randn(op_t.shape[0], dtype=torch.float64)
    assert _rel(op_t @ v, H[: offsets[2], : offsets[2]] @ v) < RTOL64


def test_theta_evaluates_elsewhere_without_touching_the_model():
    model, loss_fn, data, bn_mode = make_case("mlp-tanh")
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    theta1 = theta0 + 0.1 * torch.randn_like(theta0)
    v = torch.randn(len(theta0), dtype=torch.float64)
    before = state_snapshot(model)
    op = HessianOperator(model, loss_fn, data, theta=theta1, dtype=torch.float64)
    hv = op @ v
    assert_unchanged(before, state_snapshot(model))
    torch.nn.utils.vector_to_parameters(theta1, model.parameters())
    H1 = dense_hessian(model, loss_fn, data, bn_mode)
    assert _rel(hv, H1 @ v) < RTOL64


def test_memory_budget_fallback_gives_the_same_products(caplog):
    model, loss_fn, (x, y), _ = make_case("mlp-relu")
    batches = [(x[i : i + 6], y[i : i + 6]) for i in range(0, 24, 6)]
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    full = HessianOperator(model, loss_fn, batches, dtype=torch.float64)
    ref = full @ v
    assert full.info["retained_batches"] == 4 and full.info["graph_bytes"] > 0
    per_batch = full.info["graph_bytes"] / 4
    with caplog.at_level("INFO", logger="sgdscope.curvature"):
        part = HessianOperator(
            model, loss_fn, batches, dtype=torch.float64, memory_budget=int(2.5 * per_batch)
        )
        hv = part @ v
    assert part.info["retained_batches"] == 2 and part.info["recomputed_batches"] == 2
    assert "recomputed at each product" in caplog.text
    none = HessianOperator(model, loss_fn, batches, dtype=torch.float64, memory_budget=0)
    assert _rel(hv, ref) < RTOL64 and _rel(none @ v, ref) < RTOL64
    assert none.info["retained_batches"] == 0


def test_gradient_and_loss_match_references():
    model, loss_fn, data, bn_mode = make_case("cnn")
    f, theta = flat_loss(model, loss_fn, [data], bn_mode)
    for style in STYLES:
        op = HessianOperator(model, loss_fn, data, dtype=torch.float64, hvp=style)
        assert _rel(op.gradient(), torch.func.grad(f)(theta)) < RTOL64
        assert abs(op.loss() - float(f(theta))) < 1e3 * EPS64


def test_to_scipy_eigsh_agrees():
    from scipy.sparse.linalg import eigsh

    model, loss_fn, data, bn_mode = make_case("mlp-tanh")
    H = dense_hessian(model, loss_fn, data, bn_mode)
    op = HessianOperator(model, loss_fn, data, dtype=torch.float64)
    vals = eigsh(op.to_scipy(), k=3, which="LA", tol=1e-12, return_eigenvectors=False)
    ref = torch.linalg.eigvalsh(H)[-3:]
    np.testing.assert_allclose(np.sort(vals), ref.numpy(), rtol=1e-9)


def test_user_errors_are_config_errors():
    model, loss_fn, data, _ = make_case("mlp-tanh")
    with pytest.raises(InvalidArgumentError, match="bn_mode"):
        HessianOperator(model, loss_fn, data, bn_mode="batch")
    with pytest.raises(InvalidArgumentError, match="ghost_batch_size"):
        HessianOperator(model, loss_fn, data, bn_mode="ghost")
    with pytest.raises(InvalidArgumentError, match="hvp"):
        HessianOperator(model, loss_fn, data, hvp="magic")
    with pytest.raises(InvalidArgumentError, match="block_products"):
        HessianOperator(model, loss_fn, data, block_products="fast")
    with pytest.raises(InvalidArgumentError, match="not a parameter name"):
        HessianOperator(model, loss_fn, data, params=["nope"])
    with pytest.raises(InvalidArgumentError, match="empty"):
        HessianOperator(model, loss_fn, [])
    with pytest.raises(InvalidArgumentError, match="unsupported data"):
        HessianOperator(model, loss_fn, 3)
    with pytest.raises(InvalidArgumentError, match="theta"):
        HessianOperator(model, loss_fn, data, theta=torch.zeros(3))
    op = HessianOperator(model, loss_fn, data)
    with pytest.raises(InvalidArgumentError, match=r"expected a tensor of shape \(\d+,\)"):
        op @ torch.zeros(3)
    with pytest.raises(InvalidArgumentError, match="torch tensor"):
        op.matvec([1.0, 2.0])
    with pytest.raises(InvalidArgumentError, match=r"\(\d+, m\)"):
        op.matmat(torch.zeros(3, 2))


def test_split_and_databundle_inputs():
    bundle = ss.load_dataset("synthetic", num_samples=40, num_test=4, probe_size=16, seed=0)
    torch.manual_seed(0)
    model = ss.build_model("mlp", bundle.input_shape, bundle.num_classes, widths=[4])
    op = HessianOperator(model, F.cross_entropy, bundle.probe, dtype=torch.float64)
    ref = HessianOperator(model, F.cross_entropy, bundle.probe.tensors(), dtype=torch.float64)
    v = torch.randn(op.shape[0], dtype=torch.float64)
    assert torch.equal(op @ v, ref @ v)
    x, y = make_data()
    assert x.shape[0] == y.shape[0]


@pytest.mark.parametrize("mode", ["batched", "loop"])
def test_block_products_match_the_dense_hessian_either_way(mode):
    # A block product is one is_grads_batched backward or a loop of single ones; both are right.
    model, loss_fn, data, bn_mode = make_case("cnn")
    H = dense_hessian(model, loss_fn, data, bn_mode)
    op = HessianOperator(
        model, loss_fn, data, bn_mode=bn_mode, dtype=torch.float64, block_products=mode
    )
    V = torch.randn(op.shape[0], 4, generator=torch.Generator().manual_seed(0), dtype=H.dtype)
    assert _rel(op.matmat(V), H @ V) < RTOL64
    assert op.info["block_products"] == mode
    if mode == "loop":
        assert "requested" in op.info["block_products_reason"]


def test_products_never_depend_on_timing_or_free_memory(monkeypatch):
    """Issue 11: the batched/loop choice was timed, so a resumed or busier process rounded
    differently. Now the same operator built under different clocks and memory budgets gives
    bitwise the same products, and op.info says what was chosen and why."""
    import time

    model, loss_fn, (x, y), bn_mode = make_case("cnn")
    batches = [(x[:5], y[:5]), (x[5:9], y[5:9]), (x[9:], y[9:])]
    V = torch.randn(
        sum(p.numel() for p in model.parameters()), 3, generator=torch.Generator().manual_seed(2)
    )
    v = V[:, 0].clone()

    def clock(step):
        t = [0.0]

        def perf_counter():
            t[0] += step  # a machine that is 1000x slower on the second build
            return t[0]

        return perf_counter

    results = []
    for step, budget in ((1e-6, None), (1e-3, None), (1e-6, 0), (1e-3, 1)):
        monkeypatch.setattr(time, "perf_counter", clock(step))
        op = HessianOperator(model, loss_fn, batches, bn_mode=bn_mode, memory_budget=budget)
        results.append((op.matmat(V), op @ v, op.matmat(V[:, :2]), op.info))
    ref = results[0]
    for other in results[1:]:
        for a, b in zip(ref[:3], other[:3], strict=True):
            assert torch.equal(a, b)
    for *_, info in results:
        assert info["block_products"] == "batched"
        assert "never by a timing" in info["block_products_reason"]
    assert results[0][3]["retained_batches"] == 3 and results[2][3]["retained_batches"] == 0
    # the double-backward style computes the same per-batch products: identical too
    op = HessianOperator(model, loss_fn, batches, bn_mode=bn_mode, hvp="double_backward")
    assert torch.equal(op.matmat(V), ref[0])


def test_a_model_without_batching_rules_loops_from_its_first_block(monkeypatch):
    from sgdscope.curvature import _hvp

    model, loss_fn, data, bn_mode = make_case("mlp-tanh")
    op = HessianOperator(model, loss_fn, data, dtype=torch.float64)
    real_grad = torch.autograd.grad

    def grad(*args, **kwargs):  # is_grads_batched warns, as a missing batching rule does
        if kwargs.get("is_grads_batched"):
            import warnings

            warnings.warn(
                "There is a performance drop because we have not yet implemented "
                "the batching rule for aten::foo",
                UserWarning,
                stacklevel=2,
            )
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(_hvp.torch.autograd, "grad", grad)
    V = torch.randn(op.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    first = op.matmat(V)
    assert op.info["block_products"] == "loop"
    assert "batching rule for aten::foo" in op.info["block_products_reason"]
    assert torch.equal(first, op.matmat(V))  # the first block was computed as a loop too
    H = dense_hessian(model, loss_fn, data, bn_mode)
    assert _rel(first, H @ V) < RTOL64
