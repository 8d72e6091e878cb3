"""Data-parallel measurements: each process holds a shard of the data, and the sums are
all-reduced.

When ``torch.distributed`` is initialised (``torchrun``, Lightning, Ray Train, ...) or a process
group is given, :class:`~sgdscope.curvature.HessianOperator`, :func:`~sgdscope.landscape.loss_at`,
:func:`~sgdscope.landscape.evaluate_points` and :func:`~sgdscope.landscape.interpolate` treat each
rank's data as a **shard** of one data set: every rank computes the weighted sum over its own
batches, and the sums are added over the ranks (one all-reduce). The weights are those of the
single-process computation on the union of the shards (:mod:`sgdscope._batching`): for a
``"mean"`` loss each batch weighs n_b / N with N the loss terms of *all* ranks, so unequal shards
are exact; a ``"sum"`` loss sums over every rank's batches. The result equals the single-process
result on the union of the shards (in rank order) up to the order of floating-point additions
(1e-10 relative in float64, tested).

The ``group`` argument
----------------------
* ``"auto"`` (the default): the default process group when ``torch.distributed`` is initialised
  with two processes or more; a single process otherwise.
* ``None``: this process alone, no communication, even under ``torchrun``.
* a ``torch.distributed.ProcessGroup``: that group.

**Replicated data is not sharded.** If every rank of the group holds exactly the same data
(compared by a fingerprint: per tensor of the batch structure, the number of elements, their sum
and their sum of squares in float64), each rank computes the whole result alone and nothing is
all-reduced; ``info["data_parallel"]["mode"]`` says ``"replicated"``. A script that gives every
rank all the data therefore gets the single-process result — for ``"sum"`` losses too — and a
script that shards gets the same number faster.

Lock-step and agreement
-----------------------
Every rank must make the same calls in the same order (they are collectives). What could differ
between ranks and change what they do next — a batch one rank refuses, the reduction a check
tells, the loss-term counts, whether a rank has data at all — is gathered from every rank once,
at construction, and a refusal on one rank raises on *every* rank (the rank and its reason in a
:class:`~sgdscope.errors.DistributedError`), so no rank is left waiting in a collective the others
never join. Each operator product checks that every rank multiplies the same vectors (a checksum,
one small extra all-reduce), so ``op @ torch.randn(n)`` with a different vector on each rank
raises instead of returning a silently wrong product. The estimators (Lanczos, power iteration,
Hutchinson, Frobenius, spectral density) broadcast their seed and start vectors from rank 0, so
every rank draws the same random vectors, and broadcast their result from rank 0, so every rank
returns bit for bit the same eigenpairs (NSGD's update then stays identical on every rank).

BatchNorm: in ``bn_mode="train"`` (and ``"ghost"``) each rank's batches are normalised with their
own batch statistics — per-shard statistics, as ``DistributedDataParallel`` without
``SyncBatchNorm`` — so the result is the single-process one on the union *batched as the shards
are*. It is recorded with the result (``op.info["data_parallel"]["batchnorm"]``,
:attr:`~sgdscope.landscape.InterpolationResult.shards`). In ``bn_mode="eval"`` (the default) the
running statistics are used and the batching does not matter.

A rank that dies or hangs: the others fail in their next collective (gloo notices a closed
connection at once) or after the process group's timeout; ``torchrun`` then stops every worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ._batching import num_rows, resolve_reduction, slice_batch, tensors_of
from .errors import DistributedError, InvalidArgumentError

__all__ = ["AUTO", "Shard", "add_over_shards", "gather_rows", "resolve_group", "shard"]

AUTO = "auto"
T = TypeVar("T")

#: Relative tolerance of the per-product check that all ranks multiply the same vectors: far
#: above rounding differences (identical vectors give identical checksums; vectors that differ
#: in their last bits, e.g. on heterogeneous hardware, differ by ~1e-16 relative), far below the
#: difference of two unrelated vectors (~1/sqrt(n)).
SAME_VECTOR_RTOL = 1e-6


def _dist():
    import torch.distributed as dist

    return dist


def _describe_group(group: Any) -> str:
    return "the default group" if group is None or group == AUTO else type(group).__name__


def resolve_group(group: Any = AUTO) -> Shard | None:
    """This process's place in the group a computation spreads over, or None for one process.

    Args:
        group: ``"auto"``, ``None`` or a ``torch.distributed.ProcessGroup`` (module docstring).

    Returns:
        A :class:`Shard` when two processes or more take part, else None.
    """
    if group is None:
        return None
    if isinstance(group, str):
        if group != AUTO:
            raise InvalidArgumentError(
                f"group: expected 'auto', None or a torch.distributed ProcessGroup, received "
                f"{group!r}"
            )
        dist = _dist()
        if not (dist.is_available() and dist.is_initialized()):
            return None
        pg = dist.group.WORLD
    else:
        dist = _dist()
        if not (dist.is_available() and dist.is_initialized()):
            raise InvalidArgumentError(
                "group: a process group was given but torch.distributed is not initialised; "
                "fix: call torch.distributed.init_process_group first (torchrun does it for you "
                "through the environment), or pass group=None"
            )
        if not isinstance(group, dist.ProcessGroup):
            raise InvalidArgumentError(
                f"group: expected 'auto', None or a torch.distributed ProcessGroup, received "
                f"{type(group).__name__}"
            )
        pg = group
    size = dist.get_world_size(pg)
    rank = dist.get_rank(pg)
    if rank < 0:
        raise InvalidArgumentError(
            "group: this process is not a member of the process group it was given; fix: pass "
            "a group this rank belongs to (or group=None)"
        )
    if size < 2:
        return None
    return Shard(pg, rank, size, str(dist.get_backend(pg)))


@dataclass(frozen=True)
class Shard:
    """One process's part in a data-parallel computation over a process group.

    Attributes:
        group: the ``torch.distributed`` process group.
        rank: this process's rank in it; world_size: its number of processes.
        backend: the group's backend (``gloo``, ``nccl``, or ``cpu:gloo,cuda:nccl``).
    """

    group: Any
    rank: int
    world_size: int
    backend: str

    # -- plumbing -------------------------------------------------------------------------
    def _comm(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` where the backend can reduce it (NCCL-only groups need CUDA tensors)."""
        if t.device.type == "cpu" and self.backend == "nccl":
            return t.to(torch.device("cuda", torch.cuda.current_device()))
        return t.contiguous()

    def _src(self) -> int:
        return _dist().get_global_rank(self.group, 0)

    def info(self) -> dict[str, Any]:
        return {
            "mode": "sharded",
            "world_size": self.world_size,
            "rank": self.rank,
            "backend": self.backend,
        }

    # -- collectives ----------------------------------------------------------------------
    def all_reduce(
        self, t: torch.Tensor, op: str = "sum", *, inplace: bool = False
    ) -> torch.Tensor:
        """The sum (or ``"max"``) of ``t`` over the ranks, on ``t``'s device: a new tensor, or
        ``t`` itself overwritten when ``inplace`` and it is contiguous on a device the backend
        reduces."""
        dist = _dist()
        buf = self._comm(t)
        if buf is t and not inplace:
            buf = t.clone()
        dist.all_reduce(buf, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM,
                        group=self.group)  # fmt: skip
        return buf.to(t.device) if buf.device != t.device else buf

    def broadcast(self, t: torch.Tensor) -> torch.Tensor:
        """Rank 0's ``t`` (same shape and dtype on every rank), a new tensor on ``t``'s device."""
        buf = self._comm(t)
        if buf is t:
            buf = t.clone()
        _dist().broadcast(buf, src=self._src(), group=self.group)
        return buf.to(t.device) if buf.device != t.device else buf

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (any picklable object)."""
        box = [obj]
        _dist().broadcast_object_list(box, src=self._src(), group=self.group)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        out: list[Any] = [None] * self.world_size
        _dist().all_gather_object(out, obj, group=self.group)
        return out

    # -- agreement ------------------------------------------------------------------------
    def everywhere(self, fn: Callable[[], tuple[T, Any]], what: str) -> tuple[T, list[Any]]:
        """Run ``fn() -> (value, report)`` here, then share the reports of every rank.

        If ``fn`` raised on any rank, every rank raises: the failing rank its own exception, the
        others a :class:`~sgdscope.errors.DistributedError` naming the rank and its reason.

        Returns:
            ``(this rank's value, [each rank's report])``.
        """
        error: BaseException | None = None
        value: Any = None
        report: Any = None
        try:
            value, report = fn()
        except Exception as exc:  # shared below, re-raised on every rank
            error = exc
        reports = self.gather_objects(
            {"error": None if error is None else _one_line(error), "report": report}
        )
        failed = [(r, rep["error"]) for r, rep in enumerate(reports) if rep["error"] is not None]
        if failed:
            if error is not None:
                raise error
            rank, reason = failed[0]
            raise DistributedError(
                f"{what}: rank {rank} of {self.world_size} failed, so every rank stops here "
                f"(no rank is left waiting for the others): {reason}"
            )
        return value, [rep["report"] for rep in reports]

    def check_same(self, V: torch.Tensor, who: str) -> None:
        """Raise on every rank unless every rank holds the same vectors ``V`` ((n,) or (n, m)).

        Per column, three checksums (sum, position-weighted sum, and their scale) are compared
        by one max-all-reduce of ``[c, −c]``: equal everywhere iff max = −max(−c).
        """
        W = V.detach().reshape(V.shape[0], -1).double()
        pos = (torch.arange(W.shape[0], device=W.device, dtype=torch.float64) % 97) - 48.0
        sums = torch.cat([W.sum(dim=0), pos @ W])
        scale = W.abs().sum(dim=0) * 48.0 + 1e-300
        both = self.all_reduce(torch.cat([sums, -sums]), op="max")
        k = sums.numel()
        spread = (both[:k] + both[k:]).abs()  # max − min of each checksum
        if bool((spread > SAME_VECTOR_RTOL * scale.repeat(2)).any()):
            raise DistributedError(
                f"{who}: the ranks multiplied different vectors (the operator is one matrix over "
                "every rank's data, so each product is a collective: every rank must call it "
                "with the same vector). fix: draw random vectors from a generator seeded the "
                "same way on every rank (the estimators do), or broadcast them from rank 0"
            )

    def same_start(self, seed: int, v0: torch.Tensor | None) -> tuple[int, torch.Tensor | None]:
        """Rank 0's seed and start vectors, so every rank draws and starts from the same."""
        if v0 is not None and not isinstance(v0, torch.Tensor):
            return int(seed), v0  # refused by the estimator's own check, on every rank
        head = self.broadcast_object(
            (int(seed), None if v0 is None else (tuple(v0.shape), str(v0.dtype)))
        )
        seed0, shape = head
        if shape is None:
            return int(seed0), None
        if v0 is None or tuple(v0.shape) != tuple(shape[0]):
            raise DistributedError(
                f"the start vectors differ between ranks: rank 0 has shape {shape[0]}, rank "
                f"{self.rank} has {None if v0 is None else tuple(v0.shape)}; fix: pass the same "
                "v0 on every rank (or none)"
            )
        return int(seed0), self.broadcast(v0.detach())

    def same_tensors(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Rank 0's copies of ``tensors`` (identical shapes on every rank)."""
        return [self.broadcast(t) for t in tensors]


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}".strip()


