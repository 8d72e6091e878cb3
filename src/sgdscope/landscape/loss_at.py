"""The loss of a model at given flat parameter vectors: the hot path of paper B's interpolations.

:func:`loss_at` evaluates the loss (and accuracy) over a whole dataset at one or several flat
parameter vectors θ ∈ Rⁿ (the trainable parameters, in ``model.parameters()`` order, as
:func:`sgdscope.probes.flat_params` flattens them). Each point is written in place into the
model's own parameters (no ``state_dict`` copies, no model rebuilds), the forward passes run in
``torch.inference_mode`` on large batches, and the parameters, buffers, module modes, ``.grad``
and RNG state are restored exactly afterwards.

BatchNorm: in ``bn_mode="train"`` each batch is normalised with its own statistics, so the loss
depends on how the data is cut into batches. By default the whole data is one batch when its
activations fit in ``max_batch_bytes`` (estimated once per model and input shape); pass
``batch_size`` to fix the batching explicitly (that is what "ghost" batches are). In
``bn_mode="eval"`` the running statistics are used and the result does not depend on batching.

Data and losses: any batch structure and loss of :mod:`sgdscope._batching` (dict and tuple
inputs, Hugging Face batches with ``.loss`` or ``.logits``, :class:`~sgdscope.LossClosure`); the
losses of several batches add up by the loss's reduction, exactly as for
:class:`~sgdscope.curvature.HessianOperator`: the mean over all loss terms, or the total sum.

Several processes (:mod:`sgdscope._distributed`): under an initialised ``torch.distributed``
(``group="auto"``, the default) each rank's data is a shard; every rank evaluates the points on
its shard and the sums (loss terms, weights, correct predictions) of all points are all-reduced
once, so the result is the loss over the union of the shards on every rank. Replicated data (the
same on every rank) is evaluated by each rank alone; ``group=None`` opts out. With BatchNorm in
``bn_mode="train"`` each shard is normalised with its own batch statistics.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._batching import (
    Objective,
    move_batch,
    num_rows,
    raw_batches,
    resolve_reduction,
    slice_batch,
    tensors_of,
)
from .._defaults import DEFAULT_BN_MODE
from .._distributed import (
    AUTO,
    Fingerprint,
    Shard,
    agree_reduction,
    local_verdict,
    replicated,
    resolve_group,
)
from .._state import preserved_state, set_bn_mode
from ..errors import InvalidArgumentError

#: ``loss_fn(output, target)``, None (the model's own ``.loss``), or a LossClosure.
LossFn = Callable[..., torch.Tensor] | None

#: Default bound (bytes) on the activations of one evaluation batch; larger data is split evenly.
DEFAULT_MAX_BATCH_BYTES = 512 * 2**20

LOSS_AT_BN_MODES = ("train", "eval", "ghost")

# Per model: activation bytes per sample, keyed by (input shape, dtype). Weak keys: a model that
# is garbage-collected drops its entries.
_BYTES_PER_SAMPLE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = (
    weakref.WeakKeyDictionary()
)
# Per model: compiled batch evaluators keyed by (loss_fn, with_accuracy). The compiled function
# takes the model and the objective as arguments, so the cache does not keep the model alive.
_COMPILED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Callable]] = weakref.WeakKeyDictionary()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters a flat θ covers, in order: those with ``requires_grad``."""
    return [p for p in model.parameters() if p.requires_grad]


