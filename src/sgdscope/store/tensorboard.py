"""TensorBoard event files from a run's metrics: a live mirror of the store, and the writer the
``tensorboard`` export uses.

The mirror (``store.tensorboard: true``) is told by :class:`~sgdscope.store.MetricsStore` of every
committed step and writes its scalars into ``RUN/tensorboard/``, so ``tensorboard --logdir runs``
shows the curves while the run trains. The store stays the only source of truth: when the mirror
cannot vouch for the event files on disk (it was attached to a store that already holds rows, or
the store was truncated for a resume), it deletes the event files it owns and replays the store's
committed rows into a fresh file before writing on. A resumed run therefore never holds a step
twice, and a killed run's unflushed events are restored.

Scalars are written as float64 tensors (TensorBoard's ``new_style`` scalars with double
precision), so reading them back gives the store's values bit for bit; NaN and ±inf are kept.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SgdscopeError

if TYPE_CHECKING:
    from .sqlite_store import MetricsStore

TENSORBOARD_DIR = "tensorboard"
EVENT_PREFIX = "events.out.tfevents."
# How often the writer's thread pushes events to the file: TensorBoard reloads every 30 s, so a
# few seconds keeps the mirror live at the cost of one small write per interval.
FLUSH_SECS = 5
_QUEUE = 1000


def require_tensorboard() -> None:
    """Raise a one-line :class:`SgdscopeError` when the ``tensorboard`` package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise SgdscopeError(
            "TensorBoard event files need the tensorboard package, which is not installed: "
            "pip install 'sgdscope[tensorboard]'"
        )


def clear_event_files(log_dir: Path) -> int:
    """Delete the event files directly in ``log_dir`` (nothing else); returns how many."""
    if not log_dir.is_dir():
        return 0
    n = 0
    for p in log_dir.iterdir():
        if p.is_file() and p.name.startswith(EVENT_PREFIX):
            p.unlink()
            n += 1
    return n


