"""The loss of a model at given flat parameter vectors: the hot path of paper B's interpolations.

:func:`loss_at` evaluates the mean loss (and accuracy) over a whole dataset at one or several flat
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
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from .._batching import Batch, batch_len, is_pair, iter_batches
from .._state import preserved_state, set_bn_mode
from ..errors import InvalidArgumentError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Default bound (bytes) on the activations of one evaluation batch; larger data is split evenly.
DEFAULT_MAX_BATCH_BYTES = 512 * 2**20

LOSS_AT_BN_MODES = ("train", "eval", "ghost")

# Per model: activation bytes per sample, keyed by (input shape, dtype). Weak keys: a model that
# is garbage-collected drops its entries.
_BYTES_PER_SAMPLE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = (
    weakref.WeakKeyDictionary()
)
# Per model: compiled batch evaluators keyed by (loss_fn, with_accuracy). The compiled function
# takes the model as an argument, so the cache does not keep the model alive.
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
    bn_mode: str = "train",
    with_accuracy: bool = False,
    compile: bool = False,
    batch_size: int | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over all of ``data`` at one or several flat parameter vectors.

    Args:
        model: the network; its state is unchanged afterwards (parameters, buffers, train/eval
            flags, ``.grad``, RNG).
        loss_fn: ``loss_fn(output, target)`` → mean loss over the batch (e.g. cross-entropy).
        data: an ``(x, y)`` pair, a :class:`~sgdscope.data.Split`, a list of ``(x, y)`` batches or
            a DataLoader. Pairs and splits are moved to the model's device once.
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
    bn_mode: str = "train",
    with_accuracy: bool = False,
    compile: bool = False,
    batch_size: int | None = None,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Like :func:`loss_at`, over flat vectors produced one at a time by ``points``.

    ``points`` may reuse one buffer for every vector (it is read before the next is asked for),
    so K points cost one vector of memory. Returns ``(losses (K,), accuracies (K,) or None)``,
    float64 on the CPU.
    """
    _check_bn_mode(bn_mode, batch_size)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidArgumentError(f"batch_size={batch_size!r}: must be a positive integer or None")
    params = trainable_parameters(model)
    numels = [p.numel() for p in params]
    device = params[0].device if params else torch.device("cpu")
    step_fn = _compiled_step(model, loss_fn, with_accuracy) if compile else None

    loss_sums: list[torch.Tensor] = []
    acc_sums: list[torch.Tensor] = []
    with preserved_state(model), _restored_parameters(params):
        set_bn_mode(model, "train" if bn_mode == "ghost" else bn_mode)
        with torch.inference_mode():
            batches = _materialize(model, data, device, batch_size, max_batch_bytes)
            for theta in points:
                if theta.numel() != sum(numels):
                    raise InvalidArgumentError(
                        f"a point has {theta.numel()} entries, the model has {sum(numels)} "
                        "trainable parameters"
                    )
                _write(params, theta.to(device), numels)
                loss_sum, correct, count = _evaluate(
                    model, loss_fn, batches, device, with_accuracy, step_fn
                )
                loss_sums.append(loss_sum / count)
                if with_accuracy:
                    acc_sums.append(correct / count)
    losses = torch.stack(loss_sums).cpu() if loss_sums else torch.empty(0, dtype=torch.float64)
    accs = None
    if with_accuracy:
        accs = torch.stack(acc_sums).cpu() if acc_sums else torch.empty(0, dtype=torch.float64)
    return losses, accs


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
    data: Any,
    device: torch.device,
    batch_size: int | None,
    max_batch_bytes: int,
) -> Iterable[Batch]:
    """The batches every point is evaluated on, computed once.

    Pairs and splits become a list of views on the model's device (cut to ``batch_size`` or the
    memory bound); a re-iterable (list, DataLoader) is returned as is; a one-shot iterator is
    turned into a list so that every point sees the same data.
    """
    if _is_bundle(data):
        raise InvalidArgumentError(
            "data: got a whole DataBundle; pass one split, e.g. bundle.train or bundle.probe"
        )
    if is_pair(data) or (hasattr(data, "batches") and callable(data.batches)):
        if is_pair(data):
            x, y = data
        else:
            # Splits: take the tensors when available (views), else concatenate its batches.
            if hasattr(data, "tensors"):
                x, y = data.tensors()
            else:
                parts = list(data.batches(None))
                x = torch.cat([p[0] for p in parts])
                y = torch.cat([p[1] for p in parts])
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        n = len(y)
        if n == 0:
            raise InvalidArgumentError("data: the dataset is empty")
        bs = batch_size
        if bs is None:
            per_sample = _activation_bytes_per_sample(model, x)
            fit = max(1, max_batch_bytes // max(per_sample, 1))
            # Even chunks: with BN in train mode every batch then has about the same size.
            chunks = math.ceil(n / fit)
            bs = math.ceil(n / chunks)
        return list(iter_batches((x, y), bs))
    if isinstance(data, Iterable) and iter(data) is data:
        return list(iter_batches(data))
    return _ReIterable(data)


class _ReIterable:
    """Re-iterates a list or DataLoader of batches each time it is iterated."""

    def __init__(self, data: Any) -> None:
        self.data = data

    def __iter__(self) -> Iterator[Batch]:
        return iter_batches(self.data)


def _is_bundle(data: Any) -> bool:
    return hasattr(data, "train") and hasattr(data, "probe") and hasattr(data, "split")


def _activation_bytes_per_sample(model: nn.Module, x: torch.Tensor) -> int:
    """Estimated peak activation bytes per sample of one forward pass in inference mode.

    One forward on two samples with hooks on the leaf modules; the peak is taken as the largest
    input + output of one module (a chain frees what it no longer needs). Cached per model and
    input shape. The caller has saved the model's state (BN statistics touched here are restored).
    """
    key = (tuple(x.shape[1:]), x.dtype)
    per_model = _BYTES_PER_SAMPLE.setdefault(model, {})
    if key in per_model:
        return per_model[key]
    sample = x[: min(2, len(x))]
    peak = [sample.numel() * sample.element_size()]

    def nbytes(obj: Any) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, (tuple, list)):
            return sum(nbytes(o) for o in obj)
        return 0

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        peak[0] = max(peak[0], nbytes(inputs) + nbytes(output))

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        model(sample)
    finally:
        for h in handles:
            h.remove()
    per_model[key] = math.ceil(peak[0] / len(sample))
    return per_model[key]