# ---------------------------------------------------------------------------------------------
# Telling shards from replicated data.


class Fingerprint:
    """An order-independent summary of data, built batch by batch: per tensor position in the
    batch structure, the number of elements, their sum and their sum of squares (float64, kept
    on the data's device until :meth:`value`)."""

    def __init__(self) -> None:
        self._rows: list[torch.Tensor] = []

    #: Elements converted to float64 at a time (the data is never copied whole).
    CHUNK = 1 << 20

    def add(self, batch: Any) -> None:
        for i, t in enumerate(tensors_of(batch)):
            flat = t.detach().reshape(-1)
            row = torch.zeros(3, dtype=torch.float64, device=t.device)
            row[0] = float(t.numel())
            for part in flat.split(self.CHUNK):
                p64 = part.double()
                row[1] += p64.sum()
                row[2] += p64.square().sum()
            if i == len(self._rows):
                self._rows.append(row)
            else:
                self._rows[i] = self._rows[i] + row.to(self._rows[i].device)

    def value(self) -> list[float]:
        return [float(v) for row in self._rows for v in row.cpu().tolist()]


def fingerprint(batches: Iterable[Any]) -> list[float]:
    """The :class:`Fingerprint` of some batches, as a list of floats."""
    fp = Fingerprint()
    for b in batches:
        fp.add(b)
    return fp.value()


