"""Dataset splits and the bundle of train / val / test / probe sets.

Small datasets live as tensors on the device and are batched by index (no DataLoader overhead).
Large ones can subclass :class:`Split` and override ``batches`` (e.g. decode on the fly); every
consumer only calls ``len()``, ``batches()``, ``to()`` and ``index()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch


class Split:
    """A split held as tensors ``x`` (N × input shape) and ``y`` (N,), batched by index.

    Args:
        x: inputs, float tensor of shape (N, *input_shape).
        y: integer class labels (N,) or token targets (N, T).
        name: "train", "val", "test" or "probe".
        transform: optional per-batch function ``(x, generator) -> x`` (augmentation); applied in
            ``batches(..., augment=True)`` only.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        name: str = "train",
        transform: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        self.x = x
        self.y = y
        self.name = name
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: torch.device | str) -> Split:
        out = Split(self.x.to(device), self.y.to(device), self.name, self.transform)
        return out

    def index(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch at integer indices ``idx``."""
        idx = idx.to(self.x.device)
        return self.x[idx], self.y[idx]

    def subset(self, idx: torch.Tensor, name: str | None = None) -> Split:
        x, y = self.index(idx)
        return Split(x, y, name or self.name, self.transform)

    def batches(
        self,
        batch_size: int | None = None,
        *,
        order: torch.Tensor | None = None,
        augment: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` batches in ``order`` (default: sequential); the last may be smaller."""
        n = len(self)
        bs = n if batch_size is None else int(batch_size)
        for start in range(0, n, bs):
            if order is None:
                xb, yb = self.x[start : start + bs], self.y[start : start + bs]
            else:
                xb, yb = self.index(order[start : start + bs])
            if augment and self.transform is not None:
                xb = self.transform(xb, generator)
            yield xb, yb

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y

    def __repr__(self) -> str:
        return f"Split({self.name!r}, n={len(self)}, x={tuple(self.x.shape)}, device={self.device})"


@dataclass
class DataBundle:
    """The splits of one dataset, as a run uses them.

    ``probe`` is a fixed, seeded subset of ``train`` (nested in it, never in val/test); ``val`` is
    carved out of the original training data and is disjoint from ``train``.

    Attributes:
        name: registry name of the dataset.
        train, val, test, probe: the splits (``val`` / ``test`` may be None).
        input_shape: shape of one input, e.g. (64,) or (1, 8, 8).
        num_classes: number of classes (vocabulary size for language models).
        task: "classification" or "language_model".
        info: free-form facts (source, standardisation statistics, indices).
    """

    name: str
    train: Split
    val: Split | None
    test: Split | None
    probe: Split
    input_shape: tuple[int, ...]
    num_classes: int
    task: str = "classification"
    info: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> DataBundle:
        def mv(s: Split | None) -> Split | None:
            return None if s is None else s.to(device)

        return DataBundle(
            self.name,
            self.train.to(device),
            mv(self.val),
            mv(self.test),
            self.probe.to(device),
            self.input_shape,
            self.num_classes,
            self.task,
            dict(self.info),
        )

    def split(self, name: str) -> Split:
        s = getattr(self, name, None)
        if not isinstance(s, Split):
            raise KeyError(f"dataset {self.name!r} has no {name!r} split")
        return s
