"""HessianOperator on any batch structure and loss reduction, against dense float64 Hessians.

Issue 15: every reduction="sum" loss gave a silently wrong operator (0.38-0.51 relative error
with unequal batches, exactly H_sum / 2 with two equal ones), and dict / tuple inputs were
refused. Tolerance: float64 products are sums of ~1e3 rounded terms (see test_operator.RTOL64).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from curvature_cases import (
    EPS64,
    LOSS_CASES,
    DictNet,
    TwoInputNet,
    _readme_block,
    loss_case,
    reference_hessian,
)
from torch import nn
from torch.utils.data import DataLoader

import sgdscope as ss
from sgdscope.curvature import HessianOperator, lanczos
from sgdscope.errors import InvalidArgumentError

RTOL64 = 1e6 * EPS64


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _block(n, m=3, seed=0):
    return torch.randn(n, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("kind", ["module", "functional"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", LOSS_CASES)
def test_reductions_over_unequal_batches_match_the_dense_hessian(case, reduction, kind):
    model, batches, per_term, module_loss, functional_loss = loss_case(case)
    loss_fn = module_loss(reduction) if kind == "module" else functional_loss(reduction)
    H = reference_hessian(model, batches, per_term, reduction)
    op = HessianOperator(model, loss_fn, batches)
    V = _block(op.shape[0])
    assert _rel(op.matmat(V), H @ V) < RTOL64
    assert op.reduction == reduction
    source = op.info["reduction_source"]
    assert source == ("loss_fn.reduction" if kind == "module" else "checked on halves of a batch")
    # the loss and gradient follow the same reduction
    assert op.loss() == pytest.approx(_reference_loss(model, batches, per_term, reduction), 1e-12)


def _reference_loss(model, batches, per_term, reduction):
    with torch.no_grad():
        parts = [per_term(model(x), y) for x, y in batches]
    total = sum(float(t.sum()) for t, _ in parts)
    return total / sum(c for _, c in parts) if reduction == "mean" else total


def test_two_equal_batches_of_a_sum_loss_are_not_halved():
    """The issue's signature: two equal batches gave exactly H_sum / 2."""
    model, batches, per_term, module_loss, _ = loss_case("ce")
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    halves = [(x[:10], y[:10]), (x[10:], y[10:])]
    H = reference_hessian(model, halves, per_term, "sum")
    op = HessianOperator(model, module_loss("sum"), halves)
    V = _block(op.shape[0])
    assert _rel(op.matmat(V), H @ V) < RTOL64
    whole = HessianOperator(model, module_loss("sum"), (x, y))  # one batch: the same matrix
    assert _rel(whole.matmat(V), H @ V) < RTOL64


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_tuple_inputs(reduction):
    torch.manual_seed(0)
    model = TwoInputNet().double()
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(20, 4, generator=g).double(), torch.randn(20, 3, generator=g).double()
    y = torch.randint(0, 3, (20,), generator=g)

    def per_term(o, t):
        return F.cross_entropy(o, t, reduction="none"), t.numel()

    batches = [((a[:12], b[:12]), y[:12]), ((a[12:], b[12:]), y[12:])]
    H = reference_hessian(model, batches, per_term, reduction, call=lambda m, inp: m(*inp))
    V = _block(H.shape[0])
    loss = nn.CrossEntropyLoss(reduction=reduction)
    assert _rel(HessianOperator(model, loss, batches).matmat(V), H @ V) < RTOL64
    # one batch given as a tuple ((a, b), y): one batch, not two
    one = HessianOperator(model, loss, ((a, b), y))
    assert one.num_batches == 1
    H1 = reference_hessian(model, [((a, b), y)], per_term, reduction, call=lambda m, i: m(*i))
    assert _rel(one.matmat(V), H1 @ V) < RTOL64


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_dict_inputs_and_dict_outputs(reduction):
    torch.manual_seed(0)
    model = DictNet().double()
    g = torch.Generator().manual_seed(1)
    px, ex = torch.randn(21, 4, generator=g).double(), torch.randn(21, 3, generator=g).double()
    y = torch.randint(0, 3, (21,), generator=g)

    def per_term(o, t):
        return F.cross_entropy(o, t, reduction="none"), t.numel()

    def call(m, inputs):
        return m(**inputs)["logits"]

    batches = [({"pixels": px[s:e], "extra": ex[s:e]}, y[s:e]) for s, e in ((0, 13), (13, 21))]
    H = reference_hessian(model, batches, per_term, reduction, call=call)
    V = _block(H.shape[0])
    loss = lambda o, t: F.cross_entropy(o, t, reduction=reduction)  # noqa: E731
    assert _rel(HessianOperator(model, loss, batches).matmat(V), H @ V) < RTOL64
    # the case: a single ({"pixels": x}, y) pair is one batch (it was read as a list)
    single = ({"pixels": px, "extra": ex}, y)
    op = HessianOperator(model, loss, single)
    assert op.num_batches == 1
    Hs = reference_hessian(model, [single], per_term, reduction, call=call)
    assert _rel(op.matmat(V), Hs @ V) < RTOL64
    # a DataLoader of dict inputs yields [dict, y] lists: each one batch
    data = [({"pixels": px[i], "extra": ex[i]}, y[i]) for i in range(21)]
    loader = DataLoader(data, batch_size=8)
    op_l = HessianOperator(model, loss, loader)
    assert op_l.num_batches == 3
    H_l = reference_hessian(model, [(b[0], b[1]) for b in loader], per_term, reduction, call=call)
    assert _rel(op_l.matmat(V), H_l @ V) < RTOL64
    # and a batch_size cuts a single dict batch into chunks
    assert HessianOperator(model, loss, single, batch_size=8).num_batches == 3


