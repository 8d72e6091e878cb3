"""Evaluation of loss and accuracy over a whole split (eval mode, no autograd)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._state import preserved_state


@torch.inference_mode()
def eval_sums(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    split,
    batch_size: int,
    accuracy_fn: Callable[[torch.Tensor, torch.Tensor], float] | None,
) -> torch.Tensor:
    """float64 ``[Σ loss·n, Σ accuracy·n, Σ n]`` over the batches of ``split`` (n: a batch's
    target elements) in the model's current mode; the sums of several shards add up."""
    total_loss = torch.zeros((), dtype=torch.float64, device=split.device)
    total_correct = 0.0
    total = 0
    for x, y in split.batches(batch_size):
        if len(y) == 0:
            continue
        out = model(x)
        n = y.numel()
        total_loss += loss_fn(out, y).double() * n
        if accuracy_fn is not None:
            total_correct += float(accuracy_fn(out, y)) * n
        total += n
    return torch.stack(
        [total_loss.cpu(), torch.tensor(total_correct, dtype=torch.float64),
         torch.tensor(float(total), dtype=torch.float64)]
    )  # fmt: skip


def means(sums: torch.Tensor, with_accuracy: bool) -> tuple[float, float]:
    """Mean loss and accuracy from :func:`eval_sums` (added over shards)."""
    loss = float(sums[0] / sums[2])
    acc = float(sums[1] / sums[2]) if with_accuracy else float("nan")
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
        return means(
            eval_sums(model, loss_fn, split, batch_size, accuracy_fn), accuracy_fn is not None
        )
