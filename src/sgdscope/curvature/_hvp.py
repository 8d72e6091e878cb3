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

The per-batch contributions are summed in :func:`_reduce` only, in batch order and in float64; a
data-parallel operator then all-reduces that sum over the ranks, flattened into one (m, n) block
(``HessianOperator._matmat``, :mod:`sgdscope._distributed`). Each batch's product is computed on
its own (a retained graph or a recomputed one give the same numbers), so the memory budget changes
the speed, never the result.

Block products (m > 1 vectors) are one ``is_grads_batched`` backward (``vmap`` for
forward-over-reverse) whenever every operation of the model has a batching rule, else a loop of
single products. The choice is made at the first block product of an operator from that property
alone — never from a timing — so the same model, data and dtype give bitwise the same products in
every process, however loaded the machine; ``info["block_products"]`` and
``info["block_products_reason"]`` record it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from .._batching import ObjectiveModule, tensors_of
from .._state import set_bn_mode

logger = logging.getLogger("sgdscope.curvature")

HVP_STYLES = ("auto", "reuse", "double_backward", "forward_over_reverse")
BLOCK_PRODUCTS = ("auto", "batched", "loop")

#: ``(batch, weight)``: a batch (already on the device) and its weight in the loss over the data.
Batch = tuple[Any, float]
Pieces = list[torch.Tensor]


