"""Loss and accuracy by task (``sgdscope.losses``) as the new models use them."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sgdscope.losses import accuracy, loss_for_task


def test_classification_loss_is_mean_cross_entropy():
    out, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(loss_for_task("classification")(out, y), F.cross_entropy(out, y))


def test_language_model_loss_is_mean_over_tokens():
    out, y = torch.randn(2, 4, 6), torch.randint(0, 6, (2, 4))
    manual = torch.stack(
        [F.cross_entropy(out[i, t][None], y[i, t][None]) for i in range(2) for t in range(4)]
    ).mean()
    torch.testing.assert_close(loss_for_task("language_model")(out, y), manual)
    uniform = torch.zeros(3, 5, 7)
    val = loss_for_task("language_model")(uniform, torch.zeros(3, 5, dtype=torch.long))
    assert float(val) == pytest.approx(math.log(7))  # perplexity = vocabulary size


def test_accuracy_both_tasks_and_unknown_task():
    out = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    assert float(accuracy(out, torch.tensor([0, 1, 1]))) == pytest.approx(2 / 3)
    lm = torch.zeros(1, 2, 3)
    lm[0, 0, 2] = 1.0
    lm[0, 1, 1] = 1.0
    assert float(accuracy(lm, torch.tensor([[2, 0]]))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown task"):
        loss_for_task("regression")
