"""Hessian-vector product styles behind :class:`~sgdscope.curvature.HessianOperator`.

Every style computes Σ_b w_b H_b V for a block V of m vectors (per-parameter tensors of shape
``(m, *param_shape)``), H_b the Hessian of batch b's mean loss, w_b its weight:

* ``double_backward`` — per product and batch: forward, first-order gradient with
  ``create_graph=True``, one backward of g·v. Works for any model autograd can differentiate.
* ``reuse`` (the default, ``auto``) — the first-order graph of each batch is built once per operator
  and kept; a product is then one backward through it (``retain_graph=True``). Batches whose graph
  does not fit ``memory_budget`` (measured as the bytes autograd saves while building them) are
  recomputed per product as in ``double_backward``; the operator's ``info`` says how many.
* ``forward_over_reverse`` — ``torch.func.jvp`` of ``torch.func.grad`` over ``functional_call``,
  vmapped over the m vectors; falls back to ``double_backward`` when torch.func cannot trace the
  model.

The per-batch contributions are summed in :func:`_reduce` only: a data-parallel version all-reduces
its result there.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from .._state import set_bn_mode

logger = logging.getLogger("sgdscope.curvature")

HVP_STYLES = ("auto", "reuse", "double_backward", "forward_over_reverse")

#: Whether one ``is_grads_batched`` backward over a block beats a loop of single products, per
#: (model type, style, parameter shapes, input shape, batches, dtype, device, block size ≤ 16):
#: measured on the first block product of that kind in the process.
_BATCHED_FASTER: dict[tuple, bool] = {}

#: ``(x, y, weight)``: a batch and its weight in the mean over the data.
Batch = tuple[Any, torch.Tensor, float]
Pieces = list[torch.Tensor]


def _reduce(parts: Sequence[Sequence[torch.Tensor | None]], like: Pieces) -> Pieces:
    """Sum per-chunk contributions (already weighted) into one result, accumulating in float64.

    This is the one place where contributions of different data are added: a data-parallel
    version all-reduces the output of this function across ranks.
    """
    if len(parts) == 1:  # nothing to add up
        return [
            torch.zeros_like(ref) if t is None else t.detach().to(ref.dtype)
            for t, ref in zip(parts[0], like, strict=True)
        ]
    out: Pieces = []
    for i, ref in enumerate(like):
        acc = None
        for part in parts:
            t = part[i]
            if t is None:
                continue
            t = t.detach().to(torch.float64) if t.dtype != torch.float64 else t.detach()
            acc = t.clone() if acc is None else acc.add_(t)
        out.append(torch.zeros_like(ref) if acc is None else acc.to(ref.dtype))
    return out


class _LossOfBatch:
    """The mean loss of one batch as a function of the differentiated tensors.

    ``values`` maps every parameter name to its (snapshot) value, ``buffers`` every buffer name
    to a tensor or None (BatchNorm running statistics in train/ghost mode: batch statistics are
    used and nothing is updated). The model's own tensors are never read or written; its mode
    flags are set for the call and restored after.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        names: Sequence[str],
        values: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor | None],
        bn_mode: str,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.names = list(names)
        self.fixed: dict[str, Any] = {n: v for n, v in values.items() if n not in set(names)}
        self.fixed.update(buffers)
        self.bn_mode = bn_mode

    def __call__(self, leaves: Sequence[torch.Tensor], x: Any, y: torch.Tensor) -> torch.Tensor:
        tensors = dict(self.fixed)
        tensors.update(zip(self.names, leaves, strict=True))
        with _modes(self.model, "eval" if self.bn_mode == "eval" else "train"):
            out = functional_call(self.model, tensors, (x,))
        return self.loss_fn(out, y)


@contextlib.contextmanager
def _modes(model: nn.Module, bn_mode: str) -> Iterator[None]:
    """Set BatchNorm to ``bn_mode`` and dropout off for the block; restore the flags and the RNG.

    Buffers need no saving here: they are passed to ``functional_call`` as copies (or None), so
    the model's own are never written. (``preserved_state`` would also copy them back, an
    in-place write that torch.func transforms refuse.)
    """
    flags = [(m, m.training) for m in model.modules()]
    cpu_rng = torch.get_rng_state()
    try:
        set_bn_mode(model, bn_mode)
        yield
    finally:
        for m, training in flags:
            m.training = training
        torch.set_rng_state(cpu_rng)


@contextlib.contextmanager
def _count_saved_bytes(exclude: Sequence[torch.Tensor]) -> Iterator[list[int]]:
    """Count the bytes of the distinct storages autograd saves for backward inside the block."""
    seen: set[int] = set()
    for t in exclude:
        with contextlib.suppress(Exception):
            seen.add(t.untyped_storage().data_ptr())
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            key, size = st.data_ptr(), st.nbytes()
        except Exception:  # tensors without a plain storage
            key, size = id(t), t.numel() * t.element_size()
        if key not in seen:
            seen.add(key)
            total[0] += size
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield total


