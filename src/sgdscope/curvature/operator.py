"""Linear operators on flat vectors and the Hessian of a model's loss over a dataset.

:class:`LinearOperator` is the small base every operator shares: subclasses implement only the
product of the operator with a block of vectors (``_matmat``); the base owns shape and dtype checks,
``op @ v``, ``matvec``, ``matmat``, the product counter ``num_matvecs`` and the ``to_scipy()`` view.

:class:`HessianOperator` is H(θ) = ∇²L(θ) with L the mean loss over all of a dataset. It never
builds H: each product is a Hessian-vector product computed by one of the styles in
:mod:`sgdscope.curvature._hvp`.
"""

from __future__ import annotations

import abc
import fnmatch
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .._batching import (
    Objective,
    ObjectiveModule,
    concat_batches,
    move_batch,
    num_rows,
    raw_batches,
    resolve_reduction,
    slice_batch,
)
from .._defaults import DEFAULT_BN_MODE
from .._distributed import (
    AUTO,
    Shard,
    agree_reduction,
    fingerprint,
    local_counts,
    local_verdict,
    replicated,
    resolve_group,
)
from .._state import BN_MODES, has_batchnorm
from ..errors import InvalidArgumentError, NonFiniteError
from ._hvp import BLOCK_PRODUCTS, HVP_STYLES, Batch, eval_loss, make_engine

__all__ = ["HessianOperator", "LinearOperator", "as_operator"]


class LinearOperator(abc.ABC):
    """A square ``(n, n)`` linear operator acting on flat torch vectors.

    Subclasses implement :meth:`_matmat` (an ``(n, m)`` block in, an ``(n, m)`` block out, in the
    operator's dtype and on its device). The base checks shapes, converts inputs to the operator's
    dtype and device, counts products in :attr:`num_matvecs` (one per column) and offers
    :meth:`to_scipy`.

    Attributes:
        shape: ``(n, n)``.
        dtype: dtype of the vectors the operator returns.
        device: device of the vectors the operator returns.
        num_matvecs: number of operator-vector products computed so far (a block of m counts m).
        symmetric: whether the operator is self-adjoint (the Hessian is).
    """

    symmetric: bool = True
    #: The data-parallel group whose ranks' data the operator spans (None: this process's data
    #: only). Every product is then a collective, and the estimators run in lock-step.
    shard: Shard | None = None

    def __init__(self, n: int, *, dtype: torch.dtype, device: torch.device | str) -> None:
        if n < 1:
            raise InvalidArgumentError(f"an operator needs a positive dimension, got n={n}")
        self._n = int(n)
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self._n, self._n)

    @abc.abstractmethod
    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        """The product with an (n, m) block; the only method a subclass must provide."""

    def _check(self, x: Any, ndim: int) -> torch.Tensor:
        expected = f"({self._n},)" if ndim == 1 else f"({self._n}, m)"
        if not isinstance(x, torch.Tensor):
            raise InvalidArgumentError(
                f"expected a torch tensor of shape {expected}, received {type(x).__name__}; "
                "fix: pass a flat tensor (torch.cat([p.reshape(-1) for p in params]))"
            )
        if x.ndim != ndim or x.shape[0] != self._n:
            raise InvalidArgumentError(
                f"expected a tensor of shape {expected}, received shape {tuple(x.shape)}; fix: "
                "flatten the vector over all the operator's parameters (op.shape[0] entries)"
                + ("" if ndim == 1 else ", one column per vector")
            )
        if not (x.is_floating_point() or x.is_complex()):
            x = x.to(self.dtype)
        return x.to(device=self.device, dtype=self.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for a flat vector ``v`` of shape ``(n,)``."""
        v = self._check(v, 1)
        out = self._matvec(v)
        self.num_matvecs += 1
        return out

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._matmat(v.unsqueeze(1))[:, 0]

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``A V`` for a block ``V`` of shape ``(n, m)`` (cheaper per vector than m matvecs where
        the operator can batch)."""
        V = self._check(V, 2)
        if V.shape[1] == 0:
            return torch.empty_like(V)
        out = self._matmat(V)
        self.num_matvecs += V.shape[1]
        return out

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.ndim == 2:
            return self.matmat(x)
        return self.matvec(x)

    def to_scipy(self):
        """A ``scipy.sparse.linalg.LinearOperator`` view (numpy in, numpy out; float64 numpy
        inputs are converted to the operator's dtype), e.g. for ``scipy.sparse.linalg.eigsh``."""
        import numpy as np
        from scipy.sparse.linalg import LinearOperator as ScipyLinearOperator

        np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype

        def _mv(x: np.ndarray) -> np.ndarray:
            v = torch.from_numpy(np.ascontiguousarray(x).reshape(-1))
            return self.matvec(v).detach().cpu().numpy()

        def _mm(X: np.ndarray) -> np.ndarray:
            V = torch.from_numpy(np.ascontiguousarray(X))
            return self.matmat(V).detach().cpu().numpy()

        return ScipyLinearOperator(
            self.shape, matvec=_mv, rmatvec=_mv, matmat=_mm, rmatmat=_mm, dtype=np_dtype
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self._n}, dtype={self.dtype}, device={self.device})"