def test_closure_with_batch_size_fn():
    model, batches, per_term, _, _ = loss_case("mse-2d")
    dict_batches = [{"x": x, "y": y} for x, y in batches]

    def fn(m, batch):
        return F.mse_loss(m(batch["x"]), batch["y"])

    H = reference_hessian(model, batches, per_term, "mean")
    V = _block(H.shape[0])
    with pytest.raises(InvalidArgumentError, match="batch_size_fn"):
        HessianOperator(model, ss.LossClosure(fn), dict_batches)
    op = HessianOperator(
        model, ss.LossClosure(fn), dict_batches, batch_size_fn=lambda b: b["y"].numel()
    )
    assert _rel(op.matmat(V), H @ V) < RTOL64
    # declared on the closure itself, and the sum
    op2 = HessianOperator(
        model,
        ss.LossClosure(
            lambda m, b: F.mse_loss(m(b["x"]), b["y"], reduction="sum"), reduction="sum"
        ),
        dict_batches,
    )
    H2 = reference_hessian(model, batches, per_term, "sum")
    assert _rel(op2.matmat(V), H2 @ V) < RTOL64
    assert op2.info["reduction_source"].startswith("loss_fn.reduction")


def test_closure_declared_wrong_is_refused():
    model, batches, _, _, _ = loss_case("ce")
    dict_batches = [{"x": x, "y": y} for x, y in batches]
    summed = ss.LossClosure(lambda m, b: F.cross_entropy(m(b["x"]), b["y"], reduction="sum"))
    with pytest.raises(InvalidArgumentError, match=r"declared reduction='mean'.*behaves as a sum"):
        HessianOperator(model, summed, dict_batches, batch_size_fn=lambda b: len(b["y"]))


def test_class_weighted_mean_needs_batch_size_fn():
    model, batches, _, _, _ = loss_case("ce")
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    loss = nn.CrossEntropyLoss(weight=w)
    with pytest.raises(InvalidArgumentError, match=r"class-weighted mean.*batch_size_fn"):
        HessianOperator(model, loss, batches)

    def per_term(o, t):  # the weighted mean over the data: Σ w_y l / Σ w_y
        return F.cross_entropy(o, t, weight=w, reduction="none"), float(w[t].sum())

    H = reference_hessian(model, batches, per_term, "mean")
    op = HessianOperator(model, loss, batches, batch_size_fn=lambda b: float(w[b[1]].sum()))
    V = _block(H.shape[0])
    assert _rel(op.matmat(V), H @ V) < RTOL64