def loss_at(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    thetas: torch.Tensor,
    *,
    bn_mode: str = DEFAULT_BN_MODE,
    with_accuracy: bool = False,
    compile: bool = False,
    batch_size: int | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    reduction: str | None = None,
    batch_size_fn: Callable[[Any], int] | None = None,
    group: Any = AUTO,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Loss over all of ``data`` at one or several flat parameter vectors.

    The loss over the data is the mean over all loss terms for a ``"mean"`` loss, the total for a
    ``"sum"`` loss (see :mod:`sgdscope._batching` for how the reduction is read, declared or
    checked, and refused when it cannot be interpreted).

    Args:
        model: the network; its state is unchanged afterwards (parameters, buffers, train/eval
            flags, ``.grad``, RNG).
        loss_fn: ``loss_fn(output, target)`` → loss of the batch (e.g. cross-entropy); None for
            the model's own ``.loss`` (Hugging Face dict batches); or a
            :class:`~sgdscope.LossClosure`.
        data: one batch (an ``(inputs, target)`` tuple, a dict), a
            :class:`~sgdscope.data.Split`, a list of batches or a DataLoader. Single batches and
            splits are moved to the model's device once.
        thetas: one flat vector, shape (n,), or a stack of K of them, shape (K, n); n is the
            number of trainable scalars.
        bn_mode: ``"train"`` (batch statistics; paper B), ``"eval"`` (running statistics) or
            ``"ghost"`` (train mode over batches of ``batch_size``, which is then required).
        with_accuracy: also return the fraction of correct argmax predictions.
        compile: evaluate each batch with a ``torch.compile``-d function (compiled once per model
            and loss function; pays off on convolutional nets after a compile of tens of seconds).
        batch_size: evaluation batch size for pairs and splits (default: all data in one batch when
            its activations fit in ``max_batch_bytes``, else even chunks). Batches of lists and
            DataLoaders are used as given.
        max_batch_bytes: bound on the estimated activation memory of one batch (bytes).
        reduction: ``"mean"`` or ``"sum"``, declared for a loss whose reduction cannot be read
            (a plain function); None: read or checked.
        batch_size_fn: ``batch -> int``: loss terms of a batch, to weight a mean over batches
            of unequal size (default: see :class:`~sgdscope.curvature.HessianOperator`).
        group: ``"auto"`` (default: under an initialised ``torch.distributed``, ``data`` is this
            rank's shard and the loss is over every rank's data — a collective), ``None`` (this
            process's data only) or a ``ProcessGroup`` (see :mod:`sgdscope._distributed`).

    Returns:
        The losses, float64 on the CPU: shape () for one vector, (K,) for a stack. With
        ``with_accuracy``, a pair ``(losses, accuracies)`` of the same shapes.

    Example:
        >>> theta = sgdscope.probes.flat_params(model)
        >>> losses = loss_at(model, nn.functional.cross_entropy, bundle.train,
        ...                  torch.stack([theta, 0.9 * theta]), bn_mode="eval")
        >>> losses.shape, losses.dtype
        (torch.Size([2]), torch.float64)
    """
    params = trainable_parameters(model)
    n = sum(p.numel() for p in params)
    if thetas.dim() not in (1, 2) or thetas.shape[-1] != n:
        raise InvalidArgumentError(
            f"thetas: expected shape (n,) or (K, n) with n = {n} trainable parameters of the "
            f"model, got {tuple(thetas.shape)}; flatten with sgdscope.probes.flat_params(model)"
        )
    single = thetas.dim() == 1
    stack = thetas.detach().reshape(-1, n)
    device = params[0].device if params else torch.device("cpu")
    stack = stack.to(device)
    losses, accs = evaluate_points(
        model,
        loss_fn,
        data,
        (stack[k] for k in range(stack.shape[0])),
        bn_mode=bn_mode,
        with_accuracy=with_accuracy,
        compile=compile,
        batch_size=batch_size,
        max_batch_bytes=max_batch_bytes,
        reduction=reduction,
        batch_size_fn=batch_size_fn,
        group=group,
    )
    if single:
        losses = losses[0]
        accs = None if accs is None else accs[0]
    if with_accuracy:
        assert accs is not None
        return losses, accs
    return losses


def evaluate_points(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    points: Iterable[torch.Tensor],
    *,
    bn_mode: str = DEFAULT_BN_MODE,
    with_accuracy: bool = False,
    compile: bool = False,
    batch_size: int | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    reduction: str | None = None,
    batch_size_fn: Callable[[Any], int] | None = None,
    group: Any = AUTO,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Like :func:`loss_at`, over flat vectors produced one at a time by ``points``.

    ``points`` may reuse one buffer for every vector (it is read before the next is asked for),
    so K points cost one vector of memory. Returns ``(losses (K,), accuracies (K,) or None)``,
    float64 on the CPU. Under data parallelism (``group``, see :func:`loss_at`) every rank must
    pass the same points.
    """
    out = _evaluate_points(
        model,
        loss_fn,
        data,
        points,
        bn_mode=bn_mode,
        with_accuracy=with_accuracy,
        compile=compile,
        batch_size=batch_size,
        max_batch_bytes=max_batch_bytes,
        reduction=reduction,
        batch_size_fn=batch_size_fn,
        group=group,
    )
    return out.losses, out.accuracies


@dataclass
class _Evaluation:
    """What :func:`_evaluate_points` computed, and over how many ranks' shards."""

    losses: torch.Tensor
    accuracies: torch.Tensor | None
    shards: int  # ranks whose data the losses cover (1: this process's data)
    num_samples: int | None  # target elements of all the data (None: not known)


def _evaluate_points(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    points: Iterable[torch.Tensor],
    *,
    bn_mode: str,
    with_accuracy: bool,
    compile: bool,
    batch_size: int | None,
    max_batch_bytes: int,
    reduction: str | None,
    batch_size_fn: Callable[[Any], int] | None,
    group: Any,
) -> _Evaluation:
    _check_bn_mode(bn_mode, batch_size)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidArgumentError(f"batch_size={batch_size!r}: must be a positive integer or None")
    objective = Objective(loss_fn, model, reduction=reduction, batch_size_fn=batch_size_fn)
    if with_accuracy and objective.kind == "closure":
        objective.accuracy_terms(None, None)  # raises the explanation
    params = trainable_parameters(model)
    numels = [p.numel() for p in params]
    device = params[0].device if params else torch.device("cpu")
    step_fn = _compiled_step(model, loss_fn, with_accuracy) if compile else None
    group_shard = resolve_group(group)
    sharded: Shard | None = None
    num_samples = target_elements(data)

    sums: list[torch.Tensor] = []
    with preserved_state(model), _restored_parameters(params):
        with torch.inference_mode():
            # The memory estimate and the reduction check run in eval mode: no BatchNorm
            # running statistic may move before the points are evaluated.
            set_bn_mode(model, "eval")
            if group_shard is None:
                batches = _materialize(model, objective, data, device, batch_size, max_batch_bytes)
                mode = _resolve(model, objective, batches)
            else:
                batches, mode, sharded, num_samples = _agree(
                    group_shard, model, objective, data, device, batch_size, max_batch_bytes
                )
            set_bn_mode(model, "train" if bn_mode == "ghost" else bn_mode)
            zero = torch.zeros((), dtype=torch.float64, device=device)
            for theta in points:
                if theta.numel() != sum(numels):
                    raise InvalidArgumentError(
                        f"a point has {theta.numel()} entries, the model has {sum(numels)} "
                        "trainable parameters"
                    )
                _write(params, theta.to(device), numels)
                loss_sum, weight, correct, count = _evaluate(
                    model,
                    objective,
                    batches,
                    device,
                    with_accuracy,
                    step_fn,
                    mode == "mean",
                    allow_empty=sharded is not None,
                )
                sums.append(
                    torch.stack(
                        [
                            loss_sum,
                            weight,
                            zero if correct is None else correct,
                            zero if count is None else count,
                        ]
                    )
                )
    if not sums:
        empty = torch.empty(0, dtype=torch.float64)
        return _Evaluation(empty, empty.clone() if with_accuracy else None, 1, num_samples)
    table = torch.stack(sums)
    if sharded is not None:  # one all-reduce for every point: Σ over the ranks' shards
        table = sharded.all_reduce(table, inplace=True)
    table = table.cpu()
    losses = table[:, 0] / table[:, 1] if mode == "mean" else table[:, 0]
    accs = table[:, 2] / table[:, 3] if with_accuracy else None
    shards = 1 if sharded is None else sharded.world_size
    return _Evaluation(losses, accs, shards, num_samples)


def target_elements(data: Any) -> int | None:
    """Elements of the target of ``data`` (an ``(x, y)`` pair or a split), else None."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[1], torch.Tensor):
        return int(data[1].numel())
    y = getattr(data, "y", None)
    if isinstance(y, torch.Tensor):
        return int(y.numel())
    return None


def _agree(
    group_shard: Shard,
    model: nn.Module,
    objective: Objective,
    data: Any,
    device: torch.device,
    batch_size: int | None,
    max_batch_bytes: int,
) -> tuple[Iterable[Any], str, Shard | None, int | None]:
    """Materialise this rank's shard and agree with the other ranks in one gather: replicated
    data is evaluated here alone (single-process semantics); sharded data combines by the
    reduction every rank agrees on.

    Returns:
        ``(batches, mode, the shard to all-reduce over or None, target elements of all data)``.
    """

    def local() -> tuple[Iterable[Any], dict[str, Any]]:
        batches = _materialize(
            model, objective, data, device, batch_size, max_batch_bytes, allow_empty=True
        )
        prints = Fingerprint()
        head: list[Any] = []
        total, no_count, seen = 0.0, None, 0
        for i, b in enumerate(batches):  # one pass (a DataLoader is read once more)
            prints.add(b)
            seen += 1
            if len(head) < 2:
                head.append(b)
            if no_count is None:
                n = objective.count(b)
                if n is None:
                    no_count = i
                else:
                    total += float(n)

        def evaluate(batch: Any) -> torch.Tensor:
            return objective.loss(model, move_batch(batch, _device_of(model)))

        report = {
            "fingerprint": prints.value(),
            "batches": seen,
            "counts": None if no_count is not None else [total],
            "no_count": no_count,
            "num_samples": target_elements(data),
            **local_verdict(objective, head, evaluate),
        }
        return batches, report

    batches, reports = group_shard.everywhere(local, "loss_at: reading the data")
    if sum(rep["batches"] for rep in reports) == 0:
        raise InvalidArgumentError(
            f"data: the dataset is empty on all {group_shard.world_size} ranks"
        )
    if replicated([rep["fingerprint"] for rep in reports]):
        return batches, _resolve(model, objective, batches), None, target_elements(data)
    mode, _, _ = agree_reduction(objective, group_shard, reports)
    sizes = [rep["num_samples"] for rep in reports]
    num_samples = None if any(n is None for n in sizes) else sum(sizes)
    return batches, mode, group_shard, num_samples


def _resolve(model: nn.Module, objective: Objective, batches: Iterable[Any]) -> str:
    """How the losses of ``batches`` combine: ``"mean"`` (weighted by loss terms), ``"sum"``, or
    ``"one"`` (a single batch: its loss as it is, whatever the reduction).

    Runs in the caller's ``preserved_state``, inference mode and BatchNorm eval mode.
    """
    if isinstance(batches, list):
        head = batches[:2]
    else:
        head = []
        for b in batches:
            head.append(b)
            if len(head) == 2:
                break
    if len(head) < 2:
        return "one"

    def evaluate(batch: Any) -> torch.Tensor:
        return objective.loss(model, move_batch(batch, _device_of(model)))

    reduction, _ = resolve_reduction(objective, head, evaluate)
    return reduction


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _check_bn_mode(bn_mode: str, batch_size: int | None) -> None:
    if bn_mode not in LOSS_AT_BN_MODES:
        raise InvalidArgumentError(
            f"bn_mode={bn_mode!r}: must be one of {', '.join(LOSS_AT_BN_MODES)} "
            "(train: batch statistics, as SGD sees them; eval: running statistics)"
        )
    if bn_mode == "ghost" and batch_size is None:
        raise InvalidArgumentError(
            "bn_mode='ghost' needs batch_size: the size of the ghost batches whose statistics "
            "BatchNorm uses"
        )


@contextlib.contextmanager
def _restored_parameters(params: list[nn.Parameter]) -> Iterator[None]:
    """Write the parameters' values back bit for bit on exit (one O(n) copy, no state_dict)."""
    saved = [p.detach().clone() for p in params]
    try:
        yield
    finally:
        with torch.no_grad():
            torch._foreach_copy_([p.detach() for p in params], saved)


def _write(params: list[nn.Parameter], theta: torch.Tensor, numels: list[int]) -> None:
    """Copy flat ``theta`` into the parameters (views into θ; casts to each parameter's dtype)."""
    if not params:
        return
    pieces = [t.view(p.shape) for t, p in zip(theta.split(numels), params, strict=True)]
    torch._foreach_copy_([p.detach() for p in params], pieces)


def _materialize(
    model: nn.Module,
    objective: Objective,
    data: Any,
    device: torch.device,
    batch_size: int | None,
    max_batch_bytes: int,
    allow_empty: bool = False,
) -> Iterable[Any]:
    """The batches every point is evaluated on, computed once (``allow_empty``: an empty shard
    gives no batches instead of an error).

    A single batch or a split becomes a list of views on the model's device (cut to
    ``batch_size`` or the memory bound); a re-iterable (list, DataLoader) is returned as is; a
    one-shot iterator is turned into a list so that every point sees the same data.
    """
    if _is_bundle(data):
        raise InvalidArgumentError(
            "data: expected one split of the data, received a whole DataBundle; fix: pass "
            "bundle.train or bundle.probe"
        )
    closure = objective.kind == "closure"
    single = isinstance(data, (tuple, Mapping)) or (closure and isinstance(data, torch.Tensor))
    if single or (hasattr(data, "batches") and callable(data.batches)):
        if single:
            objective.check(data, -1)
            whole = move_batch(data, device)
        elif hasattr(data, "tensors"):  # splits: the tensors themselves (views)
            x, y = data.tensors()
            whole = (x.to(device, non_blocking=True), y.to(device, non_blocking=True))
        else:
            parts = list(data.batches(None))
            whole = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
            whole = move_batch(whole, device)
        n = num_rows(whole)
        if n == 0 and allow_empty:
            return []
        if n == 0:
            raise InvalidArgumentError("data: the dataset is empty")
        if n is None:
            return [whole]  # nothing to cut along
        bs = batch_size
        if bs is None:
            per_sample = _activation_bytes_per_sample(model, objective, whole, n)
            fit = max(1, max_batch_bytes // max(per_sample, 1))
            # Even chunks: with BN in train mode every batch then has about the same size.
            chunks = math.ceil(n / fit)
            bs = math.ceil(n / chunks)
        return [slice_batch(whole, s, s + bs, n) for s in range(0, n, bs)]
    if isinstance(data, Iterable) and iter(data) is data:
        return list(_checked(objective, data))
    return _ReIterable(objective, data)


def _is_bundle(data: Any) -> bool:
    return hasattr(data, "train") and hasattr(data, "probe") and hasattr(data, "split")


def _checked(objective: Objective, data: Any) -> Iterator[Any]:
    closure = objective.kind == "closure"
    for i, b in enumerate(raw_batches(data, closure=closure)):
        objective.check(b, i)
        yield b


class _ReIterable:
    """Re-iterates a list or DataLoader of batches each time it is iterated."""

    def __init__(self, objective: Objective, data: Any) -> None:
        self.objective = objective
        self.data = data

    def __iter__(self) -> Iterator[Any]:
        return _checked(self.objective, self.data)


def _activation_bytes_per_sample(
    model: nn.Module, objective: Objective, batch: Any, rows: int
) -> int:
    """Estimated peak activation bytes per sample of one forward pass in inference mode.

    One forward on two samples with hooks on the leaf modules; the peak is taken as the largest
    input + output of one module (a chain frees what it no longer needs). Cached per model and
    input shape. The caller has put BatchNorm in eval mode (no running statistic moves).
    """
    key = tuple((tuple(t.shape[1:]), t.dtype) for t in tensors_of(batch))
    per_model = _BYTES_PER_SAMPLE.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    k = min(2, rows)
    sample = slice_batch(batch, 0, k, rows)
    peak = [sum(t.numel() * t.element_size() for t in tensors_of(sample))]

    def nbytes(obj: Any) -> int:
        return sum(t.numel() * t.element_size() for t in tensors_of(obj))

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        peak[0] = max(peak[0], nbytes(inputs) + nbytes(output))

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        objective.forward(model, sample)
    finally:
        for h in handles:
            h.remove()
    per_model[key] = math.ceil(peak[0] / k)
    return per_model[key]


def _batch_terms(
    model: nn.Module, objective: Objective, batch: Any, with_accuracy: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Loss of one batch, and the correct argmax predictions and their number if asked."""
    loss, out = objective.forward(model, batch)
    if not with_accuracy:
        return loss, None, None
    correct, count = objective.accuracy_terms(out, batch)
    return loss, correct, count


def _compiled_step(model: nn.Module, loss_fn: LossFn, with_accuracy: bool) -> Callable:
    per_model = _COMPILED.setdefault(model, {})
    key = (loss_fn, with_accuracy)
    if key not in per_model:
        per_model[key] = torch.compile(_batch_terms)
    return per_model[key]


def _evaluate(
    model: nn.Module,
    objective: Objective,
    batches: Iterable[Any],
    device: torch.device,
    with_accuracy: bool,
    step_fn: Callable | None,
    mean: bool,
    allow_empty: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Sums over all batches (float64, on ``device``: no sync per batch): the loss (weighted by
    each batch's loss terms when ``mean``), the weights, correct predictions, predictions.
    ``allow_empty``: a shard without batches or terms gives zeros (checked over all ranks)."""
    fn = step_fn if step_fn is not None else _batch_terms
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    weight = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device) if with_accuracy else None
    count = torch.zeros((), dtype=torch.float64, device=device) if with_accuracy else None
    seen = 0
    for i, batch in enumerate(batches):
        batch = move_batch(batch, device)
        loss, ok, n_pred = fn(model, objective, batch, with_accuracy)
        if mean:
            m = objective.count(batch)
            if m is None:
                raise InvalidArgumentError(objective._no_count_message(i))
            loss_sum += loss.double() * m
            weight += m
        else:
            loss_sum += loss.double()
        if correct is not None and ok is not None and count is not None and n_pred is not None:
            correct += ok.double()
            count += n_pred
        seen += 1
    if allow_empty:
        return loss_sum, weight, correct, count
    if seen == 0:
        raise InvalidArgumentError("data: the dataset yielded no batches")
    if mean and not bool(weight > 0):
        raise InvalidArgumentError(
            "the data has no loss terms (every target is ignored or every batch is empty); "
            "fix: check the targets (-100 marks ignored labels)"
        )
    return loss_sum, weight, correct, count