class _MatrixOperator(LinearOperator):
    """An explicit (dense) symmetric matrix as an operator (tests, small problems)."""

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__(A.shape[0], dtype=A.dtype, device=A.device)
        self.A = A

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        return self.A @ V


class _CallableOperator(LinearOperator):
    """Wraps any object with a ``shape`` that is callable on (or has ``matvec`` for) vectors."""

    def __init__(self, obj: Any, n: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(n, dtype=dtype, device=device)
        self._fn: Callable[[torch.Tensor], torch.Tensor] = (
            obj.matvec if hasattr(obj, "matvec") else obj
        )

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        cols = [torch.as_tensor(self._fn(V[:, i])).reshape(-1) for i in range(V.shape[1])]
        return torch.stack(cols, dim=1).to(device=self.device, dtype=self.dtype)


def as_operator(A: Any) -> LinearOperator:
    """View ``A`` as a :class:`LinearOperator`.

    Accepts an operator, a square 2-D tensor, or any object with ``shape == (n, n)`` that is
    callable on flat vectors or has a ``matvec`` method (its ``dtype``/``device`` attributes, when
    present, set the operator's; otherwise float64 on the CPU).
    """
    if isinstance(A, LinearOperator):
        return A
    if isinstance(A, torch.Tensor):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise InvalidArgumentError(
                f"expected a square matrix of shape (n, n), received shape {tuple(A.shape)}; "
                "fix: pass the symmetric matrix itself"
            )
        if not A.is_floating_point():
            A = A.double()
        return _MatrixOperator(A)
    shape = getattr(A, "shape", None)
    if shape is not None and (callable(A) or hasattr(A, "matvec")):
        shape = tuple(shape)
        if len(shape) != 2 or shape[0] != shape[1]:
            raise InvalidArgumentError(
                f"expected a square operator of shape (n, n), received shape {shape}; fix: "
                "pass a Hessian (or other symmetric) operator"
            )
        dtype = getattr(A, "dtype", torch.float64)
        if not isinstance(dtype, torch.dtype):
            dtype = torch.float64
        device = torch.device(getattr(A, "device", "cpu"))
        return _CallableOperator(A, int(shape[0]), dtype, device)
    raise InvalidArgumentError(
        f"expected a linear operator, received {type(A).__name__}; fix: pass a HessianOperator, "
        "a square torch matrix, or an object with shape (n, n) that is callable on flat vectors"
    )


def _resolve_params(
    model: nn.Module,
    params: Iterable[Any] | None,
    param_filter: str | Sequence[str] | Callable[[str], bool] | None = None,
) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs the operator differentiates, in model order."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if param_filter is not None:
        if params is not None:
            raise InvalidArgumentError(
                "params and param_filter both select parameters; fix: pass one of them"
            )
        return _filter_params(trainable, param_filter)
    if params is None:
        if not trainable:
            raise InvalidArgumentError(
                "the model has no trainable parameters (requires_grad=True); the Hessian is "
                "empty. fix: unfreeze the parameters to measure, or pass params=[...]"
            )
        return trainable
    chosen = list(params)
    if not chosen:
        raise InvalidArgumentError(
            "params=[] selects nothing; pass some parameters (or names), or None"
        )
    by_name = dict(model.named_parameters())
    wanted_ids: set[int] = set()
    for item in chosen:
        if isinstance(item, str):
            if item not in by_name:
                raise InvalidArgumentError(
                    f"params: {item!r} is not a parameter name of the model; expected one of "
                    f"{', '.join(list(by_name)[:8])}{', ...' if len(by_name) > 8 else ''} "
                    "(for name patterns use param_filter='layer.*')"
                )
            wanted_ids.add(id(by_name[item]))
        elif isinstance(item, torch.Tensor):
            wanted_ids.add(id(item))
        else:
            raise InvalidArgumentError(
                f"params: expected parameters or parameter names, received {type(item).__name__}"
            )
    out = [(n, p) for n, p in model.named_parameters() if id(p) in wanted_ids]
    if len(out) != len(wanted_ids):
        raise InvalidArgumentError(
            "params: some given tensors are not parameters of this model; fix: pass tensors from "
            "model.parameters() (or their names from model.named_parameters())"
        )
    return out


def _filter_params(
    trainable: list[tuple[str, nn.Parameter]],
    param_filter: str | Sequence[str] | Callable[[str], bool],
) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters whose full names match a glob pattern (any of several), or for
    which a predicate is true."""
    if callable(param_filter):
        keep = param_filter
        shown = getattr(param_filter, "__name__", "the predicate")
    else:
        patterns = [param_filter] if isinstance(param_filter, str) else list(param_filter)
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise InvalidArgumentError(
                f"param_filter: expected a glob pattern, a list of them or a predicate "
                f"name -> bool, received {param_filter!r}"
            )

        def keep(name: str) -> bool:
            return any(fnmatch.fnmatchcase(name, p) for p in patterns)

        shown = ", ".join(repr(p) for p in patterns)
    out = [(n, p) for n, p in trainable if keep(n)]
    if not out:
        names = [n for n, _ in trainable]
        raise InvalidArgumentError(
            f"param_filter {shown} matches no trainable parameter; expected a pattern over full "
            f"names such as {', '.join(names[:4])}{', ...' if len(names) > 4 else ''} "
            "(fnmatch: '*' also matches dots; fix: start with '*' to match a suffix, e.g. "
            "'*h.0.attn.*')"
        )
    return out


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    for b in model.buffers():
        return b.device, (b.dtype if b.is_floating_point() else torch.get_default_dtype())
    return torch.device("cpu"), torch.get_default_dtype()


def _prepare_batches(
    data: Any,
    objective: Objective,
    batch_size: int | None,
    device: torch.device,
    dtype: torch.dtype,
    bn_mode: str,
    ghost_batch_size: int | None,
    allow_empty: bool = False,
) -> list[Any]:
    """Read ``data`` once into a list of batches on the model's device (floating tensors in the
    evaluation dtype), each checked against the objective. ``allow_empty``: a rank's shard may
    be empty (the data of the other ranks is not)."""
    closure = objective.kind == "closure"
    raw = list(raw_batches(data, batch_size, closure=closure))
    if not raw and allow_empty:
        return []
    if not raw:
        raise InvalidArgumentError(
            "the data is empty: expected at least one batch; fix: check the split or "
            "DataLoader passed to HessianOperator"
        )
    single = len(raw) == 1
    for i, b in enumerate(raw):
        objective.check(b, -1 if single else i)
    batches = [move_batch(b, device, dtype) for b in raw]
    if bn_mode == "ghost" and batches:
        whole = concat_batches(batches)
        rows = num_rows(whole)
        gbs = int(ghost_batch_size)  # type: ignore[arg-type]  # checked by the caller
        assert rows is not None
        batches = [slice_batch(whole, s, s + gbs, rows) for s in range(0, rows, gbs)]
    return batches


def _available_memory(device: torch.device) -> int:
    """Free memory on ``device`` in bytes (CUDA: free device memory; CPU: MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**31


def _processes_per_machine(world_size: int) -> int:
    """Processes sharing this machine's memory: torchrun's ``LOCAL_WORLD_SIZE``, else all."""
    import os

    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))
    except ValueError:
        return max(1, world_size)


