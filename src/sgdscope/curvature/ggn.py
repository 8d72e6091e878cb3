"""The generalised Gauss-Newton matrix of a model's loss over a dataset, as a linear operator.

G = Σ_b w_b J_bᵀ H_out,b J_b: J_b = ∂f(x_b; θ)/∂θ the Jacobian of the model's outputs (logits) on
batch b, H_out,b = ∂²L_b/∂f² the Hessian of that batch's loss with respect to its outputs, w_b the
batch weights of the loss's reduction (those of :class:`~sgdscope.curvature.HessianOperator`).
For cross-entropy with a mean, H_out is block diagonal with (diag(p) − ppᵀ)/N per example; G is
positive semi-definite whenever the loss is convex in the outputs, and G = H when the model is
linear in θ and H_out is constant (MSE). Martens 2020, "New insights and perspectives on the
natural gradient method", §8; Schraudolph 2002.

Products never form J: per batch, one ``torch.func.vjp`` of the outputs (kept for the operator's
life within the memory budget, like the Hessian's reused graph), and per vector a
``torch.func.jvp`` (J v), the output Hessian's product (a VJP of the loss's gradient with respect
to the outputs, on the small output tensor) and the kept VJP (Jᵀ u); vmapped over the vectors of a
block. Models torch.func cannot trace fall back to autograd (J v by the double-VJP trick).
"""

from __future__ import annotations

import logging
import warnings
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