def _reduce(parts: Sequence[Sequence[torch.Tensor | None]], like: Pieces) -> Pieces:
    """Sum per-chunk contributions (already weighted) into one result, accumulating in float64.

    This is the one place where contributions of this process's data are added; a data-parallel
    operator all-reduces the output of this function across ranks.
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
    """The loss of one batch as a function of the differentiated tensors.

    ``values`` maps every parameter name to its (snapshot) value, ``buffers`` every buffer name
    to a tensor or None (BatchNorm running statistics in train/ghost mode: batch statistics are
    used and nothing is updated). The model's own tensors are never read or written; its mode
    flags are set for the call and restored after. The loss is the objective's
    (:class:`sgdscope._batching.Objective`), run by ``functional_call`` on an
    :class:`~sgdscope._batching.ObjectiveModule`, so closures that call the model themselves see
    the given values too.
    """

    def __init__(
        self,
        module: ObjectiveModule,
        names: Sequence[str],
        values: dict[str, torch.Tensor],
        buffers: dict[str, torch.Tensor | None],
        bn_mode: str,
    ) -> None:
        self.module = module
        self.model = module.model
        self.names = ["model." + n for n in names]
        chosen = set(names)
        self.fixed: dict[str, Any] = {"model." + n: v for n, v in values.items() if n not in chosen}
        self.fixed.update({"model." + n: b for n, b in buffers.items()})
        self.bn_mode = bn_mode

    def __call__(self, leaves: Sequence[torch.Tensor], batch: Any) -> torch.Tensor:
        tensors = dict(self.fixed)
        tensors.update(zip(self.names, leaves, strict=True))
        with _modes(self.model, "eval" if self.bn_mode == "eval" else "train"):
            return functional_call(self.module, tensors, (batch,))


@contextlib.contextmanager
def _modes(model: nn.Module, bn_mode: str) -> Iterator[None]:
    """Set BatchNorm to ``bn_mode`` and dropout off for the block; restore the flags and the RNG.

    Attention runs in the math kernel (twice differentiable). Buffers need no saving here: they
    are passed to ``functional_call`` as copies (or None), so
    the model's own are never written. (``preserved_state`` would also copy them back, an
    in-place write that torch.func transforms refuse.)
    """
    flags = [(m, m.training) for m in model.modules()]
    cpu_rng = torch.get_rng_state()
    try:
        set_bn_mode(model, bn_mode)
        # Fused attention kernels (flash, memory-efficient) have no second derivative; the math
        # kernel of scaled_dot_product_attention has, and computes the same function.
        with sdpa_kernel([SDPBackend.MATH]):
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
        #: "batched" or "loop", decided at the first block product (see the module docstring)
        self.block_mode: str | None = None
        self.block_reason = "not decided yet: no block product computed"

    # -- shared pieces -------------------------------------------------------------------
    def _first_order(self, batch: Any, w: float, create_graph: bool):
        with torch.enable_grad():
            loss = self.fn(self.leaves, batch) * w
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
            if self.block_mode != "loop":
                batched = self._batched(outs, [V[i] for i in idx])
                if batched is not None:
                    return batched
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
        """One ``is_grads_batched`` backward, or None when this model has no batching rule for
        one of its operations (then every block product of the operator is a loop from now on,
        this one included: the block is recomputed, so no result mixes the two ways).

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
        except RuntimeError as exc:
            self._decide("loop", f"is_grads_batched failed ({_first_line(exc)})")
            return None
        if caught:  # a missing batching rule: torch falls back to a slow loop of its own
            self._decide("loop", f"is_grads_batched warned ({_first_line(caught[0].message)})")
            return None
        self._decide("batched", "every operation of the model has a batching rule")
        return list(res)

    def _decide(self, mode: str, why: str) -> None:
        if self.block_mode is None:
            self.block_mode = mode
            how = (
                "one batched backward per block" if mode == "batched" else "one backward per vector"
            )
            self.block_reason = (
                f"{mode}: {why}; {how} (fixed for this operator by the model's operations, "
                "never by a timing)"
            )

    def _blockwise(
        self, one: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]], V: Pieces
    ) -> Pieces:
        """``one`` (a product with one vector, as parameter pieces) applied to every vector of
        the block ``V``: vmapped while every operation of the model has a batching rule, else a
        loop (decided once, on the first block of several vectors, and recorded)."""
        m = V[0].shape[0]
        if m == 1:
            return [h.unsqueeze(0) for h in one(tuple(v[0] for v in V))]
        if self.block_mode != "loop":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = torch.func.vmap(one)(tuple(V))
            if not caught:
                self._decide("batched", "every operation of the model has a vmap rule")
                return list(res)
            # a missing batching rule: the loop from now on, this block included
            self._decide("loop", f"vmap warned ({_first_line(caught[0].message)})")
        cols = [one(tuple(v[j] for v in V)) for j in range(m)]
        return [torch.stack([c[p] for c in cols]) for p in range(len(V))]

    def _recompute_hvp(self, batch: Batch, V: Pieces) -> list:
        data, w = batch
        _, g = self._first_order(data, w, create_graph=True)
        return self._backward(g, V, retain=False)

    # -- interface ----------------------------------------------------------------------
    def hvp(self, V: Pieces) -> Pieces:
        parts = [self._recompute_hvp(b, V) for b in self.batches]
        return _reduce(parts, V)

    def gradient(self) -> Pieces:
        parts = []
        for data, w in self.batches:
            _, g = self._first_order(data, w, create_graph=False)
            parts.append(g)
        return _reduce(parts, self.values)

    def loss(self) -> torch.Tensor:
        with torch.no_grad():
            parts = [[self.fn(self.values, data).double() * w] for data, w in self.batches]
        return _reduce(parts, [torch.zeros((), dtype=torch.float64)])[0]

    def info(self) -> dict[str, Any]:
        return {
            "style": self.style,
            "batches": len(self.batches),
            "block_products": self.block_mode,
            "block_products_reason": self.block_reason,
        }

    def release(self) -> None:
        pass


def _first_line(obj: Any) -> str:
    text = str(obj)
    return text.splitlines()[0][:160] if text else type(obj).__name__


class _DoubleBackward(_Engine):
    style = "double_backward"