class HessianOperator(LinearOperator):
    """The Hessian H = ∇²L(θ) of the loss over ``data``, as a linear operator.

    L(θ) = Σ_b w_b · L_b(θ), L_b the loss of batch b, differentiated twice with respect to the
    trainable parameters (or the chosen subset ``params`` / ``param_filter``, which gives the
    diagonal block of H for those parameters; the others stay fixed). H is never built. The
    weights follow the loss's reduction (see :mod:`sgdscope._batching`): ``"mean"`` —
    w_b = n_b / Σ n (n_b the batch's loss terms), so L is the mean over all loss terms of the
    data; ``"sum"`` — w_b = 1, so L is the total over the data (curvlinops' convention). With a
    single batch, L is simply its loss. A reduction the operator cannot interpret is refused.

    The operator is H at a snapshot θ taken at construction (the model's current parameters, or
    ``theta``): products do not read the model's parameters again, so build a new operator after
    the model changes. The data is read once at construction, in its order then (a shuffling
    DataLoader is frozen into one epoch: the operator is one fixed matrix, which Lanczos needs).
    Nothing of the model changes: products run ``torch.func.functional_call`` on the snapshot, with
    BatchNorm buffers passed functionally (running statistics in ``eval`` mode, none in ``train`` /
    ``ghost`` mode, so they are never updated); the train/eval flags and the RNG are restored.

    Args:
        model: the network; its device and dtype set the operator's.
        loss_fn: ``loss_fn(output, target)`` → the loss of a batch (for dict batches,
            ``loss_fn(logits, batch["labels"])``); ``None`` to use the model's own ``.loss``
            (Hugging Face models given dict batches with ``labels``); or an
            :class:`~sgdscope.LossClosure` ``fn(model, batch)`` for anything else.
        data: one batch — an ``(inputs, target)`` tuple (inputs a tensor, a dict or a tuple of
            tensors) or a dict — or several: a list of them, a DataLoader, an sgdscope split.
            A tuple is one batch, a list several (:mod:`sgdscope._batching`).
        bn_mode: ``"train"``: BatchNorm uses the statistics of each batch (what SGD sees; the
            result then depends on how the data is batched); ``"eval"``: running statistics;
            ``"ghost"``: batch statistics over fixed consecutive ghost batches of
            ``ghost_batch_size`` examples, whatever the loader's batch size. Dropout and every
            other train-mode behaviour are off.
        ghost_batch_size: size of the ghost batches (required for ``bn_mode="ghost"``).
        params: a subset of the model's parameters (tensors or names) for a diagonal block.
        param_filter: the same by name: a glob pattern over full parameter names
            (``"transformer.h.0.attn.*"``; ``*`` matches dots too), a list of patterns, or a
            predicate ``name -> bool``. Not together with ``params``.
        dtype: evaluate in this dtype (e.g. ``torch.float64`` for references); default: the
            model's. The model itself is not converted.
        theta: flat values of all trainable parameters to evaluate at (default: the model's).
        batch_size: cut a single batch or a split into chunks of this many rows (default: as
            given).
        hvp: the product style: ``"auto"`` (the reused first-order graph within
            ``memory_budget``, recomputation for what does not fit), ``"reuse"`` (same),
            ``"double_backward"`` (recompute per product), ``"forward_over_reverse"``
            (``torch.func.jvp`` of ``torch.func.grad``; falls back to double backward when
            torch.func cannot trace the model).
        memory_budget: bytes the reused first-order graph may hold (default: a quarter of the free
            memory of the device, shared among the data-parallel processes of one machine on the
            CPU); 0 disables reuse. It changes speed only, never the numbers.
        block_products: how a block of m vectors (``matmat``) is multiplied: ``"auto"`` (one
            batched backward whenever every operation of the model has a batching rule, else a
            loop), ``"batched"`` (the same), or ``"loop"`` (one product per vector: less memory,
            and faster on CPU for some models, 1.3-1.45x on small GPT-2s; see
            ``benchmarks/results/hf.md``). Never chosen by a timing; ``info`` records it.
        group: data parallelism (:mod:`sgdscope._distributed`). ``"auto"`` (default): when
            ``torch.distributed`` is initialised with several processes (torchrun, Lightning,
            Ray Train), ``data`` is this rank's shard and H is the Hessian of the loss over the
            union of every rank's data: each product is the weighted all-reduce of the ranks'
            products (weights from the loss terms of all ranks, so unequal shards are exact),
            and the estimators run in lock-step on every rank. Replicated data (the same on
            every rank) is computed by each rank alone. ``None``: this process's data only,
            no communication. A ``ProcessGroup``: shard over that group. With BatchNorm in
            train / ghost mode each rank's batches use their own statistics;
            ``info["data_parallel"]`` records the mode, ranks and that.
        reduction: ``"mean"`` or ``"sum"``: declares how ``loss_fn`` reduces a batch when it
            cannot be read from ``loss_fn.reduction`` (a plain function). None: read it, or tell
            it by a check on one batch (see :mod:`sgdscope._batching`).
        batch_size_fn: ``batch -> int``, the number of loss terms of a batch, for weighting
            batches of unequal size in a mean (default: the target's elements, tokens not
            labelled -100; for Hugging Face causal LMs the shifted labels).

    Attributes:
        reduction: ``"mean"``, ``"sum"``, or None (a single batch: nothing to combine, and not
            checked).
        info: how products are computed (style, block products and why, retained graph, the
            reduction and how it was determined, ``data_parallel``: single process, sharded or
            replicated, the ranks, and per-shard BatchNorm statistics).
        shard: the data-parallel :class:`~sgdscope._distributed.Shard` when the operator spans
            several ranks' data (products are then collectives), else None.

    Example:
        >>> op = HessianOperator(model, torch.nn.functional.cross_entropy, (x, y))
        >>> hv = op @ torch.randn(op.shape[0])
        >>> op = HessianOperator(gpt2, None, [batch1, batch2], param_filter="transformer.h.0.*")
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., torch.Tensor] | None,
        data: Any,
        *,
        bn_mode: str = DEFAULT_BN_MODE,
        ghost_batch_size: int | None = None,
        params: Iterable[Any] | None = None,
        param_filter: str | Sequence[str] | Callable[[str], bool] | None = None,
        dtype: torch.dtype | None = None,
        theta: torch.Tensor | None = None,
        batch_size: int | None = None,
        hvp: str = "auto",
        memory_budget: int | None = None,
        reduction: str | None = None,
        batch_size_fn: Callable[[Any], int] | None = None,
        block_products: str = "auto",
        group: Any = AUTO,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidArgumentError(
                f"model: expected a torch.nn.Module, received {type(model).__name__}"
            )
        if bn_mode not in BN_MODES:
            raise InvalidArgumentError(
                f"bn_mode: expected one of {', '.join(BN_MODES)}, received {bn_mode!r}"
            )
        if bn_mode == "ghost":
            if ghost_batch_size is None or int(ghost_batch_size) < 1:
                raise InvalidArgumentError(
                    f"bn_mode='ghost' needs ghost_batch_size >= 1, received {ghost_batch_size!r}; "
                    "fix: pass ghost_batch_size=<the training batch size>"
                )
        if hvp not in HVP_STYLES:
            raise InvalidArgumentError(
                f"hvp: expected one of {', '.join(HVP_STYLES)}, received {hvp!r}"
            )
        if block_products not in BLOCK_PRODUCTS:
            raise InvalidArgumentError(
                f"block_products: expected one of {', '.join(BLOCK_PRODUCTS)}, received "
                f"{block_products!r}"
            )
        if batch_size is not None and int(batch_size) < 1:
            raise InvalidArgumentError(
                f"batch_size: expected a positive integer, received {batch_size!r}"
            )
        if memory_budget is not None and memory_budget < 0:
            raise InvalidArgumentError(
                f"memory_budget: expected bytes >= 0, received {memory_budget!r}"
            )

        objective = Objective(loss_fn, model, reduction=reduction, batch_size_fn=batch_size_fn)
        device, model_dtype = _model_device_dtype(model)
        dtype = model_dtype if dtype is None else dtype
        named = _resolve_params(model, params, param_filter)
        self.param_names: list[str] = [n for n, _ in named]
        self.param_shapes: list[torch.Size] = [p.shape for _, p in named]
        self._numels = [math.prod(s) for s in self.param_shapes]
        super().__init__(sum(self._numels), dtype=dtype, device=device)
        self.bn_mode = bn_mode
        self.ghost_batch_size = ghost_batch_size
        self.has_batchnorm = has_batchnorm(model)

        # Snapshot θ (all trainable parameters) and the buffers, in the evaluation dtype.
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        values: dict[str, torch.Tensor] = {
            n: p.detach().to(dtype=dtype) for n, p in model.named_parameters()
        }
        if theta is not None:
            n_all = sum(p.numel() for _, p in trainable)
            if not isinstance(theta, torch.Tensor) or theta.shape != (n_all,):
                got = tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta)
                raise InvalidArgumentError(
                    f"theta: expected a flat tensor of shape ({n_all},) (all trainable "
                    f"parameters, in model order), received {got}"
                )
            offset = 0
            for n, p in trainable:
                values[n] = theta[offset : offset + p.numel()].detach().view(p.shape)
                offset += p.numel()
        values = {n: v.to(device=device, dtype=dtype) for n, v in values.items()}
        for n, _ in named:  # the differentiated leaves: private copies, never the model's own
            values[n] = values[n].clone()
        buffers: dict[str, torch.Tensor | None] = {}
        running: dict[str, torch.Tensor] = {}  # every buffer as it is: for the reduction check
        for mod_name, mod in model.named_modules():
            for b_name, b in mod.named_buffers(recurse=False):
                full = f"{mod_name}.{b_name}" if mod_name else b_name
                cast = dtype if b.is_floating_point() else b.dtype
                copy = b.detach().to(device=device, dtype=cast, copy=True)
                running[full] = copy
                is_norm = isinstance(mod, nn.modules.batchnorm._BatchNorm)
                # train / ghost: batch statistics; running ones never touched
                buffers[full] = None if is_norm and bn_mode in ("train", "ghost") else copy

        module = ObjectiveModule(model, objective)
        evaluate = eval_loss(module, values, running)
        group_shard = resolve_group(group)
        self.shard = None
        self._dp_info: dict[str, Any] = {
            "mode": "single process" if group is not None else "single process (group=None)"
        }
        if group_shard is not None:
            batches, red, how, weights = self._sharded_batches(
                group_shard, data, objective, evaluate, batch_size, device, dtype, bn_mode,
                ghost_batch_size,
            )  # fmt: skip
        else:
            batches = _prepare_batches(
                data, objective, batch_size, device, dtype, bn_mode, ghost_batch_size
            )
            red, how, weights = _single_weights(objective, batches, evaluate)
        self.reduction: str | None = red
        self._reduction_info = {"reduction": self.reduction, "reduction_source": how}
        self._frozen = _frozen_rows(model, named)
        self._batches: list[Batch] = list(zip(batches, weights, strict=True))
        if memory_budget is None:
            budget = _available_memory(device) // 4
            if group_shard is not None and device.type != "cuda":
                # The processes of one machine share its memory (each GPU has its own).
                budget //= _processes_per_machine(group_shard.world_size)
        else:
            budget = memory_budget
        self.memory_budget = int(budget)
        self._engine = self._make_engine(
            hvp,
            module=module,
            batches=self._batches,
            names=self.param_names,
            values=values,
            buffers=buffers,
            bn_mode=bn_mode,
            memory_budget=self.memory_budget,
            block_products=block_products,
        )

    def _make_engine(self, style: str, **pieces: Any) -> Any:
        """The product engine on the snapshot (``module``, ``batches`` with their weights,
        ``names``, ``values``, ``buffers``, ``bn_mode``, ``memory_budget``, ``block_products``);
        other curvature operators on this base (GGN, empirical Fisher) override it."""
        return make_engine(style, **pieces)

    # ---------------------------------------------------------------------------------------
    @property
    def hvp_style(self) -> str:
        """The product style in use (after any fallback)."""
        return self._engine.style

    @property
    def num_batches(self) -> int:
        return len(self._batches)

    @property
    def info(self) -> dict[str, Any]:
        """How products are computed: style, block products (batched or a loop, and why),
        retained graph bytes and batches, fallbacks, the reduction and its source, and the
        frozen rows (embedding padding rows)."""
        frozen = [f"{self.param_names[i]}[{row}]" for i, row in self._frozen]
        return {
            **self._engine.info(),
            **self._reduction_info,
            "frozen_rows": frozen,
            "data_parallel": dict(self._dp_info),
        }

    def unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Split a flat vector (n,) or block (n, m) into per-parameter views, in model order."""
        pieces = torch.split(v, self._numels, dim=0)
        if v.ndim == 1:
            return [p.view(s) for p, s in zip(pieces, self.param_shapes, strict=True)]
        m = v.shape[1]
        return [p.T.reshape(m, *s) for p, s in zip(pieces, self.param_shapes, strict=True)]

    def flatten(self, tensors: Sequence[torch.Tensor], batched: bool = False) -> torch.Tensor:
        """Inverse of :meth:`unflatten` (``batched``: tensors of shape (m, *param_shape))."""
        if not batched:
            return torch.cat([t.reshape(-1) for t in tensors])
        m = tensors[0].shape[0]
        return torch.cat([t.reshape(m, -1) for t in tensors], dim=1).T

    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        if self.shard is not None:
            self.shard.check_same(V, "HessianOperator.matmat")
        pieces = self._freeze(self.unflatten(V))
        out = self._freeze(self._engine.hvp(pieces))
        if self.shard is not None:
            # One all-reduce of the whole (m, n) block: Σ over ranks of Σ_b w_b H_b V.
            m = V.shape[1]
            local = torch.cat([t.reshape(m, -1).to(dtype=self.dtype) for t in out], dim=1)
            return self.shard.all_reduce(local, inplace=True).T
        return self.flatten(out, batched=True).to(dtype=self.dtype)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        if self.shard is not None:
            self.shard.check_same(v, "HessianOperator.matvec")
        pieces = [
            p.view(1, *s)
            for p, s in zip(torch.split(v, self._numels), self.param_shapes, strict=True)
        ]
        out = self._freeze(self._engine.hvp(self._freeze(pieces)))
        flat = torch.cat([t.reshape(-1) for t in out]).to(dtype=self.dtype)
        return flat if self.shard is None else self.shard.all_reduce(flat, inplace=True)

    def _freeze(self, pieces: list[torch.Tensor]) -> list[torch.Tensor]:
        """Zero the frozen rows of per-parameter blocks (m, *shape) (see :func:`_frozen_rows`)."""
        if not self._frozen:
            return pieces
        pieces = list(pieces)
        for i, row in self._frozen:
            t = pieces[i].clone()
            t[:, row] = 0
            pieces[i] = t
        return pieces

    def gradient(self) -> torch.Tensor:
        """The gradient ∇L(θ) (flat, shape (n,)) of the loss over the data at the snapshot
        (over every rank's data when sharded: a collective)."""
        g = self.flatten(self._engine.gradient())
        return g if self.shard is None else self.shard.all_reduce(g)

    def loss(self) -> float:
        """The loss L(θ) over the data at the snapshot (mean or sum by the reduction, in the
        operator's BatchNorm mode; over every rank's data when sharded: a collective)."""
        value = self._engine.loss()
        return float(value if self.shard is None else self.shard.all_reduce(value.reshape(1)))

    def _sharded_batches(
        self,
        group_shard: Shard,
        data: Any,
        objective: Objective,
        evaluate: Callable[[Any], torch.Tensor],
        batch_size: int | None,
        device: torch.device,
        dtype: torch.dtype,
        bn_mode: str,
        ghost_batch_size: int | None,
    ) -> tuple[list[Any], str | None, str, list[float]]:
        """Read this rank's shard and agree with the other ranks (one gather of small reports):
        replicated data is computed here alone; sharded data gets the weights of the union.

        Returns:
            ``(batches, reduction, how it was determined, weights)``.
        """

        def local() -> tuple[list[Any], dict[str, Any]]:
            batches = _prepare_batches(
                data, objective, batch_size, device, dtype, bn_mode, ghost_batch_size,
                allow_empty=True,
            )  # fmt: skip
            counts, no_count = local_counts(objective, batches)
            report = {
                "fingerprint": fingerprint(batches),
                "batches": len(batches),
                "counts": counts,
                "no_count": no_count,
                **local_verdict(objective, batches, evaluate),
            }
            return batches, report

        batches, reports = group_shard.everywhere(local, "HessianOperator: reading the data")
        if sum(rep["batches"] for rep in reports) == 0:
            raise InvalidArgumentError(
                f"the data is empty on all {group_shard.world_size} ranks: expected at least one "
                "batch; fix: check the shards passed to HessianOperator"
            )
        if replicated([rep["fingerprint"] for rep in reports]):
            # Every rank holds all the data: compute it here alone (what one process would).
            self._dp_info = {**group_shard.info(), "mode": "replicated"}
            red, how, weights = _single_weights(objective, batches, evaluate)
            return batches, red, how, weights
        red, how, total = agree_reduction(objective, group_shard, reports)
        counts = reports[group_shard.rank]["counts"]
        if red == "mean":
            weights = [c / total for c in counts]
        else:
            weights = [1.0] * len(batches)
        self.shard = group_shard
        self._dp_info = {
            **group_shard.info(),
            "local_batches": len(batches),
            "total_batches": sum(rep["batches"] for rep in reports),
        }
        if self.has_batchnorm and bn_mode in ("train", "ghost"):
            self._dp_info["batchnorm"] = (
                "per-shard batch statistics: each rank's batches are normalised with their own "
                "statistics (the single-process result on the union batched as the shards are)"
            )
        return batches, red, how, weights

    def release(self) -> None:
        """Free the retained first-order graph (products after this rebuild it)."""
        self._engine.release()


