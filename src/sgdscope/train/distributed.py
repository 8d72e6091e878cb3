"""Data-parallel training: ``torchrun --nproc-per-node N -m sgdscope run CONFIG``.

Under ``torchrun`` (or any launcher that sets ``WORLD_SIZE``, ``RANK`` and ``MASTER_ADDR``; inside
a Slurm job run ``srun torchrun ...``), or when ``torch.distributed`` is already initialised (Ray
Train, Lightning), :func:`sgdscope.train.run` trains one run over every process:

- **Data order**: every rank draws the same permutation (the data generator is seeded by the
  config), takes the step's global batch of ``train.batch_size`` examples, augments all of it (so
  the random draws stay the same on every rank and equal the single-process ones) and keeps its
  contiguous part (sizes differ by at most one).
- **Gradients**: each rank back-propagates its part's mean loss weighted by n_r / B, and one
  all-reduce of the flattened gradients (and the loss) sums them: the gradient of the global
  batch's mean loss, exact for unequal parts. We chose this explicit weighted all-reduce over
  ``DistributedDataParallel``: DDP averages the ranks' gradients with equal weights (unequal
  parts would need a rescaled loss), the full-batch path accumulates several chunks per step
  (one all-reduce instead of DDP's ``no_sync`` bookkeeping), the model stays the plain module
  that probes, the eigenbasis and checkpoints see (no ``module.`` prefix, no hooks on its
  parameters), and DDP's overlap of communication with the backward pass buys little for the
  models sgdscope trains. Every rank then makes the same update, so the parameters stay equal
  on every rank, and the trajectory equals the single-process one for BatchNorm-free models up to
  float rounding (the same terms added in another order: within 1e-10 relative after 20 steps
  in float64, tested; in float32 the loss and parameters were within 1e-7 relative after 20 and
  after 100 steps of the tests' MLP, and are tested to 1e-6).
- **BatchNorm**: the forward pass normalises each rank's part with its own statistics (as DDP
  without SyncBatchNorm); after each step the running statistics are averaged over the ranks
  weighted by n_r / B, so ``running_mean`` equals the single-process one and every rank keeps the
  same buffers (``running_var`` is the mean of the parts' variances).
- **Probes and the eigenbasis** measure on each rank's shard of the probe / train splits
  (:mod:`sgdscope._distributed`): Hessian products, Lanczos, the walk and the evaluations are
  all-reduced, and every rank gets the same numbers. A probe failure stops the run (as
  ``train.probe_errors: raise``): a failure on one rank alone would leave the others waiting in
  a collective.
- **Writing**: rank 0 alone writes the run directory — config, metadata, the metrics store and
  the checkpoints. ``--resume`` reads the checkpoint on rank 0 and broadcasts it, so the other
  ranks need no shared storage.
- **Failures**: a rank that dies makes the others fail in their next collective (gloo notices a
  closed connection at once; NCCL and hung ranks after the process group's timeout,
  ``SGDSCOPE_DIST_TIMEOUT`` seconds, default 600). The run's status becomes ``failed`` with the
  reason (written by rank 0, or by a surviving rank when rank 0 is the one that died); ``SIGTERM``
  (torchrun stops the other workers when one fails) is recorded the same way. Checkpoints are
  written atomically and each step's metrics in one transaction, so nothing is written half, and
  ``--resume`` continues from the last checkpoint.

Backends: gloo on CPU; on a machine with CUDA the group is ``cpu:gloo,cuda:nccl`` (NCCL for the
tensors on the GPU, each rank on ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import os
import signal
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .. import metrics as M
from .._distributed import Shard, _part, resolve_group, shard_for
from ..config import RunConfig, dump_config, load_config
from ..data import DataBundle
from ..errors import ConfigError, DistributedError, DivergedError, SgdscopeError
from ..store import CONFIG_FILE, META_FILE, METRICS_FILE, MetricsStore, is_run_dir
from ..store.tensorboard import attach_tensorboard
from .checkpoint import load_checkpoint
from .evaluate import eval_sums, means
from .trainer import Trainer

__all__ = ["DataParallel", "DataParallelTrainer", "data_parallel", "run_data_parallel"]

_log = logging.getLogger("sgdscope")

#: Seconds a collective may wait for the other ranks before the run fails (a hung rank).
TIMEOUT_ENV = "SGDSCOPE_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
#: Debug hook for the tests: with SGDSCOPE_KILL_AT_STEP, only this rank kills itself.
_KILL_RANK_ENV = "SGDSCOPE_KILL_RANK"


@dataclass
class DataParallel:
    """This process's place in a data-parallel run.

    Attributes:
        shard: the process group, rank and world size (:class:`~sgdscope._distributed.Shard`).
        owns_group: whether sgdscope initialised the process group (it then lives until the
            process exits, so further runs in the same script reuse it).
    """

    shard: Shard
    owns_group: bool = False

    @property
    def rank(self) -> int:
        return self.shard.rank

    @property
    def world_size(self) -> int:
        return self.shard.world_size

    @property
    def writer(self) -> bool:
        """Whether this rank writes the run directory (rank 0)."""
        return self.shard.rank == 0

    def part(self, n: int) -> slice:
        """This rank's contiguous rows of ``n`` (sizes differ by at most one)."""
        return slice(*_part(n, self.rank, self.world_size))

    def shard_bundle(self, bundle: DataBundle) -> DataBundle:
        """The bundle with each split cut to this rank's rows (the probes' data)."""

        def cut(split: Any) -> Any:
            return None if split is None else shard_for(split, self.rank, self.world_size)

        return DataBundle(
            bundle.name,
            cut(bundle.train),
            cut(bundle.val),
            cut(bundle.test),
            cut(bundle.probe),
            bundle.input_shape,
            bundle.num_classes,
            bundle.task,
            {**bundle.info, "shard": {"rank": self.rank, "world_size": self.world_size}},
        )

    def failed(self) -> None:
        """Mark the group broken (a peer died): it is not destroyed at exit (that could hang)."""
        _GROUP_STATE["healthy"] = False