class _Engine:
    style = "base"

    def __init__(self, fn: _LossOfBatch, batches: list[Batch], values: Pieces) -> None:
        self.fn = fn
        self.batches = batches
        self.values = values  # snapshot of the differentiated tensors (no grad)
        self.leaves = [v.detach().requires_grad_(True) for v in values]
        self._batched_ok = True  # is_grads_batched / vmap usable without a slow fallback

    # -- shared pieces -------------------------------------------------------------------
    def _first_order(self, x: Any, y: torch.Tensor, w: float, create_graph: bool):
        with torch.enable_grad():
            loss = self.fn(self.leaves, x, y) * w
            g = torch.autograd.grad(loss, self.leaves, create_graph=create_graph, allow_unused=True)
        return loss, list(g)

    def _backward(self, g: Sequence[torch.Tensor | None], V: Pieces, retain: bool) -> list:
        """J_gᵀ V = H V (H symmetric) through the graph of g, for each of the m columns of V."""
        idx = [i for i, gi in enumerate(g) if gi is not None and gi.requires_grad]
        m = V[0].shape[0]
        out: list[torch.Tensor | None] = [None] * len(V)
        if not idx:
            return out
        outs = [g[i] for i in idx]
        with torch.enable_grad():
            if m == 1:
                res = torch.autograd.grad(
                    outs,
                    self.leaves,
                    grad_outputs=[V[i][0] for i in idx],
                    retain_graph=retain,
                    allow_unused=True,
                )
                return [None if r is None else r.unsqueeze(0) for r in res]
            if self._batched_ok:
                key = self._timing_key(m)
                if _BATCHED_FASTER.get(key) is False:
                    pass  # measured before: a loop of single products is faster
                elif key in _BATCHED_FASTER:
                    res = self._batched(outs, [V[i] for i in idx])
                    if res is not None:
                        return res
                else:
                    # Measure once per model/data shape: the first column alone, then the others
                    # as one batched call; keep whichever is faster per vector (on CPU, batched
                    # double backward through convolutions can cost several times a loop).
                    t0 = time.perf_counter()
                    first = torch.autograd.grad(
                        outs,
                        self.leaves,
                        grad_outputs=[V[i][0] for i in idx],
                        retain_graph=True,
                        allow_unused=True,
                    )
                    t1 = time.perf_counter()
                    rest = self._batched(outs, [V[i][1:] for i in idx])
                    t2 = time.perf_counter()
                    if rest is not None:
                        _BATCHED_FASTER[key] = (t2 - t1) / (m - 1) < (t1 - t0)
                        return [
                            None if a is None or b is None else torch.cat([a.unsqueeze(0), b])
                            for a, b in zip(first, rest, strict=True)
                        ]
            cols: list[Sequence[torch.Tensor | None]] = []
            for j in range(m):
                cols.append(
                    torch.autograd.grad(
                        outs,
                        self.leaves,
                        grad_outputs=[V[i][j] for i in idx],
                        retain_graph=retain or j < m - 1,
                        allow_unused=True,
                    )
                )
        for p in range(len(V)):
            if all(c[p] is not None for c in cols):
                out[p] = torch.stack([c[p] for c in cols])  # type: ignore[misc]
        return out

    def _batched(self, outs: list, grad_outputs: list) -> list | None:
        """One ``is_grads_batched`` backward; None (and no batching from now on) if unusable.

        The graph is retained, so that a failure leaves it intact for the loop that follows.
        """
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = torch.autograd.grad(
                    outs,
                    self.leaves,
                    grad_outputs=grad_outputs,
                    retain_graph=True,
                    allow_unused=True,
                    is_grads_batched=True,
                )
            if caught:  # a missing batching rule: slow path, loop from now on
                self._batched_ok = False
            return list(res)
        except RuntimeError:
            self._batched_ok = False
            return None

    def _timing_key(self, m: int) -> tuple:
        x = self.batches[0][0] if self.batches else None
        return (
            type(self.fn.model).__qualname__,
            self.style,
            tuple(tuple(t.shape) for t in self.leaves),
            tuple(x.shape) if isinstance(x, torch.Tensor) else None,
            len(self.batches),
            self.leaves[0].dtype if self.leaves else None,
            str(self.leaves[0].device) if self.leaves else None,
            min(m, 16),
        )

    def _recompute_hvp(self, batch: Batch, V: Pieces) -> list:
        x, y, w = batch
        _, g = self._first_order(x, y, w, create_graph=True)
        return self._backward(g, V, retain=False)

    # -- interface ----------------------------------------------------------------------
    def hvp(self, V: Pieces) -> Pieces:
        parts = [self._recompute_hvp(b, V) for b in self.batches]
        return _reduce(parts, V)

    def gradient(self) -> Pieces:
        parts = []
        for x, y, w in self.batches:
            _, g = self._first_order(x, y, w, create_graph=False)
            parts.append(g)
        return _reduce(parts, self.values)

    def loss(self) -> torch.Tensor:
        with torch.no_grad():
            parts = [[self.fn(self.values, x, y).double() * w] for x, y, w in self.batches]
        return _reduce(parts, [torch.zeros((), dtype=torch.float64)])[0]

    def info(self) -> dict[str, Any]:
        return {"style": self.style, "batches": len(self.batches)}

    def release(self) -> None:
        pass