def _single_weights(
    objective: Objective, batches: list[Any], evaluate: Callable[[Any], torch.Tensor]
) -> tuple[str | None, str, list[float]]:
    """The reduction and the batch weights of data held by one process."""
    if len(batches) > 1:
        red, how = resolve_reduction(objective, batches, evaluate)
        counts = objective.counts(batches) if red == "mean" else None
    else:
        red, how, counts = objective.declared, "one batch: nothing to combine", None
    if counts is not None:
        total = sum(counts)
        weights = [c / total for c in counts]
    else:
        weights = [1.0] * len(batches)
    return (red if len(batches) > 1 else objective.declared), how, weights


def _frozen_rows(model: nn.Module, named: list[tuple[str, nn.Parameter]]) -> list[tuple[int, int]]:
    """(parameter index, row) of every embedding padding row among the differentiated tensors.

    torch defines the gradient of an embedding's ``padding_idx`` row as zero although the row is
    used in the forward, so SGD never moves it and the derivative of the gradient is not
    symmetric there (double backward and forward-over-reverse disagree). The operator treats those
    rows as frozen: H restricted to the coordinates SGD can move, with zero rows and columns for
    the padding rows (recorded in ``info["frozen_rows"]``).
    """
    index = {id(p): i for i, (_, p) in enumerate(named)}
    out = []
    for mod in model.modules():
        pad = getattr(mod, "padding_idx", None)
        weight = getattr(mod, "weight", None)
        if (
            isinstance(mod, (nn.Embedding, nn.EmbeddingBag))
            and pad is not None
            and weight is not None
            and id(weight) in index
        ):
            out.append((index[id(weight)], int(pad) % weight.shape[0]))
    return sorted(set(out))


def check_finite(
    out: torch.Tensor, routine: str, product: int, partial: Callable[[], Any] | None = None
) -> torch.Tensor:
    """Return ``out`` (an operator product, or a block of them) if every entry is finite, else
    raise :class:`~sgdscope.errors.NonFiniteError` naming the first bad product.

    ``product`` is the 1-based index of the first product in ``out``; ``partial`` builds the
    estimator's partial result (called only on failure).
    """
    finite = torch.isfinite(out)
    if bool(finite.all()):
        return out
    cols = finite.reshape(out.shape[0], -1).all(dim=0)
    first = int((~cols).nonzero()[0, 0]) if out.ndim == 2 else 0
    bad = out[:, first] if out.ndim == 2 else out
    n_nan, n_inf = int(torch.isnan(bad).sum()), int(torch.isinf(bad).sum())
    index = product + first
    raise NonFiniteError(
        f"{routine}: operator product {index} was not finite ({n_nan} NaN and {n_inf} inf of "
        f"{bad.numel()} entries); the model's parameters, its data or its loss hold NaN/inf "
        "(a diverged run, a log of 0, a bad batch); fix: check them — the estimates so far are "
        "in this error's .partial",
        routine=routine,
        product=index,
        partial=None if partial is None else partial(),
    )