class EventWriter:
    """A thin layer over ``torch.utils.tensorboard.SummaryWriter`` writing sgdscope's rows.

    Args:
        log_dir: folder of the event file (created).
        flush_secs: how often buffered events reach the file.
    """

    def __init__(self, log_dir: str | Path, *, flush_secs: int = FLUSH_SECS) -> None:
        require_tensorboard()
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, types_pb2
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import scalar

        self.log_dir = Path(log_dir)
        # A deep queue: the writer thread drains it; a full one would stall the training loop.
        self._w = SummaryWriter(str(self.log_dir), flush_secs=flush_secs, max_queue=_QUEUE)
        self._scalar = scalar
        self._pb = (summary_pb2, tensor_pb2, types_pb2.DT_DOUBLE)
        self._tagged: set[str] = set()

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One step's scalars, each under its store name, as float64 (NaN and ±inf kept).

        They go out as one event, and a tag's metadata (the scalars plugin) only with its first
        value in the file, as TensorFlow's own writer does: readers keep a tag's metadata from
        its first value. Both cut the writer's work (a pure-Python CRC over every byte).
        """
        if not values:
            return
        summary_pb2, tensor_pb2, dt_double = self._pb
        out = []
        for name, v in values.items():
            if name in self._tagged:
                t = tensor_pb2.TensorProto(dtype=dt_double, double_val=[float(v)])
                out.append(summary_pb2.Summary.Value(tag=name, tensor=t))
            else:  # what SummaryWriter.add_scalar(new_style=True, double_precision=True) writes
                s = self._scalar(name, float(v), new_style=True, double_precision=True)
                out.append(s.value[0])
                self._tagged.add(name)
        self._w.file_writer.add_summary(summary_pb2.Summary(value=out), int(step))

    def histogram(self, step: int, name: str, values: np.ndarray) -> bool:
        """An array as a histogram of its finite entries; returns False when it has none."""
        a = np.asarray(values)
        if a.dtype.kind not in "biuf":
            return False
        a = a.astype(np.float64, copy=False).ravel()
        a = a[np.isfinite(a)]
        if a.size == 0:
            return False
        self._w.add_histogram(name, a, int(step))
        return True

    def text(self, step: int, name: str, text: str) -> None:
        self._w.add_text(name, text, int(step))

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def _grouped_by_seq(
    rows: Iterable[tuple[int, int, str, float | None]],
) -> Iterator[tuple[int, dict[str, float]]]:
    """``(seq, step, name, value)`` rows ordered by seq → ``(step, {name: value})`` per seq.

    SQLite stores a NaN as NULL, so a NULL value is a NaN.
    """
    seq: int | None = None
    step = 0
    values: dict[str, float] = {}
    for s, st, name, value in rows:
        if s != seq and values:
            yield step, values
            values = {}
        seq, step = s, st
        values[name] = math.nan if value is None else value
    if values:
        yield step, values


class TensorBoardMirror:
    """Mirrors a :class:`MetricsStore`'s committed scalars into TensorBoard event files.

    Attach it with ``store.add_mirror(TensorBoardMirror(store, run_dir / "tensorboard"))`` (or
    :func:`attach_tensorboard`); the store then calls :meth:`on_step` after each committed step,
    :meth:`on_truncate` after a resume's truncation, :meth:`flush` before each checkpoint and
    :meth:`close` when it closes.

    Args:
        store: the store whose rows are mirrored (read back when the files must be rebuilt).
        log_dir: the folder of the event files; event files already in it are replaced.
        flush_secs: how often buffered events reach the file.
    """

    def __init__(
        self, store: MetricsStore, log_dir: str | Path, *, flush_secs: int = FLUSH_SECS
    ) -> None:
        require_tensorboard()
        self.store = store
        self.log_dir = Path(log_dir)
        self.flush_secs = flush_secs
        self._writer: EventWriter | None = None
        # Files on disk that this object did not write, or a store with rows already, cannot be
        # vouched for (a killed process loses its unflushed events): rebuild before writing.
        has_files = self.log_dir.is_dir() and any(
            p.name.startswith(EVENT_PREFIX) for p in self.log_dir.iterdir()
        )
        self._stale = has_files or store.seq > 0
        self.rebuilds = 0

    # ---------------------------------------------------------------- the store's calls
    def on_step(
        self,
        step: int,
        epoch: int,
        scalars: Mapping[str, float],
        arrays: Mapping[str, Any],
        seq: int,
    ) -> None:
        """Mirror one committed step (``seq``); arrays are not mirrored (export them instead)."""
        if self._stale:
            self._rebuild(upto_seq=seq)  # replays this step too
            return
        if scalars:
            self._open().scalars(step, scalars)

    def on_truncate(self, seq: int) -> None:
        """The store dropped every row after ``seq`` (resume): the files are rewritten."""
        self._stale = True

    def flush(self) -> None:
        if self._stale:
            self._rebuild(upto_seq=self.store.seq)
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ---------------------------------------------------------------- internals
    def _open(self) -> EventWriter:
        if self._writer is None:
            self._writer = EventWriter(self.log_dir, flush_secs=self.flush_secs)
        return self._writer

    def _rebuild(self, upto_seq: int) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        clear_event_files(self.log_dir)
        rows = self.store.con.execute(
            "SELECT seq, step, name, value FROM scalars WHERE seq <= ? ORDER BY seq, name",
            (upto_seq,),
        )
        writer = self._open()
        for step, values in _grouped_by_seq(rows):
            writer.scalars(step, values)
        writer.flush()
        self._stale = False
        self.rebuilds += 1


def attach_tensorboard(store: MetricsStore, run_dir: str | Path) -> TensorBoardMirror:
    """Mirror ``store``'s scalars into ``run_dir/tensorboard/`` from now on; returns the mirror."""
    mirror = TensorBoardMirror(store, Path(run_dir) / TENSORBOARD_DIR)
    store.add_mirror(mirror)
    return mirror