class _DoubleBackward(_Engine):
    style = "double_backward"


class _ReusedGraph(_Engine):
    """Keeps Σ_b w_b g_b (with its graph) for the batches that fit the memory budget."""

    style = "reuse"

    def __init__(self, fn: _LossOfBatch, batches: list[Batch], values: Pieces, budget: int):
        super().__init__(fn, batches, values)
        self.budget = int(budget)
        self._g: list[torch.Tensor | None] | None = None
        self._n_retained = 0
        self.graph_bytes = 0
        self._built = False

    def _build(self) -> None:
        total: list[torch.Tensor | None] | None = None
        exclude = list(self.leaves) + [
            t for x, y, _ in self.batches for t in (x, y) if isinstance(t, torch.Tensor)
        ]
        used = 0
        n_kept = 0
        for x, y, w in self.batches:
            with _count_saved_bytes(exclude) as counter:
                _, g = self._first_order(x, y, w, create_graph=True)
            if used + counter[0] > self.budget:
                del g
                break
            used += counter[0]
            n_kept += 1
            if total is None:
                total = list(g)
            else:
                total = [
                    b if a is None else a if b is None else a + b
                    for a, b in zip(total, g, strict=True)
                ]
        self._g, self._n_retained, self.graph_bytes, self._built = total, n_kept, used, True
        if n_kept < len(self.batches):
            logger.info(
                "HessianOperator: the first-order graph of %d of %d batches fits the memory "
                "budget of %.1f MB; the other %d are recomputed at each product",
                n_kept,
                len(self.batches),
                self.budget / 2**20,
                len(self.batches) - n_kept,
            )

    def hvp(self, V: Pieces) -> Pieces:
        if not self._built:
            self._build()
        parts = []
        if self._g is not None:
            parts.append(self._backward(self._g, V, retain=True))
        parts.extend(self._recompute_hvp(b, V) for b in self.batches[self._n_retained :])
        return _reduce(parts, V)

    def gradient(self) -> Pieces:
        if not self._built:
            self._build()
        parts: list = []
        if self._g is not None:
            parts.append([None if g is None else g.detach() for g in self._g])
        for x, y, w in self.batches[self._n_retained :]:
            parts.append(self._first_order(x, y, w, create_graph=False)[1])
        return _reduce(parts, self.values)

    def info(self) -> dict[str, Any]:
        return {
            "style": self.style,
            "batches": len(self.batches),
            "retained_batches": self._n_retained if self._built else None,
            "recomputed_batches": (len(self.batches) - self._n_retained) if self._built else None,
            "graph_bytes": self.graph_bytes,
            "memory_budget": self.budget,
        }

    def release(self) -> None:
        self._g, self._n_retained, self.graph_bytes, self._built = None, 0, 0, False


class _ForwardOverReverse(_Engine):
    style = "forward_over_reverse"

    def __init__(self, fn: _LossOfBatch, batches: list[Batch], values: Pieces) -> None:
        super().__init__(fn, batches, values)
        self._fallback: _Engine | None = None

    def _batch_hvp(self, batch: Batch, V: Pieces) -> Pieces:
        x, y, w = batch
        primals = tuple(self.values)

        def loss(p: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return self.fn(p, x, y) * w

        grad_fn = torch.func.grad(loss)

        def one(t: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return torch.func.jvp(grad_fn, (primals,), (t,))[1]

        m = V[0].shape[0]
        if m == 1:
            return [h.unsqueeze(0) for h in one(tuple(v[0] for v in V))]
        if self._batched_ok:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = torch.func.vmap(one)(tuple(V))
            if caught:
                self._batched_ok = False
            return list(res)
        cols = [one(tuple(v[j] for v in V)) for j in range(m)]
        return [torch.stack([c[p] for c in cols]) for p in range(len(V))]

    def hvp(self, V: Pieces) -> Pieces:
        if self._fallback is not None:
            return self._fallback.hvp(V)
        try:
            parts = [self._batch_hvp(b, V) for b in self.batches]
        except (RuntimeError, NotImplementedError) as exc:
            logger.warning(
                "HessianOperator: torch.func cannot trace this model (%s); falling back to "
                "double backward",
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            self._fallback = _DoubleBackward(self.fn, self.batches, self.values)
            self.style = "double_backward"
            return self._fallback.hvp(V)
        return _reduce(parts, V)


def make_engine(
    style: str,
    *,
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: list[Batch],
    names: Sequence[str],
    values: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor | None],
    bn_mode: str,
    memory_budget: int,
) -> _Engine:
    fn = _LossOfBatch(model, loss_fn, names, values, buffers, bn_mode)
    leaves = [values[n] for n in names]
    if style in ("auto", "reuse"):
        return _ReusedGraph(fn, batches, leaves, memory_budget)
    if style == "double_backward":
        return _DoubleBackward(fn, batches, leaves)
    return _ForwardOverReverse(fn, batches, leaves)
