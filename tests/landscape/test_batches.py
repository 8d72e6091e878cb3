"""loss_at / interpolate on any batch structure and loss reduction (issue 15).

The reference loss over the data never uses the library's weighting: per-term losses
(reduction="none") summed over the data set, divided by the number of terms for "mean".
Tolerance 1e-12 relative: float64 sums of ~100 terms.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import sgdscope as ss
from sgdscope.errors import InvalidArgumentError
from sgdscope.landscape import interpolate, loss_at
from sgdscope.probes import flat_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "curvature"))
from curvature_cases import LOSS_CASES, DictNet, TwoInputNet, loss_case


def _reference(model, batches, per_term, reduction, call=None):
    call = call or (lambda m, inputs: m(inputs))
    with torch.no_grad():
        parts = [per_term(call(model, x), y) for x, y in batches]
    total = sum(float(t.sum()) for t, _ in parts)
    return total / sum(c for _, c in parts) if reduction == "mean" else total


def _thetas(model, k=3):
    g = torch.Generator().manual_seed(4)
    theta = flat_params(model)
    return torch.stack(
        [
            theta + 0.3 * i * torch.randn(theta.shape, generator=g, dtype=theta.dtype)
            for i in range(k)
        ]
    )


def _at(model, theta):
    torch.nn.utils.vector_to_parameters(theta, model.parameters())
    return model


@pytest.mark.parametrize("kind", ["module", "functional"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_over_unequal_batches_follows_the_reduction(case, reduction, kind):
    model, batches, per_term, module_loss, functional_loss = loss_case(case)
    loss_fn = module_loss(reduction) if kind == "module" else functional_loss(reduction)
    thetas = _thetas(model)
    got = loss_at(model, loss_fn, batches, thetas)
    ref = [_reference(_at(_copy(model), t), batches, per_term, reduction) for t in thetas]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    # one batch cut into chunks by batch_size: the same total / mean
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    chunked = loss_at(model, loss_fn, (x, y), thetas, batch_size=6)
    np.testing.assert_allclose(chunked.numpy(), ref, rtol=1e-12)


def _copy(model):
    import copy

    return copy.deepcopy(model)


def test_dict_and_tuple_inputs_with_accuracy():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(30, 4, generator=g).double(), torch.randn(30, 3, generator=g).double()
    y = torch.randint(0, 3, (30,), generator=g)
    dict_model, tuple_model = DictNet().double(), TwoInputNet().double()
    tuple_model.load_state_dict(dict_model.state_dict())
    want_logits = tuple_model(a, b)
    want_loss = F.cross_entropy(want_logits, y).item()
    want_acc = (want_logits.argmax(1) == y).double().mean().item()
    theta = flat_params(dict_model)
    # the case: a dict-output model with with_accuracy=True (a raw AttributeError before)
    for model, data in (
        (dict_model, ({"pixels": a, "extra": b}, y)),
        (
            dict_model,
            [
                ({"pixels": a[:11], "extra": b[:11]}, y[:11]),
                ({"pixels": a[11:], "extra": b[11:]}, y[11:]),
            ],
        ),
        (tuple_model, ((a, b), y)),
        (tuple_model, [((a[:20], b[:20]), y[:20]), ((a[20:], b[20:]), y[20:])]),
    ):
        loss, acc = loss_at(model, F.cross_entropy, data, theta, with_accuracy=True)
        assert loss.item() == pytest.approx(want_loss, rel=1e-12)
        assert acc.item() == pytest.approx(want_acc, abs=1e-15)
    curve = interpolate(
        dict_model,
        F.cross_entropy,
        ({"pixels": a, "extra": b}, y),
        theta,
        theta * 0.5,
        num_points=3,
        with_accuracy=True,
    )
    assert curve.losses[0] == pytest.approx(want_loss, rel=1e-12)
    assert curve.accuracies[0] == pytest.approx(want_acc, abs=1e-15)


def test_a_dataloader_of_dicts_and_a_closure():
    model, batches, per_term, _, _ = loss_case("mse-2d")
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    rows = [{"x": x[i], "y": y[i]} for i in range(len(y))]
    loader = DataLoader(rows, batch_size=8)  # batches of 8, 8, 4: unequal
    closure = ss.LossClosure(
        lambda m, b: F.mse_loss(m(b["x"]), b["y"]), batch_size_fn=lambda b: b["y"].numel()
    )
    theta = flat_params(model)
    ref = _reference(model, batches, per_term, "mean")
    assert loss_at(model, closure, loader, theta).item() == pytest.approx(ref, rel=1e-12)
    with pytest.raises(InvalidArgumentError, match="LossClosure gives only a loss"):
        loss_at(model, closure, loader, theta, with_accuracy=True)
    summed = ss.LossClosure(
        lambda m, b: F.mse_loss(m(b["x"]), b["y"], reduction="sum"), reduction="sum"
    )
    ref_sum = _reference(model, batches, per_term, "sum")
    assert loss_at(model, summed, loader, theta).item() == pytest.approx(ref_sum, rel=1e-12)


def test_refusals_on_the_walk():
    model, batches, _, module_loss, _ = loss_case("ce")
    theta = flat_params(model)
    with pytest.raises(InvalidArgumentError, match="neither fits"):
        interpolate(
            model,
            lambda o, t: F.cross_entropy(o, t) + o.mean() ** 2,
            batches,
            theta,
            theta,
            num_points=2,
        )
    with pytest.raises(InvalidArgumentError, match="reduction='none'"):
        loss_at(model, nn.CrossEntropyLoss(reduction="none"), batches, theta)
    with pytest.raises(InvalidArgumentError, match=r"received Tensor.*pass the tuple"):
        loss_at(model, module_loss("mean"), list(batches[0]), theta)