def _batch_terms(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, with_accuracy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean loss of one batch, and the number of correct argmax predictions if asked."""
    out = model(x)
    loss = loss_fn(out, y)
    if not with_accuracy:
        return loss, None
    pred = out.argmax(-1)
    return loss, (pred.reshape(y.shape) == y).sum()


def _compiled_step(model: nn.Module, loss_fn: LossFn, with_accuracy: bool) -> Callable:
    per_model = _COMPILED.setdefault(model, {})
    key = (loss_fn, with_accuracy)
    if key not in per_model:
        per_model[key] = torch.compile(_batch_terms)
    return per_model[key]


def _evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Iterable[Batch],
    device: torch.device,
    with_accuracy: bool,
    step_fn: Callable | None,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Batch-size-weighted sums (float64, on ``device``: no sync per batch) over all batches."""
    fn = step_fn if step_fn is not None else _batch_terms
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device) if with_accuracy else None
    count = 0
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if with_accuracy and y.dtype.is_floating_point:
            raise InvalidArgumentError(
                "with_accuracy=True needs integer class targets; got float targets "
                f"({y.dtype}): use with_accuracy=False for regression losses"
            )
        loss, ok = fn(model, loss_fn, x, y, with_accuracy)
        m = batch_len(y)
        loss_sum += loss.double() * m
        if correct is not None and ok is not None:
            correct += ok.double()
        count += m
    if count == 0:
        raise InvalidArgumentError("data: the dataset yielded no batches")
    return loss_sum, correct, count
