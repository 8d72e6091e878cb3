"""Loss and accuracy by task: classification and language modelling (per-token)."""

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


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of correct arg-max predictions (per token for sequences), a 0-d tensor."""
    return (output.argmax(dim=-1) == target).to(torch.float64).mean()


def loss_for_task(task: str) -> LossFn:
    """The mean loss of a task: cross-entropy for ``classification`` and ``language_model``."""
    if task in ("classification", "language_model"):
        return cross_entropy
    raise ValueError(f"unknown task {task!r}: expected 'classification' or 'language_model'")