@pytest.mark.parametrize(
    ("loss_fn", "match"),
    [
        (nn.CrossEntropyLoss(reduction="none"), "reduction='none'"),
        (nn.KLDivLoss(reduction="batchmean"), "reduction='batchmean'"),
        # a batch-level term: neither the sum nor the mean of its halves
        (lambda o, t: F.cross_entropy(o, t) + o.mean() ** 2, "neither fits"),
    ],
    ids=["none", "batchmean", "not-separable"],
)
def test_uninterpretable_reductions_are_refused(loss_fn, match):
    model, batches, _, _, _ = loss_case("ce")
    with pytest.raises(InvalidArgumentError, match=match):
        HessianOperator(model, loss_fn, batches)
    # one batch needs no reduction: the Hessian of that batch's loss
    if callable(loss_fn) and not isinstance(loss_fn, nn.Module):
        assert HessianOperator(model, loss_fn, batches[0]).reduction is None


def test_declared_reduction_for_a_function():
    model, batches, per_term, _, functional_loss = loss_case("bce-logits")
    op = HessianOperator(model, functional_loss("sum"), batches, reduction="sum")
    assert op.info["reduction_source"] == "declared, checked on halves of a batch"
    H = reference_hessian(model, batches, per_term, "sum")
    V = _block(H.shape[0])
    assert _rel(op.matmat(V), H @ V) < RTOL64
    with pytest.raises(InvalidArgumentError, match="behaves as a sum"):
        HessianOperator(model, functional_loss("sum"), batches, reduction="mean")
    with pytest.raises(InvalidArgumentError, match="contradicts"):
        HessianOperator(model, nn.BCEWithLogitsLoss(), batches, reduction="sum")


def test_structure_errors_say_what_was_expected_and_the_fix():
    model, batches, _, module_loss, _ = loss_case("ce")
    loss = module_loss("mean")
    (x, y) = batches[0]
    with pytest.raises(InvalidArgumentError, match=r"a tuple .* is one batch.*list"):
        HessianOperator(model, loss, tuple(batches))  # a tuple of batches is one batch
    with pytest.raises(
        InvalidArgumentError, match=r"received Tensor.*for one batch \[x, y\] pass the tuple"
    ):
        HessianOperator(model, loss, [x, y])  # a list is several batches: x alone has no target
    with pytest.raises(
        InvalidArgumentError, match=r"expected \(inputs, target\).*\(\(x1, x2\), y\)"
    ):
        HessianOperator(model, loss, (x, x, y))
    with pytest.raises(InvalidArgumentError, match=r"loss_fn=None.*dict"):
        HessianOperator(model, None, (x, y))
    with pytest.raises(InvalidArgumentError, match="without a 'labels' tensor"):
        HessianOperator(model, loss, {"input": x})
    with pytest.raises(InvalidArgumentError, match="LossClosure"):
        HessianOperator(model, 3, (x, y))
    with pytest.raises(InvalidArgumentError, match=r"Tensor \(a tensor alone has no target"):
        HessianOperator(model, loss, x)


