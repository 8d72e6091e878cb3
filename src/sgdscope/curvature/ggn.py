"""The generalised Gauss-Newton matrix of a model's loss over a dataset, as a linear operator.

G = Σ_b w_b J_bᵀ H_out,b J_b: J_b = ∂f(x_b; θ)/∂θ the Jacobian of the model's outputs (logits) on
batch b, H_out,b = ∂²L_b/∂f² the Hessian of that batch's loss with respect to its outputs, w_b the
batch weights of the loss's reduction (those of :class:`~sgdscope.curvature.HessianOperator`).
For cross-entropy with a mean, H_out is block diagonal with (diag(p) − ppᵀ)/N per example; G is
positive semi-definite whenever the loss is convex in the outputs, and G = H when the model is
linear in θ and H_out is constant (MSE). Martens 2020, "New insights and perspectives on the
natural gradient method", §8; Schraudolph 2002.

Products never form J. By default (``products="autograd"``) each batch's outputs f, Jᵀu for a dummy
u (with its graph) and the output gradient ∂L_b/∂f (with its graph) are built once and kept within
the memory budget, like the Hessian's reused graph; a product is then three backward passes: J v
as the derivative of Jᵀu in u (the double-VJP trick), H_out (J v) on the small output tensor, and
Jᵀ(·). ``products="func"`` uses ``torch.func.jvp`` (J v, a forward per product) and a kept
``torch.func.vjp``, vmapped over a block; each falls back to the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from .._batching import LossClosure, output_logits, tensors_of
from ..errors import InvalidArgumentError
from ._hvp import Batch, Pieces, _count_saved_bytes, _Engine, _first_line, _LossOfBatch, _modes
from ._hvp import _reduce as _reduce_parts
from .operator import HessianOperator

__all__ = ["GGNOperator"]

logger = logging.getLogger("sgdscope.curvature")


def _call_parts(batch: Any) -> tuple[tuple[Any, ...], dict[str, Any], torch.Tensor]:
    """``(args, kwargs, target)`` of an ``(inputs, target)`` tuple or a dict batch with labels,
    exactly as :class:`sgdscope._batching.Objective` calls the model."""
    if isinstance(batch, Mapping):
        return (), {k: v for k, v in batch.items() if k != "labels"}, batch["labels"]
    inputs, target = batch
    if isinstance(inputs, Mapping):
        return (), dict(inputs), target
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}, target
    return (inputs,), {}, target


PRODUCTS = ("autograd", "func")


class _Linearised:
    """One batch's retained graphs: outputs f(θ), Jᵀu (of a dummy u, with its graph: J v is its
    derivative in u) and the output gradient ∂L_b/∂f (with its graph: H_out w is its derivative)."""

    def __init__(self, leaves, out, u, jtu, o, g_out) -> None:
        self.leaves, self.out, self.u, self.o, self.g_out = leaves, out, u, o, g_out
        self.pairs = [i for i, j in enumerate(jtu) if j is not None and j.requires_grad]
        self.jtu = [jtu[i] for i in self.pairs]


class _GGNEngine(_Engine):
    """Σ_b w_b J_bᵀ H_out,b J_b V for blocks V, on the snapshot of a HessianOperator.

    ``products="autograd"`` (default): per batch, one forward and two backward graphs are built
    and kept (within the memory budget, else rebuilt per product); a product is then three
    backward passes through them (J v by the double-VJP trick, H_out (J v) on the output tensor,
    Jᵀ(·)) and no forward. ``products="func"``: ``torch.func.jvp`` for J v (a forward per
    product) and a kept ``torch.func.vjp``, vmapped over a block. Each falls back to the other
    when the model cannot be differentiated that way.
    """

    style = "ggn"

    def __init__(
        self,
        fn: _LossOfBatch,
        batches: list[Batch],
        values: Pieces,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        budget: int,
        products: str = "autograd",
    ) -> None:
        super().__init__(fn, batches, values)
        self.model: nn.Module = fn.model
        self.loss_fn = loss_fn
        self.names = [n.removeprefix("model.") for n in fn.names]
        self.fixed = {k.removeprefix("model."): v for k, v in fn.fixed.items()}
        self.train_mode = "eval" if fn.bn_mode == "eval" else "train"
        self.budget = int(budget)
        self.products = products
        self.style = f"ggn ({products})"
        self._kept: dict[int, Any] = {}
        self._kept_bytes = 0
        self._full = False
        self._switched = False
        if products == "autograd":
            self.block_mode = "loop"
            self.block_reason = "loop: GGN autograd products, three backward passes per vector"

    # -- pieces ---------------------------------------------------------------------------
    def _outputs(self, leaves: Sequence[torch.Tensor], batch: Any) -> torch.Tensor:
        tensors = dict(self.fixed)
        tensors.update(zip(self.names, leaves, strict=True))
        args, kwargs, _ = _call_parts(batch)
        with _modes(self.model, self.train_mode):
            out = functional_call(self.model, tensors, args, kwargs)
        return output_logits(out)

    def _keep(self, index: int, item: Any, size: int) -> None:
        if not self._full and self._kept_bytes + size <= self.budget:
            self._kept[index] = item
            self._kept_bytes += size
        else:
            self._full = True

    # -- autograd products ------------------------------------------------------------------
    def _graph(self, index: int) -> _Linearised:
        kept = self._kept.get(index)
        if kept is not None:
            return kept
        data, w = self.batches[index]
        target = _call_parts(data)[2]
        leaves = [v.detach().requires_grad_(True) for v in self.values]
        exclude = leaves + tensors_of(data)
        with torch.enable_grad(), _count_saved_bytes(exclude) as counter:
            out = self._outputs(leaves, data)
            u = torch.zeros_like(out, requires_grad=True)
            jtu = torch.autograd.grad(out, leaves, u, create_graph=True, allow_unused=True)
            o = out.detach().requires_grad_(True)
            g_out = torch.autograd.grad(self.loss_fn(o, target) * w, o, create_graph=True)[0]
        item = _Linearised(leaves, out, u, jtu, o, g_out)
        self._keep(index, item, counter[0])
        return item

    def _batch_autograd(self, index: int, V: Pieces) -> Pieces:
        lin = self._graph(index)
        cols = []
        with torch.enable_grad():
            for j in range(V[0].shape[0]):
                jv = None
                if lin.pairs:
                    vs = [V[i][j] for i in lin.pairs]
                    jv = torch.autograd.grad(
                        lin.jtu, lin.u, vs, retain_graph=True, allow_unused=True
                    )[0]
                if jv is None or not lin.g_out.requires_grad:  # J v = 0 or H_out = 0
                    cols.append([torch.zeros_like(le) for le in lin.leaves])
                    continue
                hjv = torch.autograd.grad(lin.g_out, lin.o, jv, retain_graph=True)[0]
                res = torch.autograd.grad(
                    lin.out, lin.leaves, hjv, retain_graph=True, allow_unused=True
                )
                cols.append(
                    [
                        torch.zeros_like(le) if r is None else r
                        for r, le in zip(res, lin.leaves, strict=True)
                    ]
                )
        return [torch.stack([c[p] for c in cols]).detach() for p in range(len(V))]

    # -- torch.func products ----------------------------------------------------------------
    def _linearised(self, index: int) -> tuple[torch.Tensor, Callable, torch.Tensor]:
        """``(outputs, vjp_fn, target)`` of batch ``index`` (kept while within the budget)."""
        kept = self._kept.get(index)
        if kept is not None:
            return kept
        data, _ = self.batches[index]
        out, vjp_fn = torch.func.vjp(lambda *p: self._outputs(p, data), *self.values)
        item = (out.detach(), vjp_fn, _call_parts(data)[2])
        if not self._full:
            self._keep(index, item, self._graph_bytes(data))
        return item

    def _graph_bytes(self, data: Any) -> int:
        """Bytes autograd saves for one forward of the outputs (torch.func's transforms refuse
        saved-tensor hooks, so the count comes from a plain autograd forward, once per batch)."""
        leaves = [v.detach().requires_grad_(True) for v in self.values]
        exclude = leaves + tensors_of(data)
        with torch.enable_grad(), _count_saved_bytes(exclude) as counter:
            self._outputs(leaves, data)
        return counter[0]

    def _batch_func(self, index: int, V: Pieces) -> Pieces:
        data, w = self.batches[index]
        out, vjp_fn, target = self._linearised(index)
        primals = tuple(self.values)
        # H_out u by reverse over reverse on the small output tensor (H_out is symmetric; the
        # forward-over-reverse form hits a torch.func bug for losses such as mse_loss).
        _, hess_out = torch.func.vjp(torch.func.grad(lambda o: self.loss_fn(o, target) * w), out)

        def one(t: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            _, jv = torch.func.jvp(lambda *p: self._outputs(p, data), primals, t)
            return vjp_fn(hess_out(jv)[0])

        return self._blockwise(one, V)

    # -- interface --------------------------------------------------------------------------
    def _batch(self, index: int, V: Pieces) -> Pieces:
        if self.products == "autograd":
            return self._batch_autograd(index, V)
        return self._batch_func(index, V)

    def hvp(self, V: Pieces) -> Pieces:
        parts = []
        for i in range(len(self.batches)):
            try:
                parts.append(self._batch(i, V))
            except (RuntimeError, NotImplementedError) as exc:
                if self._switched:
                    raise
                other = "func" if self.products == "autograd" else "autograd"
                logger.warning(
                    "GGNOperator: %s products failed on this model (%s); using %s products",
                    self.products,
                    _first_line(exc),
                    other,
                )
                self.products, self.style, self._switched = other, f"ggn ({other})", True
                self._kept, self._kept_bytes, self._full = {}, 0, False
                self.block_mode = "loop" if other == "autograd" else None
                parts = [self._batch(k, V) for k in range(i + 1)]
        return _reduce_parts(parts, V)

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "kept_batches": len(self._kept),
            "kept_bytes": self._kept_bytes,
            "memory_budget": self.budget,
        }

    def release(self) -> None:
        self._kept, self._kept_bytes, self._full = {}, 0, False


class GGNOperator(HessianOperator):
    """The generalised Gauss-Newton matrix G = Σ_b w_b J_bᵀ H_out,b J_b as a linear operator.

    Everything but the product is :class:`~sgdscope.curvature.HessianOperator`'s: the data (one
    batch or several, any structure ``loss_fn(output, target)`` reads), the reduction and the
    batch weights, BatchNorm modes (the Jacobian is of the outputs in that mode), ``dtype``,
    ``theta``, ``params`` / ``param_filter`` blocks (J of the chosen parameters: the diagonal
    block of G), ``batch_size``, ``memory_budget`` (here: the kept VJPs of the outputs) and
    ``block_products``; ``gradient()`` and ``loss()`` are those of the loss. ``lanczos``,
    ``hutchinson_trace``, ``spectral_density`` and the eigenbasis accept it as any operator.

    Args:
        model, loss_fn, data: as :class:`~sgdscope.curvature.HessianOperator`; ``loss_fn`` must
            be ``loss_fn(output, target)`` (the output Hessian needs the loss as a function of the
            outputs: a :class:`~sgdscope.LossClosure` or the model's own ``.loss`` are refused).
        products: ``"autograd"`` (default: per batch one forward and two backward graphs kept
            within ``memory_budget``, then three backward passes per product; the fastest on the
            benchmark's MLP and CNN) or ``"func"`` (``torch.func`` JVP and VJP, vmapped over a
            block); each falls back to the other when the model cannot be differentiated so.
        **options: every other keyword of :class:`~sgdscope.curvature.HessianOperator` but
            ``hvp`` (a Hessian product style).

    Example:
        >>> G = GGNOperator(model, torch.nn.functional.cross_entropy, (x, y))
        >>> lanczos(G, k=5).eigenvalues        # λ₁(G) ≥ … ≥ λ₅(G) ≥ 0
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Any,
        data: Any,
        *,
        products: str = "autograd",
        **options: Any,
    ) -> None:
        if "hvp" in options:
            raise InvalidArgumentError(
                "hvp: a Hessian product style; the GGN's are products='autograd' or 'func'; "
                "fix: drop hvp="
            )
        if products not in PRODUCTS:
            raise InvalidArgumentError(
                f"products: expected one of {', '.join(PRODUCTS)}, received {products!r}"
            )
        self._products = products
        if loss_fn is None or not callable(loss_fn) or isinstance(loss_fn, LossClosure):
            raise InvalidArgumentError(
                "GGNOperator needs loss_fn(output, target): the Gauss-Newton matrix is Jᵀ H_out J "
                "with H_out the Hessian of the loss with respect to the model's outputs; received "
                f"{type(loss_fn).__name__}; fix: pass the loss as a function of the outputs "
                "(e.g. torch.nn.functional.cross_entropy), or use HessianOperator"
            )
        super().__init__(model, loss_fn, data, **options)

    def _make_engine(self, style: str, **kw: Any) -> _Engine:
        fn = _LossOfBatch(kw["module"], kw["names"], kw["values"], kw["buffers"], kw["bn_mode"])
        leaves = [kw["values"][n] for n in kw["names"]]
        module = kw["module"]
        engine = _GGNEngine(
            fn,
            kw["batches"],
            leaves,
            module._objective.loss_fn,
            kw["memory_budget"],
            self._products,
        )
        _block_mode(engine, kw.get("block_products", "auto"))
        return engine


def _block_mode(engine: _Engine, block_products: str) -> None:
    if block_products == "loop":
        engine.block_mode = "loop"
        engine.block_reason = "loop: requested (block_products='loop'); one product per vector"
