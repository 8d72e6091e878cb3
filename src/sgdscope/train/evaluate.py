"""Evaluation of loss and accuracy over a whole split (eval mode, no autograd)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._state import preserved_state


@torch.inference_mode()
def _eval_pass(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    split,
    batch_size: int,
    accuracy_fn: Callable[[torch.Tensor, torch.Tensor], float] | None,
) -> tuple[float, float]:
    total_loss = torch.zeros((), dtype=torch.float64, device=split.device)
    total_correct = 0.0
    total = 0
    for x, y in split.batches(batch_size):
        out = model(x)
        n = y.numel()
        total_loss += loss_fn(out, y).double() * n
        if accuracy_fn is not None:
            total_correct += float(accuracy_fn(out, y)) * n
        total += n
    loss = float(total_loss / total)
    acc = total_correct / total if accuracy_fn is not None else float("nan")
    return loss, acc


def evaluate(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    split,
    *,
    batch_size: int = 4096,
    accuracy_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``split`` in eval mode (running BN statistics).

    The model's mode, buffers and the RNG are left as they were.
    """
    with preserved_state(model):
        model.eval()
        return _eval_pass(model, loss_fn, split, batch_size, accuracy_fn)