def test_param_filter_selects_a_block_by_name():
    model, batches, per_term, module_loss, _ = loss_case("ce")
    H = reference_hessian(model, batches, per_term, "mean")
    op = HessianOperator(model, module_loss("mean"), batches, param_filter="2.*")
    assert op.param_names == ["2.weight", "2.bias"]
    lo = sum(p.numel() for p in list(model.parameters())[:2])
    V = _block(op.shape[0])
    assert _rel(op.matmat(V), H[lo:, lo:] @ V) < RTOL64
    same = HessianOperator(model, module_loss("mean"), batches, param_filter=lambda n: n[0] == "2")
    assert torch.equal(same.matmat(V), op.matmat(V))
    top = lanczos(op, 2, tol=1e-10).eigenvalues
    ref = torch.linalg.eigvalsh(H[lo:, lo:]).flip(0)[:2]
    torch.testing.assert_close(top, ref, rtol=1e-8, atol=0)
    with pytest.raises(InvalidArgumentError, match=r"matches no trainable parameter.*'\*h\.0"):
        HessianOperator(model, module_loss("mean"), batches, param_filter="h.0.*")
    with pytest.raises(InvalidArgumentError, match="one of them"):
        HessianOperator(model, module_loss("mean"), batches, params=["0.weight"], param_filter="*")


def test_embedding_padding_rows_are_frozen():
    """torch gives an embedding's padding row no gradient although the forward uses it, so the
    derivative of the gradient is not symmetric there: double backward and forward-over-reverse
    disagree (by 7% here). The operator is H over the coordinates SGD moves: padding rows frozen."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Embedding(6, 3, padding_idx=0), nn.Tanh(), nn.Flatten(), nn.Linear(12, 3)
    ).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(0, 6, (9, 4), generator=g), torch.randint(0, 3, (9,), generator=g)
    x[0, 0] = 0  # the padding token is used

    def per_term(o, t):
        return F.cross_entropy(o, t, reduction="none"), t.numel()

    H = reference_hessian(model, [(x, y)], per_term, "mean")
    assert float((H - H.T).abs().max()) > 1e-3  # the unfrozen "Hessian" is not symmetric
    H[:3], H[:, :3] = 0, 0  # padding row 0 of the 6 x 3 embedding: flat entries 0..2
    V = _block(H.shape[0])
    for style in ("reuse", "forward_over_reverse"):
        op = HessianOperator(model, F.cross_entropy, (x, y), hvp=style)
        assert _rel(op.matmat(V), H @ V) < RTOL64 and _rel(op @ V[:, 0], H @ V[:, 0]) < RTOL64
    assert op.info["frozen_rows"] == ["0.weight[0]"]


def test_readme_example_runs(capsys):
    ns: dict = {}
    torch.manual_seed(0)
    exec(compile(_readme_block("class Net(torch.nn.Module)"), "README.md", "exec"), ns)
    assert capsys.readouterr().out.split() == [
        "mean",
        "sum",
        "checked",
        "on",
        "halves",
        "of",
        "a",
        "batch",
    ]
    assert ns["top"].converged and 0.0 <= float(ns["acc"]) <= 1.0
    # the closure over 4 equal batches and the tuple-batch operator are the same matrix
    ref = HessianOperator(ns["model"], F.cross_entropy, ns["one"])
    v = torch.randn(ref.shape[0], generator=torch.Generator().manual_seed(0))
    assert _rel(ns["op"] @ v, ref @ v) < 1e3 * torch.finfo(torch.float32).eps


def test_measurements_switch_off_every_train_mode_behaviour_but_batchnorm():
    """Dropout applied through a module's own flag (an LSTM's between layers, attention dropout
    in Hugging Face models) is off too: products are deterministic and equal eval mode's."""

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4, num_layers=2, dropout=0.5, batch_first=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    model = Seq().double().train()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 5, 3, generator=g).double(), torch.randint(0, 2, (6,), generator=g)
    V = _block(sum(p.numel() for p in model.parameters()))
    op = HessianOperator(model, F.cross_entropy, (x, y), hvp="double_backward")
    first = op.matmat(V)
    assert torch.equal(first, op.matmat(V))
    model.eval()
    ref = HessianOperator(model, F.cross_entropy, (x, y), hvp="double_backward").matmat(V)
    assert model.training is False and _rel(first, ref) < RTOL64
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    with torch.no_grad():
        want = float(F.cross_entropy(model.eval()(x), y))
    model.train()
    assert float(ss.loss_at(model, F.cross_entropy, (x, y), theta)) == want
