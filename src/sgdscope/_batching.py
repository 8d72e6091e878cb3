"""The one data layer of curvature and landscape: what a batch is, how the model is called on it,
and how the losses of several batches add up to the loss over a data set.

One batch or several — the rule
-------------------------------
``data`` is **one batch** when it is

* a ``tuple`` ``(inputs, target)``: ``inputs`` a tensor (``model(x)``), a dict (``model(**x)``)
  or a tuple/list of tensors (``model(*x)``); ``target`` a tensor;
* a dict or any other ``Mapping`` (a Hugging Face ``BatchEncoding`` too): a Hugging Face style
  batch, ``model(**batch)``; the loss is the output's ``.loss``, or ``loss_fn(logits, labels)``;
* with a :class:`LossClosure` only: a bare tensor (a tuple or dict is one batch there too).

Anything else holds **several batches**: a list, a ``DataLoader`` or any other iterable, or an
sgdscope split (an object with ``batches()``). Each item of it is one batch, whatever its type (a
``DataLoader``'s ``[x, y]`` lists included). In short: a tuple is one batch, a list is several.
So ``(x, y)``, ``({"pixels": x}, y)`` and ``((x1, x2), y)`` are one batch each, and
``[(x1, y1), (x2, y2)]`` two.

How the losses of several batches add up — the reduction
--------------------------------------------------------
* ``"mean"``: each batch's loss is a mean over its loss terms, and the loss over the data is the
  mean over all loss terms: L = Σ_b n_b L_b / Σ_b n_b, n_b the terms of batch b (examples; tokens
  for sequences; ``batch_size_fn(batch)`` when given).
* ``"sum"``: each batch's loss is a sum, and L = Σ_b L_b, the total over the data set (curvlinops'
  convention for ``reduction="sum"``).

The reduction is, in this order: the ``reduction=`` argument; the loss's own ``reduction``
attribute (``torch.nn`` loss modules, :class:`LossClosure`, sgdscope's losses); ``"mean"`` for
``torch.nn.functional`` losses called with their defaults and for a model's own ``.loss``
(Hugging Face's convention); otherwise it is *told by a check*: the loss of one batch (at most 64
examples, BatchNorm in eval mode, dropout off) against the losses of its two halves —
L = (n₁L₁ + n₂L₂)/(n₁ + n₂) is a mean, L = L₁ + L₂ a sum. A loss that fits neither (not separable
over examples, a batch-level term, a count we cannot see) is refused with an error that says how to
declare it. The check also runs on declared reductions of closures, plain functions and ``.loss``
(not on ``torch.nn`` modules, whose semantics are known) and refuses a declaration the numbers
contradict. With a single batch nothing is combined, so no reduction is needed and none is checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InvalidArgumentError

REDUCTIONS = ("mean", "sum")
#: Examples the reduction check uses at most (its cost: three forwards of this many).
CHECK_ROWS = 64
#: Hugging Face's (and torch's cross-entropy's) ignored label.
IGNORE_INDEX = -100

# torch.nn.functional losses whose default reduction is "mean" when called as loss_fn(out, y).
_TORCH_MEAN_FUNCTIONALS = frozenset(
    {
        F.cross_entropy,
        F.nll_loss,
        F.mse_loss,
        F.l1_loss,
        F.smooth_l1_loss,
        F.huber_loss,
        F.binary_cross_entropy,
        F.binary_cross_entropy_with_logits,
        F.soft_margin_loss,
        F.multilabel_soft_margin_loss,
        F.poisson_nll_loss,
    }
)
# torch.nn loss modules whose "mean" is over the target's elements (CE / NLL handled apart).
_ELEMENTWISE_MODULES = (
    nn.MSELoss,
    nn.L1Loss,
    nn.SmoothL1Loss,
    nn.HuberLoss,
    nn.BCELoss,
    nn.BCEWithLogitsLoss,
    nn.SoftMarginLoss,
    nn.PoissonNLLLoss,
)
_CAUSAL_LOSS_TYPES = ("ForCausalLM", "ForConditionalGeneration")
_ALIGNED_LOSS_TYPES = (
    "ForMaskedLM",
    "ForTokenClassification",
    "ForSequenceClassification",
    "ForImageClassification",
    "ForVideoClassification",
    "ForAudioClassification",
)

_RULE = "a tuple (inputs, target) or a dict is one batch; a list, DataLoader or split holds several"


class LossClosure:
    """A loss your own code computes from the model and a batch: ``fn(model, batch) -> scalar``.

    Use it when the loss is not ``loss_fn(model(inputs), target)``: several outputs, masks,
    auxiliary terms, any batch structure. Inside curvature measurements ``model`` is called with
    the operator's parameters, so ``fn`` just calls ``model(...)`` as usual.

    Args:
        fn: ``fn(model, batch)`` → a 0-d tensor, the loss of that batch.
        reduction: ``"mean"`` (the loss is a mean over the batch's terms) or ``"sum"``.
        batch_size_fn: ``batch -> int``, the number of terms the mean averages over; needed to
            weight batches of unequal size when ``reduction="mean"`` and there are several
            batches (curvlinops' ``batch_size_fn``).

    Example:
        >>> def loss(model, batch):
        ...     out = model(batch["x"], mask=batch["mask"])
        ...     return F.cross_entropy(out, batch["y"])
        >>> op = ss.HessianOperator(model, ss.LossClosure(loss), loader,
        ...                         batch_size_fn=lambda b: len(b["y"]))
    """

    def __init__(
        self,
        fn: Callable[[nn.Module, Any], torch.Tensor],
        *,
        reduction: str = "mean",
        batch_size_fn: Callable[[Any], int] | None = None,
    ) -> None:
        if not callable(fn):
            raise InvalidArgumentError(
                f"LossClosure: expected a callable fn(model, batch) -> loss, received "
                f"{type(fn).__name__}"
            )
        if reduction not in REDUCTIONS:
            raise InvalidArgumentError(
                f"LossClosure: reduction expected 'mean' or 'sum', received {reduction!r}"
            )
        if batch_size_fn is not None and not callable(batch_size_fn):
            raise InvalidArgumentError(
                "LossClosure: batch_size_fn expected a callable batch -> int, received "
                f"{type(batch_size_fn).__name__}"
            )
        self.fn = fn
        self.reduction = reduction
        self.batch_size_fn = batch_size_fn

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self.fn(model, batch)

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return f"LossClosure({name}, reduction={self.reduction!r})"


# ---------------------------------------------------------------------------------------------
# Structure: one batch or several; slicing, moving, concatenating.


def _type_name(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"Tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (tuple, list)):
        inner = ", ".join(
            _type_name(o) if isinstance(o, torch.Tensor) else type(o).__name__ for o in obj[:3]
        )
        more = ", ..." if len(obj) > 3 else ""
        return f"{type(obj).__name__} of {len(obj)} ({inner}{more})"
    return type(obj).__name__


def is_single_batch(data: Any, closure: bool = False) -> bool:
    """Whether ``data`` is one batch by the module's rule (see the module docstring)."""
    if isinstance(data, (tuple, Mapping)):
        return True
    return closure and isinstance(data, torch.Tensor)


def is_pair(data: Any) -> bool:
    """A tuple ``(x, y)`` of two tensors (the classic batch)."""
    return (
        isinstance(data, tuple)
        and len(data) == 2
        and isinstance(data[0], torch.Tensor)
        and isinstance(data[1], torch.Tensor)
    )


def _has_batches(data: Any) -> bool:
    return hasattr(data, "batches") and callable(data.batches)


def _is_bundle(data: Any) -> bool:
    return hasattr(data, "train") and hasattr(data, "probe") and hasattr(data, "split")


def raw_batches(data: Any, batch_size: int | None = None, closure: bool = False) -> Iterator[Any]:
    """Yield the batches of ``data`` by the module's rule, unvalidated.

    A single batch is cut into chunks of ``batch_size`` rows when given (see :func:`slice_batch`).
    """
    if _is_bundle(data):
        raise InvalidArgumentError(
            "data: expected one split of the data, received a whole DataBundle; fix: pass "
            "bundle.train or bundle.probe"
        )
    if is_single_batch(data, closure):
        if batch_size is None:
            yield data
            return
        rows = num_rows(data)
        if rows is None:
            raise InvalidArgumentError(
                f"batch_size={batch_size}: cannot cut this batch into chunks (received "
                f"{_type_name(data)}, no tensor with a batch dimension); fix: pass a list of "
                "batches instead of batch_size"
            )
        for start in range(0, rows, batch_size):
            yield slice_batch(data, start, start + batch_size, rows)
        return
    if _has_batches(data):
        yield from data.batches(batch_size)
        return
    if isinstance(data, (str, bytes, torch.Tensor)) or not isinstance(data, Iterable):
        hint = (
            " (a tensor alone has no target: pass (x, y), or a LossClosure)"
            if isinstance(data, torch.Tensor)
            else ""
        )
        raise InvalidArgumentError(
            f"data: unsupported data of type {type(data).__name__}{hint}; expected one batch — "
            "an (inputs, target) tuple or a dict of model inputs — or several: a list of them, "
            "a DataLoader, or an sgdscope split"
        )
    yield from data


def num_rows(batch: Any) -> int | None:
    """The batch dimension of a batch: the target's (tuples), the labels' or input ids' (dicts),
    else the first tensor's leading dimension; None if there is none."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and isinstance(batch[1], torch.Tensor):
        if batch[1].dim() >= 1:
            return int(batch[1].shape[0])
    if isinstance(batch, Mapping):
        for key in ("labels", "input_ids", "pixel_values", "inputs_embeds"):
            v = batch.get(key)
            if isinstance(v, torch.Tensor) and v.dim() >= 1:
                return int(v.shape[0])
    for t in _leaves(batch):
        if t.dim() >= 1:
            return int(t.shape[0])
    return None


def _leaves(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _leaves(v)
    elif isinstance(obj, (tuple, list)):
        for v in obj:
            yield from _leaves(v)


def tensors_of(batch: Any) -> list[torch.Tensor]:
    """Every tensor inside a batch (nested tuples, lists and dicts)."""
    return list(_leaves(batch))


def _map(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: _map(v, fn) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_map(v, fn) for v in obj)
    if isinstance(obj, list):
        return [_map(v, fn) for v in obj]
    return obj


def slice_batch(batch: Any, start: int, stop: int, rows: int | None = None) -> Any:
    """Rows ``start:stop`` of a batch: every tensor whose leading dimension is the batch's is
    sliced, the others (masks broadcast over the batch, scalars) are kept."""
    rows = num_rows(batch) if rows is None else rows

    def cut(t: torch.Tensor) -> torch.Tensor:
        return t[start:stop] if t.dim() >= 1 and t.shape[0] == rows else t

    return _map(batch, cut)


def move_batch(batch: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """The batch on ``device``; floating tensors cast to ``dtype`` when given. Dict-likes
    (``BatchEncoding``) become plain dicts."""

    def mv(t: torch.Tensor) -> torch.Tensor:
        if dtype is not None and t.is_floating_point():
            return t.to(device=device, dtype=dtype, non_blocking=True)
        return t.to(device, non_blocking=True)

    return _map(batch, mv)


def concat_batches(batches: Sequence[Any]) -> Any:
    """One batch from several of the same structure (tensors with a batch dimension are
    concatenated along it; the others must agree and are kept)."""
    first = batches[0]
    rows = [num_rows(b) for b in batches]
    if any(r is None for r in rows):
        raise InvalidArgumentError(
            "cannot join batches without a batch dimension (needed for bn_mode='ghost'); fix: "
            "pass tensors with a leading batch dimension"
        )

    def join(parts: list[Any]) -> Any:
        head = parts[0]
        if isinstance(head, torch.Tensor):
            if all(p.dim() >= 1 and p.shape[0] == r for p, r in zip(parts, rows, strict=True)):
                return torch.cat(parts)
            return head
        if isinstance(head, Mapping):
            return {k: join([p[k] for p in parts]) for k in head}
        if isinstance(head, (tuple, list)):
            out = [join([p[i] for p in parts]) for i in range(len(head))]
            return tuple(out) if isinstance(head, tuple) else out
        return head

    try:
        return join(list(batches))
    except (KeyError, IndexError, TypeError, RuntimeError) as exc:
        raise InvalidArgumentError(
            f"cannot join the batches into one (they differ in structure or shape: {exc}); "
            f"bn_mode='ghost' needs batches of one structure, e.g. {_type_name(first)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Model outputs.


def output_logits(out: Any) -> torch.Tensor:
    """The prediction tensor of a model output: the tensor itself, ``.logits`` (Hugging Face
    ``ModelOutput``), or a dict's ``"logits"``."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if logits is None and isinstance(out, Mapping):
        logits = out.get("logits")
    if isinstance(logits, torch.Tensor):
        return logits
    raise InvalidArgumentError(
        f"the model returned {_type_name(out)}; expected a tensor of predictions or an output "
        "with .logits; fix: return logits, or compute the loss yourself with "
        "ss.LossClosure(lambda model, batch: ...)"
    )


def output_loss(out: Any) -> torch.Tensor:
    """The loss a model computed itself (``.loss`` or a dict's ``"loss"``)."""
    loss = getattr(out, "loss", None)
    if loss is None and isinstance(out, Mapping):
        loss = out.get("loss")
    if isinstance(loss, torch.Tensor):
        return loss
    raise InvalidArgumentError(
        f"loss_fn=None reads the model's own .loss, but the model returned {_type_name(out)} "
        "without one; fix: put the labels in the batch (batch['labels']) so the model computes "
        "its loss, or pass loss_fn(logits, labels)"
    )


def is_causal_lm(model: nn.Module) -> bool:
    """Whether a Hugging Face model shifts its labels (next-token prediction)."""
    loss_type = getattr(model, "loss_type", None)
    if isinstance(loss_type, str):
        return loss_type in _CAUSAL_LOSS_TYPES
    name = type(model).__name__
    return name.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"))


def _hf_known(model: nn.Module) -> bool:
    loss_type = getattr(model, "loss_type", None)
    if not isinstance(loss_type, str):
        return True  # not a Hugging Face model (or an old one): labels aligned with outputs
    return loss_type in _CAUSAL_LOSS_TYPES + _ALIGNED_LOSS_TYPES


# ---------------------------------------------------------------------------------------------
# The objective: loss of one batch, its number of terms, accuracy terms.


def _target_terms(loss_fn: Any, target: torch.Tensor) -> torch.Tensor | int | None:
    """Terms a mean-reduced ``loss_fn(output, target)`` averages over (None: cannot tell)."""
    num_terms = getattr(loss_fn, "num_terms", None)
    if callable(num_terms):
        return num_terms(target)
    if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        if loss_fn.weight is not None:
            return None  # a class-weighted mean divides by Σ weights, not by a count
        if target.is_floating_point():  # class probabilities (N, C, ...)
            return target.numel() // target.shape[1] if target.dim() >= 2 else 1
        return (target != loss_fn.ignore_index).sum()
    if not target.is_floating_point():
        return (target != IGNORE_INDEX).sum()
    return target.numel()


class Objective:
    """How a batch becomes a loss, and how much it weighs in the mean over the data.

    Three kinds: ``"output"`` — ``loss_fn(prediction, target)`` on ``(inputs, target)`` tuples or
    dict batches with ``labels``; ``"model_loss"`` — ``loss_fn=None``, the model's own ``.loss``
    on dict batches; ``"closure"`` — a :class:`LossClosure`.
    """

    def __init__(
        self,
        loss_fn: Any,
        model: nn.Module,
        *,
        reduction: str | None = None,
        batch_size_fn: Callable[[Any], int] | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        if isinstance(loss_fn, LossClosure):
            self.kind = "closure"
            if (
                batch_size_fn is not None
                and loss_fn.batch_size_fn is not None
                and batch_size_fn is not loss_fn.batch_size_fn
            ):
                raise InvalidArgumentError(
                    "batch_size_fn is given twice (to the call and to the LossClosure); fix: "
                    "give it once"
                )
            batch_size_fn = batch_size_fn or loss_fn.batch_size_fn
        elif loss_fn is None:
            self.kind = "model_loss"
        elif callable(loss_fn):
            self.kind = "output"
        else:
            raise InvalidArgumentError(
                f"loss_fn: expected loss_fn(output, target), None (the model's own .loss) or "
                f"ss.LossClosure(fn), received {type(loss_fn).__name__}"
            )
        if batch_size_fn is not None and not callable(batch_size_fn):
            raise InvalidArgumentError(
                f"batch_size_fn: expected a callable batch -> int, received "
                f"{type(batch_size_fn).__name__}"
            )
        self.batch_size_fn = batch_size_fn
        self.declared, self.declared_by = self._declared_reduction(reduction)

    # -- reduction ------------------------------------------------------------------------
    def _declared_reduction(self, reduction: str | None) -> tuple[str | None, str | None]:
        own = getattr(self.loss_fn, "reduction", None)
        if reduction is not None and reduction not in REDUCTIONS:
            raise InvalidArgumentError(
                f"reduction: expected 'mean' or 'sum' (or None to read it from the loss), "
                f"received {reduction!r}"
            )
        if own is not None and not isinstance(self.loss_fn, LossClosure) and own not in REDUCTIONS:
            raise InvalidArgumentError(
                f"loss_fn.reduction={own!r} cannot be combined over batches: expected 'mean' or "
                f"'sum'; fix: build the loss with reduction='mean' (or 'sum')"
            )
        if reduction is not None and own is not None and reduction != own:
            raise InvalidArgumentError(
                f"reduction={reduction!r} contradicts loss_fn.reduction={own!r}; fix: drop the "
                "reduction argument (the loss's own is used)"
            )
        if reduction is not None:
            return reduction, "declared"
        if own is not None:
            return own, "loss_fn.reduction"
        if self.kind == "output" and self.loss_fn in _TORCH_MEAN_FUNCTIONALS:
            return "mean", "torch.nn.functional default"
        if self.kind == "model_loss":
            return "mean", "model .loss (Hugging Face convention)"
        return None, None

    @property
    def trusted(self) -> bool:
        """Whether the declared reduction has known semantics (no check needed)."""
        if self.declared_by == "torch.nn.functional default":
            return True
        if self.declared_by == "loss_fn.reduction" and isinstance(
            self.loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss, *_ELEMENTWISE_MODULES)
        ):
            return True
        return bool(getattr(self.loss_fn, "_sgdscope_loss", False))

    # -- structure ------------------------------------------------------------------------
    def check(self, batch: Any, index: int) -> None:
        """Refuse a batch this objective cannot read, saying what was expected and the fix."""
        where = "data" if index < 0 else f"data: batch {index}"
        if self.kind == "closure":
            return
        if isinstance(batch, Mapping):
            if self.kind == "output" and not isinstance(batch.get("labels"), torch.Tensor):
                raise InvalidArgumentError(
                    f"{where} is a dict without a 'labels' tensor (keys: "
                    f"{', '.join(map(str, list(batch)[:6]))}); loss_fn(logits, labels) needs "
                    "them; fix: add batch['labels'], or pass (inputs, target) tuples, or "
                    "loss_fn=None if the model computes its own .loss"
                )
            return
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            inputs, target = batch
            if not isinstance(target, torch.Tensor):
                raise InvalidArgumentError(
                    f"{where}: expected (inputs, target) with a tensor target, received "
                    f"{_type_name(batch)} whose target is a {type(target).__name__}; rule: "
                    f"{_RULE}; fix: for several batches pass a list [(x1, y1), (x2, y2)]"
                )
            if not isinstance(inputs, (torch.Tensor, Mapping, tuple, list)):
                raise InvalidArgumentError(
                    f"{where}: expected inputs as a tensor, a dict (model(**inputs)) or a tuple "
                    f"(model(*inputs)), received {type(inputs).__name__}; fix: convert them, or "
                    "use ss.LossClosure(lambda model, batch: ...)"
                )
            if self.kind == "model_loss":
                raise InvalidArgumentError(
                    f"{where}: loss_fn=None reads the model's own .loss, which needs dict "
                    "batches with labels ({'input_ids': ..., 'labels': ...}); received "
                    f"(inputs, target); fix: pass loss_fn(output, target)"
                )
            return
        if isinstance(batch, (tuple, list)):
            raise InvalidArgumentError(
                f"{where}: expected (inputs, target), received {_type_name(batch)}; fix: "
                "group several inputs as ((x1, x2), y), or use ss.LossClosure for other "
                f"structures (rule: {_RULE})"
            )
        hint = (
            " (a list is read as several batches: for one batch [x, y] pass the tuple (x, y))"
            if isinstance(batch, torch.Tensor) and index >= 0
            else ""
        )
        raise InvalidArgumentError(
            f"{where}: expected (inputs, target) or a dict of model inputs, received "
            f"{_type_name(batch)}{hint}; rule: {_RULE}; fix: pass (x, y) for one batch, a list "
            "of them for several, or ss.LossClosure(fn) for any other structure"
        )

    # -- evaluation -----------------------------------------------------------------------
    def forward(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Any]:
        """``(loss, output)`` of one batch (output None for closures)."""
        if self.kind == "closure":
            loss = self.loss_fn(model, batch)
            return _scalar(loss, "the LossClosure"), None
        if isinstance(batch, Mapping):
            if self.kind == "model_loss":
                out = model(**batch)
                return _scalar(output_loss(out), "the model's .loss"), out
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            out = model(**inputs)
            loss = self.loss_fn(output_logits(out), batch["labels"])
            return _scalar(loss, "loss_fn"), out
        inputs, target = batch
        if isinstance(inputs, Mapping):
            out = model(**inputs)
        elif isinstance(inputs, (tuple, list)):
            out = model(*inputs)
        else:
            out = model(inputs)
        return _scalar(self.loss_fn(output_logits(out), target), "loss_fn"), out

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self.forward(model, batch)[0]

    def accuracy_terms(self, out: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(correct, predictions)`` of argmax predictions against class targets."""
        if self.kind == "closure":
            raise InvalidArgumentError(
                "with_accuracy=True needs predictions and class targets, but a LossClosure gives "
                "only a loss; fix: with_accuracy=False, or pass (inputs, target) batches with "
                "loss_fn(output, target)"
            )
        logits = output_logits(out)
        if isinstance(batch, Mapping):
            target = batch.get("labels")
            if not isinstance(target, torch.Tensor):
                raise InvalidArgumentError(
                    "with_accuracy=True needs batch['labels']; the batch has none; fix: add "
                    "labels, or with_accuracy=False"
                )
            if is_causal_lm(self.model):
                logits, target = logits[..., :-1, :], target[..., 1:]
        else:
            target = batch[1]
        if target.is_floating_point():
            raise InvalidArgumentError(
                "with_accuracy=True needs integer class targets; got float targets "
                f"({target.dtype}): use with_accuracy=False for regression losses"
            )
        pred = logits.argmax(-1)
        if pred.numel() != target.numel():
            raise InvalidArgumentError(
                f"with_accuracy=True: predictions of shape {tuple(pred.shape)} (argmax of the "
                f"last dimension) do not match targets of shape {tuple(target.shape)}; fix: "
                "with_accuracy=False"
            )
        keep = target != IGNORE_INDEX
        correct = ((pred.reshape(target.shape) == target) & keep).sum()
        return correct, keep.sum()

    def count(self, batch: Any) -> torch.Tensor | int | None:
        """Terms the batch's mean loss averages over (None: cannot tell)."""
        if self.batch_size_fn is not None:
            n = self.batch_size_fn(batch)
            if isinstance(n, torch.Tensor):
                return n
            if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
                raise InvalidArgumentError(
                    f"batch_size_fn returned {n!r}; expected a non-negative number of terms"
                )
            return n
        if self.kind == "closure":
            return None
        if isinstance(batch, Mapping):
            labels = batch.get("labels")
            if not isinstance(labels, torch.Tensor):
                return None
            if self.kind == "output" and callable(getattr(self.loss_fn, "num_terms", None)):
                return self.loss_fn.num_terms(labels)
            if labels.is_floating_point():
                return labels.numel()
            if is_causal_lm(self.model):
                return (labels[..., 1:] != IGNORE_INDEX).sum()
            if not _hf_known(self.model):
                return None
            return (labels != IGNORE_INDEX).sum()
        return _target_terms(self.loss_fn, batch[1])

    def counts(self, batches: Sequence[Any]) -> list[float]:
        """Terms of each batch (for the mean's weights); refuses when they cannot be told."""
        out = []
        for i, b in enumerate(batches):
            n = self.count(b)
            if n is None:
                raise InvalidArgumentError(self._no_count_message(i))
            out.append(float(n))
        if sum(out) <= 0:
            raise InvalidArgumentError(
                "the data has no loss terms (every target is ignored or every batch is empty); "
                "fix: check the targets (-100 marks ignored labels)"
            )
        return out

    def _no_count_message(self, index: int) -> str:
        if self.kind == "closure":
            what = "a LossClosure's batches"
        elif isinstance(self.loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
            what = "a class-weighted mean (weight=...)"
        else:
            what = f"batch {index} (the model's loss type is not one sgdscope knows)"
        return (
            f"reduction='mean' over several batches weights each by its number of loss terms, "
            f"which cannot be read from {what}; fix: pass batch_size_fn=lambda batch: <terms>, "
            "or use reduction='sum', or pass the data as one batch"
        )


def _scalar(loss: Any, who: str) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = (
            f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        )
        raise InvalidArgumentError(
            f"{who} returned {got}; expected a scalar loss (a 0-d tensor); fix: reduce it with "
            "reduction='mean' or 'sum'"
        )
    return loss.reshape(())


class ObjectiveModule(nn.Module):
    """``model`` and an :class:`Objective` as one module whose forward is the loss of a batch.

    ``torch.func.functional_call`` on it (with parameter names prefixed ``"model."``) runs any
    objective — a closure that calls ``model`` itself included — on given parameter values.
    """

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self._objective = objective

    def forward(self, batch: Any) -> torch.Tensor:
        return self._objective.loss(self.model, batch)


# ---------------------------------------------------------------------------------------------
# Telling "mean" from "sum".


def resolve_reduction(
    objective: Objective,
    batches: Sequence[Any],
    evaluate: Callable[[Any], torch.Tensor],
) -> tuple[str, str]:
    """The reduction of ``objective`` over several ``batches``, and how it was determined.

    ``evaluate(batch)`` is the loss of a batch with BatchNorm in eval mode, dropout off and no
    graph. The check (module docstring) runs on the first batch with two rows or more, cut to
    :data:`CHECK_ROWS`.
    """
    declared, how = objective.declared, objective.declared_by
    if declared is not None and objective.trusted:
        return declared, how or "declared"
    sample = None
    for b in batches:
        rows = num_rows(b)
        if rows is not None and rows >= 2:
            sample = slice_batch(b, 0, min(rows, CHECK_ROWS), rows) if rows > CHECK_ROWS else b
            break
    if sample is None:
        if declared is not None:
            return declared, f"{how} (not checked: no batch of two rows or more)"
        raise InvalidArgumentError(
            "cannot tell whether loss_fn averages or sums over a batch (no batch has two rows "
            "to compare with its halves); fix: pass reduction='mean' or 'sum', or a torch.nn "
            "loss module"
        )
    rows = num_rows(sample)
    assert rows is not None
    half = rows // 2
    first = slice_batch(sample, 0, half, rows)
    second = slice_batch(sample, half, rows, rows)
    try:
        n1, n2 = objective.count(first), objective.count(second)
        values = [evaluate(b) for b in (sample, first, second)]
    except InvalidArgumentError:
        raise
    except Exception as exc:  # the loss cannot run on halves: no verdict
        if declared is not None:
            return declared, f"{how} (not checked: halves of a batch failed: {type(exc).__name__})"
        raise InvalidArgumentError(
            "cannot tell whether loss_fn averages or sums over a batch: it failed on half a "
            f"batch ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "fix: pass reduction='mean' or 'sum'"
        ) from None
    whole, l1, l2 = (float(v.detach().double()) for v in values)
    eps = torch.finfo(values[0].dtype).eps if values[0].is_floating_point() else 1e-7
    tol = 10 * math.sqrt(eps)
    scale = abs(whole) + abs(l1) + abs(l2)
    as_sum = l1 + l2
    fits_sum = abs(whole - as_sum) <= tol * scale
    as_mean = None
    if n1 is not None and n2 is not None and float(n1) + float(n2) > 0:
        c1, c2 = float(n1), float(n2)
        as_mean = (c1 * l1 + c2 * l2) / (c1 + c2)
    # None: the mean cannot be checked (no count of the batch's terms)
    fits_mean = None if as_mean is None else abs(whole - as_mean) <= tol * scale
    numbers = (
        f"L(batch of {rows}) = {whole:.6g}, L(halves) = {l1:.6g}, {l2:.6g}: their sum "
        f"{as_sum:.6g}" + ("" if as_mean is None else f", their weighted mean {as_mean:.6g}")
    )
    if not all(math.isfinite(v) for v in (whole, l1, l2)):
        if declared is not None:
            return declared, f"{how} (not checked: the loss is not finite)"
        raise InvalidArgumentError(
            f"cannot tell whether loss_fn averages or sums: the loss is not finite ({numbers}); "
            "fix: pass reduction='mean' or 'sum'"
        )
    if fits_sum and fits_mean is not True:
        verdict: str | None = "sum"
    elif fits_mean and not fits_sum:
        verdict = "mean"
    else:
        verdict = None
    if declared is not None:
        if verdict is not None and verdict != declared:
            raise InvalidArgumentError(
                f"the loss is declared reduction={declared!r} ({how}) but behaves as a "
                f"{verdict} ({numbers}); fix: declare reduction={verdict!r}"
                + (", or pass batch_size_fn" if declared == "mean" else "")
            )
        if verdict is None and fits_mean is False and not fits_sum:
            raise InvalidArgumentError(
                f"the loss is declared reduction={declared!r} ({how}), but a batch's loss is "
                f"neither the sum nor the weighted mean of its halves' ({numbers}): it is not "
                "separable over examples, or batch_size_fn does not count what the mean "
                "averages over; fix: pass the data as one batch, or a correct batch_size_fn"
            )
        if fits_mean is None and declared == "mean":
            return declared, f"{how} (checked not to be a sum; no count to check the mean)"
        return declared, f"{how}, checked on halves of a batch"
    if verdict is None:
        if fits_mean is None:
            why = "it is not a sum, and its mean cannot be checked without batch_size_fn"
        elif fits_sum:
            why = "both fit: the loss is too close to 0 to tell"
        else:
            why = (
                "neither fits: the loss is not separable over examples, or its mean is not "
                "over what sgdscope counts"
            )
        raise InvalidArgumentError(
            f"cannot tell whether loss_fn averages or sums over a batch ({numbers}; {why}); "
            "fix: pass reduction='mean' or 'sum' (and batch_size_fn if the mean is over "
            "something else than the target's elements), or use a torch.nn loss module"
        )
    return verdict, "checked on halves of a batch"


# ---------------------------------------------------------------------------------------------
# Backward-compatible helpers for (x, y) data (probes and optimizers use them).

Batch = tuple[Any, torch.Tensor]


def iter_batches(data: Any, batch_size: int | None = None) -> Iterator[Batch]:
    """Yield ``(inputs, target)`` batches from ``data`` (the module's rule).

    Refuses dict (Hugging Face style) batches with a clear message: the callers of this helper
    need a separate target.
    """
    for i, item in enumerate(raw_batches(data, batch_size)):
        if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], torch.Tensor):
            yield item[0], item[1]
            continue
        raise InvalidArgumentError(
            f"data: batch {i} is {_type_name(item)}; this measurement expects (inputs, target) "
            f"batches (rule: {_RULE}); fix: pass (x, y) or a list of (x, y) batches"
        )


def batch_len(y: torch.Tensor) -> int:
    """Number of loss terms a batch's mean loss averages over (tokens for sequence targets)."""
    return int(y.numel())