#: The process group sgdscope initialised lives as long as the process (a second run in the same
#: torchrun script reuses it); it is destroyed at exit unless a peer failed.
_GROUP_STATE = {"healthy": True}


def _destroy_at_exit() -> None:
    import torch.distributed as dist

    if _GROUP_STATE["healthy"]:
        with contextlib.suppress(Exception):
            if dist.is_initialized():
                dist.destroy_process_group()


def is_writer_process() -> bool:
    """Whether this process is rank 0 of a data-parallel run, or not data-parallel at all (the
    command line prints its summaries there only)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def _timeout() -> datetime.timedelta:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    return datetime.timedelta(seconds=seconds)


def data_parallel() -> DataParallel | None:
    """The data-parallel context of this process, or None in a single process.

    Uses an initialised ``torch.distributed`` default group (Ray Train, Lightning, your own
    script); otherwise, when the launcher's variables (``WORLD_SIZE`` ≥ 2, ``RANK``,
    ``MASTER_ADDR``) are set, initialises one (gloo on CPU, ``cpu:gloo,cuda:nccl`` with CUDA)
    with the timeout of ``SGDSCOPE_DIST_TIMEOUT``.
    """
    import torch.distributed as dist

    if not dist.is_available():
        return None
    if dist.is_initialized():
        shard = resolve_group("auto")
        return None if shard is None else DataParallel(shard, owns_group=False)
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return None
    if world < 2 or "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        return None
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=_timeout())
    atexit.register(_destroy_at_exit)
    shard = resolve_group("auto")
    if shard is None:  # pragma: no cover - WORLD_SIZE said otherwise
        dist.destroy_process_group()
        return None
    return DataParallel(shard, owns_group=True)


# ---------------------------------------------------------------------------------------------
# The trainer.


class _NullStore:
    """The store of ranks other than 0: they compute everything and write nothing."""

    seq = 0

    def write_step(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_meta(self, *args: Any, **kwargs: Any) -> None:
        pass

    def sync(self) -> None:
        pass

    def truncate_after(self, seq: int) -> int:
        return 0

    def close(self) -> None:
        pass


class DataParallelTrainer(Trainer):
    """The :class:`~sgdscope.train.Trainer` over several processes (module docstring).

    Args:
        cfg, run_dir, resume: as for the Trainer.
        dp: this process's :class:`DataParallel` context.
        store: rank 0's open metrics store (other ranks: ignored, they write nothing).
    """

    def __init__(
        self,
        cfg: RunConfig,
        run_dir: str | Path,
        *,
        dp: DataParallel,
        resume: bool = False,
        store: MetricsStore | None = None,
    ) -> None:
        super().__init__(cfg, run_dir, resume=resume, store=store if dp.writer else _NullStore())  # type: ignore[arg-type]
        self.dp = dp
        p = self.parts
        w = dp.world_size
        if len(p.data.train) < w:
            raise ConfigError(
                f"data-parallel training over {w} processes needs at least {w} training "
                f"examples, {cfg.data.name!r} has {len(p.data.train)}; use fewer processes"
            )
        if not p.full_batch and p.batch_size < w:
            raise ConfigError(
                f"train.batch_size={p.batch_size} is split over {w} processes: it must be at "
                f"least {w} (the batch is global: each rank takes about batch_size / {w})"
            )
        self.shards = dp.shard_bundle(p.data)
        if p.probes.on_error != "raise":
            # A probe failing on one rank alone would leave the others in a collective.
            p.probes.on_error = "raise"
            _log.info("data-parallel run: a probe failure stops the run (probe_errors=raise)")
        self.show_progress = self.show_progress and dp.writer
        kill_rank = os.environ.get(_KILL_RANK_ENV)
        if kill_rank is not None and int(kill_rank) != dp.rank:
            self._kill_at = None
        self._params = [q for q in p.model.parameters() if q.requires_grad]
        self._norms = [
            m
            for m in p.model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None
        ]
        self._weight = 1.0  # n_r / B of the last step, for the BatchNorm statistics

    # -- checkpoints: rank 0 reads and writes ----------------------------------------------
    def save(self) -> None:
        if self.dp.writer:
            super().save()

    def _load_checkpoint(self) -> dict[str, Any] | None:
        box: dict[str, Any]
        if self.dp.writer:
            try:
                box = {"state": load_checkpoint(self.ckpt_dir)}
            except Exception as exc:
                box = {"error": f"{type(exc).__name__}: {exc}"}
                self.dp.shard.broadcast_object(box)
                raise
        else:
            box = {}
        box = self.dp.shard.broadcast_object(box)
        if "error" in box:
            raise DistributedError(f"rank 0 could not read the checkpoint: {box['error']}")
        return box["state"]

    # -- data ------------------------------------------------------------------------------
    def _probe_data(self) -> Any:
        return self.shards

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        p = self.parts
        if p.full_batch:
            return None
        start = self.step_in_epoch * p.batch_size
        idx = self.perm[start : start + p.batch_size]
        mine = self.dp.part(len(idx))
        self._weight = (mine.stop - mine.start) / len(idx)
        train = p.data.train
        if train.transform is None:
            return train.index(idx[mine])
        # Augment the whole global batch, so that the generator draws what it draws in one
        # process (and the same on every rank); keep this rank's rows.
        x, y = train.index(idx)
        return train.transform(x, self.data_gen)[mine], y[mine]

    # -- gradients -------------------------------------------------------------------------
    def _gradient(self, x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        p = self.parts
        p.optimizer.zero_grad(set_to_none=True)
        p.model.train()
        local = torch.zeros((), dtype=torch.float64, device=p.device)
        if x is not None and y is not None:
            if len(y) > 0:
                loss = p.loss_fn(p.model(x), y)
                (loss * self._weight).backward()
                local = loss.detach().double() * self._weight
        else:
            # Full batch: this rank's shard in chunks, each weighted n_c / N over all ranks.
            n = len(p.data.train)
            shard = self.shards.train
            self._weight = len(shard) / n
            for xc, yc in shard.batches(self.cfg.train.grad_chunk_size):
                w = len(yc) / n
                lc = p.loss_fn(p.model(xc), yc)
                (lc * w).backward()
                local += lc.detach().double() * w
        return self._all_reduce_gradients(local)

    def _all_reduce_gradients(self, loss: torch.Tensor) -> torch.Tensor:
        """One all-reduce of every gradient and the loss; returns the global loss (float64)."""
        params = self._params
        dtype = params[0].dtype
        grads = [
            torch.zeros_like(q).reshape(-1) if q.grad is None else q.grad.reshape(-1)
            for q in params
        ]
        # The loss rides along in the gradients' dtype (one process reports it in the model's
        # dtype too).
        flat = torch.cat([*grads, loss.to(dtype).reshape(1)])
        flat = self.dp.shard.all_reduce(flat, inplace=True)
        offset = 0
        for q in params:
            k = q.numel()
            q.grad = flat[offset : offset + k].view_as(q)
            offset += k
        return flat[offset].double()

    def _after_update(self) -> None:
        """Average the BatchNorm running statistics over the ranks, weighted n_r / B."""
        if not self._norms:
            return
        bufs = [b for m in self._norms for b in (m.running_mean, m.running_var)]
        flat = torch.cat([b.reshape(-1) for b in bufs]) * self._weight
        flat = self.dp.shard.all_reduce(flat, inplace=True)
        offset = 0
        with torch.no_grad():
            for b in bufs:
                b.copy_(flat[offset : offset + b.numel()].view_as(b))
                offset += b.numel()

    # -- evaluation ------------------------------------------------------------------------
    def _evaluate(self) -> dict[str, float]:
        p = self.parts
        names = [n for n in self.cfg.train.eval_splits if getattr(p.data, n) is not None]
        if not names:
            return {}
        with _eval_mode(p.model):
            sums = [
                eval_sums(
                    p.model,
                    p.loss_fn,
                    getattr(self.shards, n),
                    self.cfg.train.eval_batch_size,
                    p.accuracy_fn,
                )
                for n in names
            ]
        total = self.dp.shard.all_reduce(torch.stack(sums), inplace=True)
        out: dict[str, float] = {}
        for name, row in zip(names, total, strict=True):
            loss, acc = means(row, p.accuracy_fn is not None)
            out[M.loss_key(name)] = loss
            out[M.acc_key(name)] = acc
        return out


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    from .._state import preserved_state

    with preserved_state(model):
        model.eval()
        yield


# ---------------------------------------------------------------------------------------------
# Running: rank 0 decides and writes, every rank trains.


class _Terminated(BaseException):
    """SIGTERM: torchrun stops the other workers when one fails."""


class _SigtermGuard:
    """SIGTERM raises :class:`_Terminated` until the run is already failing (then the status
    being written must not be cut short by the signal torchrun sends every worker)."""

    def __init__(self) -> None:
        self.quiet = False

    def handler(self, signum: int, frame: Any) -> None:
        if not self.quiet:
            raise _Terminated()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[_SigtermGuard]:
    guard = _SigtermGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = signal.signal(signal.SIGTERM, guard.handler)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGTERM, previous)


def _peer_failure(exc: BaseException) -> str | None:
    """A one-line reason when ``exc`` says another rank died or stopped answering."""
    import torch.distributed as dist

    if isinstance(exc, _Terminated):
        return "this rank got SIGTERM (torchrun stops every worker when one of them fails)"
    dist_error = getattr(dist, "DistError", None)
    text = str(exc)
    markers = ("Connection closed by peer", "Connection reset", "timed out", "Timed out", "gloo",
               "NCCL", "Broken pipe", "ProcessGroup")  # fmt: skip
    if (dist_error is not None and isinstance(exc, dist_error)) or (
        isinstance(exc, RuntimeError) and any(m in text for m in markers)
    ):
        first = text.splitlines()[0] if text else type(exc).__name__
        return f"a peer rank died or stopped answering ({type(exc).__name__}: {first[:200]})"
    return None


def _record_failure(run_dir: Path, store: Any, dp: DataParallel, message: str) -> None:
    """The failed status: rank 0 writes it; another rank only if the run still says running
    (rank 0 is then the one that died)."""
    if dp.writer:
        store.set_status("failed", error=message)
        return
    if not (run_dir / METRICS_FILE).exists():
        return
    with contextlib.suppress(Exception):  # best effort: the run directory may be elsewhere
        from ..store import load_run

        if load_run(run_dir).status == "running":
            survivor = MetricsStore(run_dir / METRICS_FILE)
            try:
                survivor.set_status("failed", error=f"(recorded by rank {dp.rank}) {message}")
            finally:
                survivor.close()


def _decide(
    dp: DataParallel,
    config: Any,
    overrides: list[str] | None,
    out: str | Path | None,
    resume: bool,
    must_exist: bool,
) -> tuple[dict[str, Any], Any]:
    """Rank 0's decision: the config, the run directory, whether to resume; writes the config
    and metadata of a new run. Returns it with the run directory's lock, which rank 0 holds
    until the run ends (one writer per run directory)."""
    from ..store._lock import RunLock
    from .runner import _claim_new_dir, run_meta

    if resume and out is None:
        raise SgdscopeError("--resume needs the run directory: pass --out RUN_DIR")
    if resume and is_run_dir(out):  # type: ignore[arg-type]
        lock = RunLock(Path(out)).acquire()  # type: ignore[arg-type]
        cfg = load_config(Path(out) / CONFIG_FILE)  # type: ignore[arg-type]
        return {"cfg": cfg.model_dump(mode="json"), "run_dir": str(out), "resume": True}, lock
    if must_exist:
        raise SgdscopeError(f"{str(out)!r} is not a run directory (no {METRICS_FILE})")
    cfg = config if isinstance(config, RunConfig) else load_config(config, overrides)
    if isinstance(config, RunConfig) and overrides:
        cfg = load_config(cfg.model_dump(mode="json"), overrides)
    if cfg.device.startswith("cuda:"):
        raise ConfigError(
            f"device={cfg.device!r}: under data parallelism every process would use that one "
            "GPU; use device=cuda (or auto): each process takes cuda:LOCAL_RANK"
        )
    run_dir, lock, _ = _claim_new_dir(cfg, out)
    (run_dir / CONFIG_FILE).write_text(dump_config(cfg))
    meta = run_meta(cfg)
    meta["data_parallel"] = {"world_size": dp.world_size, "backend": dp.shard.backend}
    (run_dir / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False))
    return {"cfg": cfg.model_dump(mode="json"), "run_dir": str(run_dir), "resume": False,
            "meta": meta}, lock  # fmt: skip


def run_data_parallel(
    dp: DataParallel,
    config: Any = None,
    overrides: list[str] | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    must_exist: bool = False,
) -> Path:
    """Train one run over every rank of ``dp`` (what :func:`sgdscope.train.run` does under
    torchrun); every rank returns the run directory.

    Rank 0 loads and validates the config, chooses (or reopens) the run directory and writes
    it; the decision is broadcast, so every rank trains the same run even without shared
    storage. ``must_exist``: resume only (``sgdscope resume``).
    """
    lock = None
    try:
        with _sigterm_raises() as guard:
            decision: dict[str, Any] = {}
            if dp.writer:
                try:
                    decision, lock = _decide(dp, config, overrides, out, resume, must_exist)
                except BaseException as exc:
                    dp.shard.broadcast_object({"error": f"{type(exc).__name__}: {exc}"})
                    raise
            decision = dp.shard.broadcast_object(decision)
            if "error" in decision:
                raise DistributedError(f"rank 0 could not start the run: {decision['error']}")
            cfg = load_config(decision["cfg"])
            run_dir = Path(decision["run_dir"])
            _train(dp, cfg, run_dir, guard, resume=decision["resume"], meta=decision.get("meta"))
            # Every rank returns once rank 0 has written the final status and closed the store.
            dp.shard.broadcast_object(None)
            return run_dir
    finally:
        if lock is not None:
            lock.release()


def _build(
    dp: DataParallel, cfg: RunConfig, run_dir: Path, resume: bool, store: Any
) -> DataParallelTrainer:
    """Every rank's trainer; rank 0 builds first (it may download the data into the shared
    cache), and a failure there stops every rank."""
    trainer = None
    if dp.writer:
        try:
            trainer = DataParallelTrainer(cfg, run_dir, dp=dp, resume=resume, store=store)
        except BaseException as exc:
            dp.shard.broadcast_object(f"{type(exc).__name__}: {exc}")
            raise
        dp.shard.broadcast_object(None)
        return trainer
    error = dp.shard.broadcast_object(None)
    if error is not None:
        raise DistributedError(f"rank 0 could not build the run: {error}")
    return DataParallelTrainer(cfg, run_dir, dp=dp, resume=resume, store=store)


def _train(
    dp: DataParallel,
    cfg: RunConfig,
    run_dir: Path,
    guard: _SigtermGuard,
    *,
    resume: bool,
    meta: dict | None,
) -> None:
    store: Any = MetricsStore(run_dir / METRICS_FILE) if dp.writer else _NullStore()
    trainer: DataParallelTrainer | None = None
    try:
        if dp.writer:
            if cfg.store.tensorboard:
                attach_tensorboard(store, run_dir)
            if meta is not None:
                store.set_meta(meta)
        trainer = _build(dp, cfg, run_dir, resume, store)
        trainer.fit()
    except DivergedError:
        guard.quiet = True
        raise
    except KeyboardInterrupt:
        guard.quiet = True
        if dp.writer:
            store.set_status("interrupted", error="interrupted by the user; resume with --resume")
        raise
    except BaseException as exc:
        guard.quiet = True
        step = None if trainer is None else trainer.step
        cause = _peer_failure(exc)
        if cause is not None:
            dp.failed()
            message = (
                f"the data-parallel run over {dp.world_size} processes stopped"
                + ("" if step is None else f" at step {step}")
                + f" on rank {dp.rank}: {cause}; the metrics up to the last written step and "
                "the last checkpoint are intact: continue with --resume"
            )
            _record_failure(run_dir, store, dp, message)
            raise DistributedError(message) from exc
        _record_failure(
            run_dir, store, dp, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        )
        raise
    finally:
        store.close()
