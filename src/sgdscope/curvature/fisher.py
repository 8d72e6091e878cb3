"""The empirical Fisher F = Σ_i w_i g_i g_iᵀ of a model's loss over a dataset, as an operator.

g_i = ∇ℓ_i(θ) is the gradient of the loss of example (row) i alone, and w_i its weight in the loss
over the data: for a mean, w_i = w_b · n_i / n_b (w_b = n_b / Σn the batch's weight, n_i the loss
terms of row i; 1/N for classification), for a sum w_i = 1 (curvlinops' convention). A product is
F v = Σ_i w_i g_i (g_iᵀ v): per-example gradients come from ``torch.func.vmap`` of
``torch.func.grad`` over the rows of each batch (kept within the memory budget, else recomputed
at each product). BatchNorm in ``train`` / ``ghost`` mode has no per-example loss and is refused.

This is the *empirical* Fisher (observed labels), not the Fisher of the model's predictive
distribution; Kunstner, Hennig & Balles 2019 discuss the difference.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._batching import _map, num_rows, resolve_reduction, slice_batch
from .._state import has_batchnorm
from ..errors import InvalidArgumentError
from ._hvp import Batch, Pieces, _Engine, _first_line, _LossOfBatch, eval_loss
from ._hvp import _reduce as _reduce_parts
from .operator import HessianOperator

__all__ = ["EmpiricalFisherOperator"]


class _FisherEngine(_Engine):
    style = "empirical_fisher"

    def __init__(
        self,
        fn: _LossOfBatch,
        batches: list[Batch],
        values: Pieces,
        objective: Any,
        budget: int,
    ) -> None:
        super().__init__(fn, batches, values)
        self.objective = objective
        self.budget = int(budget)
        self.reduction: str | None = None  # set by the operator before the first product
        self._kept: dict[int, tuple[Pieces, torch.Tensor]] = {}
        self._kept_bytes = 0
        self._vmap_ok = True

    def _row_weights(self, batch: Any, w: float, rows: int) -> torch.Tensor:
        dev = self.values[0].device
        if self.reduction == "sum":
            return torch.full((rows,), float(w), dtype=torch.float64, device=dev)
        counts = []
        for i in range(rows):
            n = self.objective.count(slice_batch(batch, i, i + 1, rows))
            counts.append(1.0 if n is None else float(n))
        c = torch.tensor(counts, dtype=torch.float64, device=dev)
        total = c.sum()
        if total <= 0:
            raise InvalidArgumentError("a batch has no loss terms (every target ignored)")
        return c / total * float(w)

    def _per_example(self, index: int) -> tuple[Pieces, torch.Tensor]:
        kept = self._kept.get(index)
        if kept is not None:
            return kept
        batch, w = self.batches[index]
        rows = num_rows(batch)
        if rows is None:
            raise InvalidArgumentError(
                "the empirical Fisher needs per-example losses: a batch without a batch "
                "dimension cannot be split into examples"
            )
        grads = self._grads(batch, rows)
        weights = self._row_weights(batch, w, rows)
        item = ([g.detach() for g in grads], weights)
        size = sum(g.numel() * g.element_size() for g in item[0])
        if self._kept_bytes + size <= self.budget:
            self._kept[index] = item
            self._kept_bytes += size
        return item

    def _grads(self, batch: Any, rows: int) -> Pieces:
        """∇ℓ_i for every row i: a list over parameters of (rows, *shape) tensors."""
        leaves = tuple(self.values)

        def loss_row(params: tuple[torch.Tensor, ...], row: Any) -> torch.Tensor:
            return self.fn(params, _map(row, lambda t: t.unsqueeze(0)))

        grad_fn = torch.func.grad(loss_row)
        if self._vmap_ok:
            in_dims = _map(batch, lambda t: 0 if t.dim() >= 1 and t.shape[0] == rows else None)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    res = torch.func.vmap(grad_fn, in_dims=(None, in_dims), randomness="error")(
                        leaves, batch
                    )
                if not caught:
                    return list(res)
                self.block_reason = f"per-example loop: vmap warned ({_first_line(caught[0])})"
            except (RuntimeError, NotImplementedError, ValueError) as exc:
                self.block_reason = f"per-example loop: vmap failed ({_first_line(exc)})"
            self._vmap_ok = False
        one_row = torch.func.grad(lambda params, row: self.fn(params, row))
        cols = [one_row(leaves, slice_batch(batch, i, i + 1, rows)) for i in range(rows)]
        return [torch.stack([c[p] for c in cols]) for p in range(len(leaves))]

    def hvp(self, V: Pieces) -> Pieces:
        parts = []
        for i in range(len(self.batches)):
            grads, weights = self._per_example(i)
            # coef[r, j] = g_rᵀ v_j, accumulated in float64
            coef = sum(
                g.reshape(g.shape[0], -1).double() @ v.reshape(v.shape[0], -1).double().T
                for g, v in zip(grads, V, strict=True)
            )
            coef = coef * weights.unsqueeze(1)
            parts.append(
                [
                    (coef.T @ g.reshape(g.shape[0], -1).double()).reshape(v.shape).to(v.dtype)
                    for g, v in zip(grads, V, strict=True)
                ]
            )
        return _reduce_parts(parts, V)

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "kept_batches": len(self._kept),
            "kept_bytes": self._kept_bytes,
            "memory_budget": self.budget,
            "reduction_over_examples": self.reduction,
        }

    def release(self) -> None:
        self._kept, self._kept_bytes = {}, 0


class EmpiricalFisherOperator(HessianOperator):
    """The empirical Fisher F = Σ_i w_i ∇ℓ_i ∇ℓ_iᵀ over the examples of ``data``, as an operator.

    Data, reduction and weights, ``dtype``, ``theta``, ``params`` / ``param_filter`` blocks,
    ``batch_size`` and ``memory_budget`` (here: the kept per-example gradients, rows × n numbers
    per batch) are those of :class:`~sgdscope.curvature.HessianOperator`; ``loss_fn`` may be any
    objective it accepts (a :class:`~sgdscope.LossClosure` too), called on one-row batches.
    ``bn_mode`` must be ``"eval"`` for a model with BatchNorm (a one-row batch has no batch
    statistics).

    Example:
        >>> F = EmpiricalFisherOperator(model, torch.nn.functional.cross_entropy, (x, y),
        ...                             bn_mode="eval")
        >>> hutchinson_trace(F, 50).estimate   # ≈ (1/N) Σ ‖∇ℓ_i‖²
    """

    def __init__(self, model: nn.Module, loss_fn: Any, data: Any, **options: Any) -> None:
        if "hvp" in options:
            raise InvalidArgumentError(
                "hvp: the empirical Fisher has one product style (per-example gradients); fix: "
                "drop hvp="
            )
        super().__init__(model, loss_fn, data, **options)
        if has_batchnorm(model) and self.bn_mode != "eval":  # the operator's default included
            raise InvalidArgumentError(
                f"bn_mode={self.bn_mode!r}: the empirical Fisher needs per-example losses, which "
                "BatchNorm in train or ghost mode (batch statistics) does not have; fix: "
                "bn_mode='eval'"
            )
        engine = self._engine
        assert isinstance(engine, _FisherEngine)
        engine.reduction = self.reduction or self._reduction_over_rows(model, loss_fn)

    def _make_engine(self, style: str, **kw: Any) -> _Engine:
        fn = _LossOfBatch(kw["module"], kw["names"], kw["values"], kw["buffers"], kw["bn_mode"])
        leaves = [kw["values"][n] for n in kw["names"]]
        self._module, self._values, self._buffers = kw["module"], kw["values"], kw["buffers"]
        return _FisherEngine(
            fn, kw["batches"], leaves, kw["module"]._objective, kw["memory_budget"]
        )

    def _reduction_over_rows(self, model: nn.Module, loss_fn: Any) -> str:
        """How a single batch's loss combines its rows ("mean" or "sum"), told by the check of
        :mod:`sgdscope._batching` on its two halves."""
        batch, _ = self._batches[0]
        rows = num_rows(batch)
        if rows is None or rows < 2:
            return "mean"
        half = rows // 2
        halves: Sequence[Any] = [
            slice_batch(batch, 0, half, rows),
            slice_batch(batch, half, rows, rows),
        ]
        objective = self._module._objective
        running = {k: v for k, v in self._buffers.items() if v is not None}
        red, _ = resolve_reduction(
            objective, halves, eval_loss(self._module, self._values, running)
        )
        return red
