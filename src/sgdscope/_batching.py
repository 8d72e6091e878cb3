"""Turn any supported data argument into an iterable of ``(x, y)`` batches.

Supported forms: an ``(x, y)`` pair of tensors, a list/tuple of such pairs, any iterable of pairs
(a ``torch.utils.data.DataLoader``), or an object with a ``batches(batch_size)`` method (an
sgdscope dataset split). Means over the whole data are taken as batch-size-weighted sums, so the
result does not depend on how the data is split into batches (except BatchNorm in train mode).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

Batch = tuple[Any, torch.Tensor]


def is_pair(data: Any) -> bool:
    return (
        isinstance(data, tuple)
        and len(data) == 2
        and isinstance(data[0], torch.Tensor)
        and isinstance(data[1], torch.Tensor)
    )


def iter_batches(data: Any, batch_size: int | None = None) -> Iterator[Batch]:
    """Yield ``(x, y)`` batches from ``data``.

    Args:
        data: a pair, a list of pairs, an iterable of pairs, or an object with ``batches()``.
        batch_size: split a single pair / split object into chunks of this size (None: one batch).
    """
    if is_pair(data):
        x, y = data
        n = len(y)
        bs = n if batch_size is None else batch_size
        for start in range(0, n, bs):
            yield x[start : start + bs], y[start : start + bs]
        return
    if hasattr(data, "batches") and callable(data.batches):
        yield from data.batches(batch_size)
        return
    if isinstance(data, Iterable):
        for item in data:
            if not (isinstance(item, (tuple, list)) and len(item) >= 2):
                raise TypeError(
                    f"expected batches of (x, y), got an item of type {type(item).__name__}; "
                    "pass an (x, y) pair, a list of (x, y) pairs or a DataLoader yielding them"
                )
            yield item[0], item[1]
        return
    raise TypeError(
        f"unsupported data of type {type(data).__name__}: pass an (x, y) pair of tensors, a list "
        "of (x, y) pairs, a DataLoader, or an sgdscope dataset split"
    )


def batch_len(y: torch.Tensor) -> int:
    """Number of loss terms a batch's mean loss averages over (tokens for sequence targets)."""
    return int(y.numel())