def replicated(prints: Sequence[Any]) -> bool:
    """Whether every rank reported the same data fingerprint."""
    return all(p == prints[0] for p in prints[1:])


def add_over_shards(group: Any, values: torch.Tensor, prints: Fingerprint) -> torch.Tensor:
    """``values`` (sums over this rank's data) added over the ranks whose data are shards; as
    they are in one process or when every rank holds the same data (same ``prints``)."""
    sh = resolve_group(group)
    if sh is None or replicated(sh.gather_objects(prints.value())):
        return values
    return sh.all_reduce(values)


def gather_rows(
    group: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    pick: Callable[[int], torch.Tensor | None],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``pick(N)`` of the union of every rank's rows (rank order), on every rank.

    ``pick(N)`` gets the number of rows of the union and returns sorted row indices into it, or
    None for all rows. One process (or replicated data): the rows of ``x``, ``y`` themselves.
    For small selections (a probe's sample of a few hundred examples): the rows travel pickled.
    """
    sh = resolve_group(group)
    prints = Fingerprint()
    prints.add((x, y))
    reports = None if sh is None else sh.gather_objects((len(y), prints.value()))
    if sh is None or reports is None or replicated([r[1] for r in reports]):
        idx = pick(len(y))
        return (x, y) if idx is None else (x[idx.to(x.device)], y[idx.to(y.device)])
    sizes = [int(r[0]) for r in reports]
    offset = sum(sizes[: sh.rank])
    idx = pick(sum(sizes))
    if idx is None:
        local = torch.arange(len(y))
    else:
        inside = (idx >= offset) & (idx < offset + len(y))
        local = idx[inside] - offset
    rows = (x[local.to(x.device)].cpu(), y[local.to(y.device)].cpu())
    parts = sh.gather_objects(rows)
    return (
        torch.cat([p[0] for p in parts]).to(x.device),
        torch.cat([p[1] for p in parts]).to(y.device),
    )


# ---------------------------------------------------------------------------------------------
# The reduction over every rank's batches.


def local_verdict(
    objective: Any, batches: Sequence[Any], evaluate: Callable[[Any], torch.Tensor]
) -> dict[str, Any]:
    """This rank's view of the loss's reduction, for :func:`agree_reduction`.

    A rank without a batch of two rows abstains (it cannot run the check); a check that fails
    is reported, not raised, because it matters only if the data turns out to be sharded.
    """
    if not any((num_rows(b) or 0) >= 2 for b in batches) and not (
        objective.declared is not None and objective.trusted
    ):
        return {"verdict": None, "how": None, "error": None}
    try:
        red, how = resolve_reduction(objective, batches, evaluate)
    except InvalidArgumentError as exc:
        return {"verdict": None, "how": None, "error": str(exc)}
    return {"verdict": red, "how": how, "error": None}


def local_counts(objective: Any, batches: Sequence[Any]) -> tuple[list[float] | None, int | None]:
    """Loss terms of each batch here, or ``(None, index of the first batch without a count)``."""
    out = []
    for i, b in enumerate(batches):
        n = objective.count(b)
        if n is None:
            return None, i
        out.append(float(n))
    return out, None


def agree_reduction(objective: Any, shard: Shard, reports: Sequence[Mapping[str, Any]]) -> tuple:
    """The reduction every rank uses, from each rank's :func:`local_verdict` (and counts).

    Returns:
        ``(reduction, how, total loss terms of every rank or None)``; raises the same error on
        every rank when a rank's check failed, the ranks disagree, nobody can tell, or a
        ``"mean"`` needs counts a rank cannot give.
    """
    errors = [(r, rep["error"]) for r, rep in enumerate(reports) if rep["error"]]
    if errors:
        rank, reason = errors[0]
        raise InvalidArgumentError(f"rank {rank} of {shard.world_size}: {reason}")
    verdicts = {rep["verdict"] for rep in reports if rep["verdict"] is not None}
    if len(verdicts) > 1:
        shown = ", ".join(f"rank {r}: {rep['verdict']}" for r, rep in enumerate(reports))
        raise InvalidArgumentError(
            f"the ranks' data tell different reductions of the loss ({shown}); fix: declare "
            "reduction='mean' or 'sum'"
        )
    if verdicts:
        red = verdicts.pop()
        how = next(rep["how"] for rep in reports if rep["verdict"] == red)
    elif objective.declared is not None:
        red, how = (
            objective.declared,
            f"{objective.declared_by} (not checked: no rank has a batch of two rows)",
        )
    else:
        raise InvalidArgumentError(
            "cannot tell whether loss_fn averages or sums over a batch: no rank has a batch of "
            "two rows to check it on; fix: pass reduction='mean' or 'sum'"
        )
    total = None
    if red == "mean":
        missing = [(r, rep) for r, rep in enumerate(reports) if rep["counts"] is None]
        if missing:
            rank, rep = missing[0]
            raise InvalidArgumentError(
                f"rank {rank} of {shard.world_size}: "
                + objective._no_count_message(rep["no_count"])
            )
        total = math.fsum(math.fsum(rep["counts"]) for rep in reports)
        if total <= 0:
            raise InvalidArgumentError(
                "the data of every rank together has no loss terms (every target is ignored or "
                "every shard is empty); fix: check the targets (-100 marks ignored labels)"
            )
    return red, how, total


# ---------------------------------------------------------------------------------------------
# Cutting data into shards.


def _part(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``rank``: contiguous, sizes differing by at most one (the first
    ``n % world_size`` ranks hold one more)."""
    q, r = divmod(n, world_size)
    start = rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


def shard(data: Any, group: Any = AUTO) -> Any:
    """This rank's contiguous part of ``data``, for data-parallel measurements.

    The parts of all ranks, in rank order, are ``data`` again, with sizes that differ by at most
    one row, so a data-parallel result on the parts equals the single-process result on
    ``data``.

    Args:
        data: one batch (an ``(inputs, target)`` tuple or a dict: its rows are cut), an
            sgdscope split (a :class:`~sgdscope.data.Split`: its rows are cut), or a list of
            batches (contiguous runs of whole batches are kept).
        group: ``"auto"``, ``None`` (returns ``data``) or a process group.

    Returns:
        The same kind of data, holding this rank's part (``data`` itself in one process).

    Example:
        >>> op = ss.HessianOperator(model, loss_fn, ss.shard((x, y)))   # under torchrun
    """
    sh = resolve_group(group)
    if sh is None:
        return data
    return shard_for(data, sh.rank, sh.world_size)


def shard_for(data: Any, rank: int, world_size: int) -> Any:
    """The ``rank``-th of ``world_size`` contiguous parts of ``data`` (see :func:`shard`)."""
    if hasattr(data, "subset") and hasattr(data, "x") and hasattr(data, "y"):
        start, stop = _part(len(data), rank, world_size)
        return data.subset(torch.arange(start, stop), name=getattr(data, "name", None))
    if isinstance(data, (tuple, Mapping)):
        rows = num_rows(data)
        if rows is None:
            raise InvalidArgumentError(
                "shard: this batch has no tensor with a batch dimension to cut; fix: pass a list "
                "of batches, or cut the data yourself"
            )
        start, stop = _part(rows, rank, world_size)
        return slice_batch(data, start, stop, rows)
    if isinstance(data, list):
        start, stop = _part(len(data), rank, world_size)
        return data[start:stop]
    raise InvalidArgumentError(
        f"shard: expected one batch (a tuple or dict), an sgdscope split or a list of batches, "
        f"received {type(data).__name__}; fix: for a DataLoader use a "
        "torch.utils.data.DistributedSampler"
    )