class _ReusedGraph(_Engine):
    """Keeps each batch's weighted gradient w_b g_b (with its graph) while they fit the budget.

    A product runs one backward per retained batch and recomputes the others, and adds the
    per-batch results in batch order in float64 (:func:`_reduce`), exactly as
    ``double_backward`` does: how many batches the budget retains changes the time, not the
    numbers.
    """

    style = "reuse"

    def __init__(self, fn: _LossOfBatch, batches: list[Batch], values: Pieces, budget: int):
        super().__init__(fn, batches, values)
        self.budget = int(budget)
        self._g: list[list[torch.Tensor | None]] = []
        self.graph_bytes = 0
        self._built = False

    @property
    def _n_retained(self) -> int:
        return len(self._g)

    def _build(self) -> None:
        exclude = list(self.leaves) + [t for b, _ in self.batches for t in tensors_of(b)]
        used = 0
        kept: list[list[torch.Tensor | None]] = []
        for data, w in self.batches:
            with _count_saved_bytes(exclude) as counter:
                _, g = self._first_order(data, w, create_graph=True)
            if used + counter[0] > self.budget:
                del g
                break
            used += counter[0]
            kept.append(g)
        self._g, self.graph_bytes, self._built = kept, used, True
        if len(kept) < len(self.batches):
            logger.info(
                "HessianOperator: the first-order graph of %d of %d batches fits the memory "
                "budget of %.1f MB; the other %d are recomputed at each product",
                len(kept),
                len(self.batches),
                self.budget / 2**20,
                len(self.batches) - len(kept),
            )

    def hvp(self, V: Pieces) -> Pieces:
        if not self._built:
            self._build()
        parts = [self._backward(g, V, retain=True) for g in self._g]
        parts.extend(self._recompute_hvp(b, V) for b in self.batches[self._n_retained :])
        return _reduce(parts, V)

    def gradient(self) -> Pieces:
        if not self._built:
            self._build()
        parts: list = [[None if t is None else t.detach() for t in g] for g in self._g]
        for data, w in self.batches[self._n_retained :]:
            parts.append(self._first_order(data, w, create_graph=False)[1])
        return _reduce(parts, self.values)

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "retained_batches": self._n_retained if self._built else None,
            "recomputed_batches": (len(self.batches) - self._n_retained) if self._built else None,
            "graph_bytes": self.graph_bytes,
            "memory_budget": self.budget,
        }

    def release(self) -> None:
        self._g, self.graph_bytes, self._built = [], 0, False


class _ForwardOverReverse(_Engine):
    style = "forward_over_reverse"

    def __init__(self, fn: _LossOfBatch, batches: list[Batch], values: Pieces) -> None:
        super().__init__(fn, batches, values)
        self._fallback: _Engine | None = None

    def _batch_hvp(self, batch: Batch, V: Pieces) -> Pieces:
        data, w = batch
        primals = tuple(self.values)

        def loss(p: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return self.fn(p, data) * w

        grad_fn = torch.func.grad(loss)

        def one(t: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return torch.func.jvp(grad_fn, (primals,), (t,))[1]

        return self._blockwise(one, V)

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

    def info(self) -> dict[str, Any]:
        if self._fallback is not None:
            return {**self._fallback.info(), "style": "double_backward"}
        return super().info()


def make_engine(
    style: str,
    *,
    module: ObjectiveModule,
    batches: list[Batch],
    names: Sequence[str],
    values: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor | None],
    bn_mode: str,
    memory_budget: int,
    block_products: str = "auto",
) -> _Engine:
    fn = _LossOfBatch(module, names, values, buffers, bn_mode)
    leaves = [values[n] for n in names]
    engine: _Engine
    if style in ("auto", "reuse"):
        engine = _ReusedGraph(fn, batches, leaves, memory_budget)
    elif style == "double_backward":
        engine = _DoubleBackward(fn, batches, leaves)
    else:
        engine = _ForwardOverReverse(fn, batches, leaves)
    if block_products == "loop":
        engine.block_mode = "loop"
        engine.block_reason = "loop: requested (block_products='loop'); one backward per vector"
    elif block_products == "batched":
        engine.block_reason = "batched requested (block_products='batched'): not computed yet"
    return engine


def eval_loss(
    module: ObjectiveModule, values: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor]
):
    """``batch -> loss`` at the given values with BatchNorm in eval mode (running statistics),
    dropout off and no graph: what the reduction check evaluates."""
    tensors = {"model." + n: v for n, v in {**values, **buffers}.items()}

    def evaluate(batch: Any) -> torch.Tensor:
        with torch.no_grad(), _modes(module.model, "eval"):
            return functional_call(module, tensors, (batch,))

    return evaluate