class _GGNEngine(_Engine):
    """Σ_b w_b J_bᵀ H_out,b J_b V for blocks V, on the snapshot of a HessianOperator."""

    style = "ggn"

    def __init__(
        self,
        fn: _LossOfBatch,
        batches: list[Batch],
        values: Pieces,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        budget: int,
    ) -> None:
        super().__init__(fn, batches, values)
        self.model: nn.Module = fn.model
        self.loss_fn = loss_fn
        self.names = [n.removeprefix("model.") for n in fn.names]
        self.fixed = {k.removeprefix("model."): v for k, v in fn.fixed.items()}
        self.train_mode = "eval" if fn.bn_mode == "eval" else "train"
        self.budget = int(budget)
        self._kept: dict[int, tuple[torch.Tensor, Callable, torch.Tensor]] = {}
        self._kept_bytes = 0
        self._full = False
        self._autograd = False  # torch.func failed: autograd from now on

    # -- pieces ---------------------------------------------------------------------------
    def _outputs(self, leaves: Sequence[torch.Tensor], batch: Any) -> torch.Tensor:
        tensors = dict(self.fixed)
        tensors.update(zip(self.names, leaves, strict=True))
        args, kwargs, _ = _call_parts(batch)
        with _modes(self.model, self.train_mode):
            out = functional_call(self.model, tensors, args, kwargs)
        return output_logits(out)

    def _linearised(self, index: int) -> tuple[torch.Tensor, Callable, torch.Tensor]:
        """``(outputs, vjp_fn, target)`` of batch ``index`` (kept while within the budget)."""
        kept = self._kept.get(index)
        if kept is not None:
            return kept
        data, _ = self.batches[index]
        out, vjp_fn = torch.func.vjp(lambda *p: self._outputs(p, data), *self.values)
        item = (out.detach(), vjp_fn, _call_parts(data)[2])
        if not self._full:
            size = self._graph_bytes(data)
            if self._kept_bytes + size <= self.budget:
                self._kept[index] = item
                self._kept_bytes += size
            else:
                self._full = True
        return item

    def _graph_bytes(self, data: Any) -> int:
        """Bytes autograd saves for one forward of the outputs (torch.func's transforms refuse
        saved-tensor hooks, so the count comes from a plain autograd forward, once per batch)."""
        leaves = [v.detach().requires_grad_(True) for v in self.values]
        exclude = leaves + tensors_of(data)
        with torch.enable_grad(), _count_saved_bytes(exclude) as counter:
            self._outputs(leaves, data)
        return counter[0]

    def _batch_ggn(self, index: int, V: Pieces) -> Pieces:
        data, w = self.batches[index]
        out, vjp_fn, target = self._linearised(index)
        primals = tuple(self.values)
        # H_out u by reverse over reverse on the small output tensor (H_out is symmetric; the
        # forward-over-reverse form hits a torch.func bug for losses such as mse_loss).
        _, hess_out = torch.func.vjp(torch.func.grad(lambda o: self.loss_fn(o, target) * w), out)

        def one(t: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            _, jv = torch.func.jvp(lambda *p: self._outputs(p, data), primals, t)
            return vjp_fn(hess_out(jv)[0])

        m = V[0].shape[0]
        if m == 1:
            return [r.unsqueeze(0) for r in one(tuple(v[0] for v in V))]
        if self.block_mode != "loop":
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = torch.func.vmap(one)(tuple(V))
            if not caught:
                self._decide("batched", "every operation of the model has a vmap rule")
                return list(res)
            self._decide("loop", f"vmap warned ({_first_line(caught[0].message)})")
        cols = [one(tuple(v[j] for v in V)) for j in range(m)]
        return [torch.stack([c[p] for c in cols]) for p in range(len(V))]

    def _batch_ggn_autograd(self, index: int, V: Pieces) -> Pieces:
        """The same product by autograd alone: J v = ∂/∂u (Jᵀu)·v (the double-VJP trick)."""
        data, w = self.batches[index]
        target = _call_parts(data)[2]
        leaves = [v.detach().requires_grad_(True) for v in self.values]
        cols = []
        with torch.enable_grad():
            out = self._outputs(leaves, data)
            u = torch.zeros_like(out, requires_grad=True)
            jtu = torch.autograd.grad(out, leaves, u, create_graph=True, allow_unused=True)
            pairs = [(j, le) for j, le in zip(jtu, leaves, strict=True) if j is not None]
            o = out.detach().requires_grad_(True)
            g_out = torch.autograd.grad(self.loss_fn(o, target) * w, o, create_graph=True)[0]
            for j in range(V[0].shape[0]):
                vs = [V[i][j] for i, jt in enumerate(jtu) if jt is not None]
                jv = torch.autograd.grad(
                    [p for p, _ in pairs], u, vs, retain_graph=True, allow_unused=True
                )[0]
                jv = torch.zeros_like(out) if jv is None else jv
                hjv = torch.autograd.grad(g_out, o, jv, retain_graph=True)[0]
                res = torch.autograd.grad(out, leaves, hjv, retain_graph=True, allow_unused=True)
                cols.append(
                    [
                        torch.zeros_like(le) if r is None else r
                        for r, le in zip(res, leaves, strict=True)
                    ]
                )
        return [torch.stack([c[p] for c in cols]).detach() for p in range(len(V))]

    # -- interface --------------------------------------------------------------------------
    def hvp(self, V: Pieces) -> Pieces:
        parts = []
        for i in range(len(self.batches)):
            if not self._autograd:
                try:
                    parts.append(self._batch_ggn(i, V))
                    continue
                except (RuntimeError, NotImplementedError) as exc:
                    logger.warning(
                        "GGNOperator: torch.func cannot trace this model (%s); falling back to "
                        "autograd products",
                        _first_line(exc),
                    )
                    self._autograd, self._kept, self._kept_bytes = True, {}, 0
                    self.style = "ggn (autograd)"
            parts.append(self._batch_ggn_autograd(i, V))
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
        **options: every other keyword of :class:`~sgdscope.curvature.HessianOperator` but
            ``hvp`` (the GGN has one product style).

    Example:
        >>> G = GGNOperator(model, torch.nn.functional.cross_entropy, (x, y))
        >>> lanczos(G, k=5).eigenvalues        # λ₁(G) ≥ … ≥ λ₅(G) ≥ 0
    """

    def __init__(self, model: nn.Module, loss_fn: Any, data: Any, **options: Any) -> None:
        if "hvp" in options:
            raise InvalidArgumentError(
                "hvp: the GGN has one product style (JVP, output Hessian, VJP); fix: drop hvp="
            )
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
            fn, kw["batches"], leaves, module._objective.loss_fn, kw["memory_budget"]
        )
        _block_mode(engine, kw.get("block_products", "auto"))
        return engine


def _block_mode(engine: _Engine, block_products: str) -> None:
    if block_products == "loop":
        engine.block_mode = "loop"
        engine.block_reason = "loop: requested (block_products='loop'); one product per vector"
