"""Loss and accuracy by task: classification and language modelling (per-token).

Each loss declares ``reduction = "mean"`` (so curvature and landscape combine batches without a
check) and, where the mean is not over the target's elements, ``num_terms(target)``: the number
of terms it averages over.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy; (N, C) logits with (N,) labels, or (N, T, V) with (N, T) tokens."""
    if output.dim() == target.dim() + 1 and output.dim() > 2:
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
    return F.cross_entropy(output, target)


cross_entropy.reduction = "mean"  # type: ignore[attr-defined]
cross_entropy._sgdscope_loss = True  # type: ignore[attr-defined]


def next_token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of a causal language model, Hugging Face's convention.

    ``logits`` (N, T, V) predict the token after each position; ``labels`` (N, T) are the input
    ids themselves, with -100 where no loss is wanted (padding). Position t is scored against
    label t + 1. Unlike a Hugging Face model's own ``.loss`` (upcast to float32), it is computed
    in the logits' dtype, so float64 references stay float64.
    """
    v = logits.shape[-1]
    return F.cross_entropy(
        logits[..., :-1, :].reshape(-1, v), labels[..., 1:].reshape(-1), ignore_index=-100
    )


def _next_token_terms(labels: torch.Tensor) -> torch.Tensor:
    return (labels[..., 1:] != -100).sum()


next_token_cross_entropy.reduction = "mean"  # type: ignore[attr-defined]
next_token_cross_entropy.num_terms = _next_token_terms  # type: ignore[attr-defined]
next_token_cross_entropy._sgdscope_loss = True  # type: ignore[attr-defined]


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of correct arg-max predictions (per token for sequences), a 0-d tensor."""
    return (output.argmax(dim=-1) == target).to(torch.float64).mean()


def loss_for_task(task: str) -> LossFn:
    """The mean loss of a task: cross-entropy for ``classification`` and ``language_model``."""
    if task in ("classification", "language_model"):
        return cross_entropy
    raise ValueError(f"unknown task {task!r}: expected 'classification' or 'language_model'")
