"""Sweeps on Ray: each run is one Ray task (``pip install "sgdscope[ray]"``).

A worker or node lost mid-run is retried by Ray (``max_retries``) and the retried task resumes
the run from its last checkpoint, because it runs the same :func:`execute_point` on the same run
directory. That needs the sweep directory on storage every node mounts at the same path: the
executor checks it on every node before the first run, and every task checks it again.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, SgdscopeError
from ._lifetime import reassert_handlers
from .executors import Outcome
from .point import RunTask, check_storage, execute_point, set_threads


def _run_on_worker(task: RunTask, threads: int) -> dict[str, Any]:
    set_threads(threads)
    return execute_point(task)


def _sees_storage(sweep_dir: str, session: str) -> tuple[str, str | None]:
    try:
        check_storage(sweep_dir, session)
    except SgdscopeError as e:
        return socket.gethostname(), str(e)
    return socket.gethostname(), None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SgdscopeError(
            'the ray executor needs Ray: pip install "sgdscope[ray]" (on every node)'
        ) from None
    return ray


def _check_amount(name: str, value: float, *, positive: bool) -> float:
    value = float(value)
    if value < 0 or (positive and value == 0) or not math.isfinite(value):
        need = "> 0" if positive else ">= 0"
        raise InvalidArgumentError(f"--{name} must be {need}, got {value}")
    if value > 1 and value != int(value):
        raise InvalidArgumentError(
            f"--{name}: Ray takes a fraction below 1 or a whole number, got {value}; "
            f"use {math.ceil(value)} or a fraction such as 0.5"
        )
    return value


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


class RayExecutor:
    """Run each point as a Ray task.

    Args:
        address: the Ray cluster to join: ``auto`` (the cluster this machine belongs to) or
            ``ray://host:10001`` (Ray Client). None starts a local Ray instance for this sweep
            and stops it afterwards. If Ray is already initialised in this process (a notebook,
            a test), that instance is used as it is.
        cpus_per_run: CPUs reserved per run (a fraction below 1 allowed); each run uses
            ``max(1, floor(cpus_per_run))`` torch threads.
        gpus_per_run: GPUs reserved per run (0.5 packs two runs on one GPU). Ray sets
            ``CUDA_VISIBLE_DEVICES`` for each task; pair it with ``--device cuda`` (or
            ``device: auto``).
        max_retries: how often a run whose worker or node was lost is started again (each time
            resuming from its last checkpoint). Runs that fail by themselves are not retried.
        workers: at most this many runs at once (default: as many as the resources allow).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0,
        max_retries: int = 3,
        workers: int | None = None,
    ) -> None:
        self.address = address
        self.cpus_per_run = _check_amount("cpus-per-run", cpus_per_run, positive=True)
        self.gpus_per_run = _check_amount("gpus-per-run", gpus_per_run, positive=False)
        if max_retries < 0:
            raise InvalidArgumentError(f"--max-retries must be >= 0, got {max_retries}")
        self.max_retries = int(max_retries)
        if workers is not None and workers < 1:
            raise InvalidArgumentError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.threads = max(1, int(self.cpus_per_run))

    # ----------------------------------------------------------------- cluster
    def _connect(self, ray: Any) -> bool:
        """Initialise Ray unless it already is; True when this call started it."""
        if ray.is_initialized():
            return False
        kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if self.address is None:
            kw.update(address="local", include_dashboard=False)
        else:
            kw["address"] = self.address
        try:
            ray.init(**kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SgdscopeError(
                f"could not join the Ray cluster at {self.address!r} ({_first_line(e)}); start "
                "it with `ray start --head` on the head node, or omit --address to run on a "
                "local Ray instance"
            ) from e
        return True

    def _check_nodes(self, ray: Any, sweep_dir: str, session: str) -> None:
        """Refuse to start unless every live node sees the driver's session marker."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(_sees_storage)
        refs = [
            probe.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(sweep_dir, session)
            for n in ray.nodes()
            if n.get("Alive")
        ]
        problems = [err for _, err in ray.get(refs) if err]
        if problems:
            raise SgdscopeError(problems[0] + f" ({len(problems)} of {len(refs)} nodes)")

    # ----------------------------------------------------------------- runs
    def run(self, tasks: Sequence[RunTask], workdir: Path) -> Iterator[Outcome]:
        tasks = list(tasks)
        if not tasks:
            return
        ray = _import_ray()
        started = self._connect(ray)
        reassert_handlers()
        refs: dict[Any, int] = {}
        clean = False
        try:
            if tasks[0].session:
                self._check_nodes(ray, tasks[0].sweep_dir, tasks[0].session)
            remote = ray.remote(_run_on_worker)
            queue = list(enumerate(tasks))
            limit = self.workers or len(tasks)

            def submit() -> None:
                i, t = queue.pop(0)
                ref = remote.options(
                    name=f"sgdscope:{t.name}",
                    num_cpus=self.cpus_per_run,
                    num_gpus=self.gpus_per_run,
                    max_retries=self.max_retries,
                    retry_exceptions=False,
                ).remote(t, self.threads)
                refs[ref] = i

            while queue and len(refs) < limit:
                submit()
            while refs:
                # A timeout, so that a signal's handler runs within a second.
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                for ref in ready:
                    i = refs.pop(ref)
                    try:
                        yield Outcome(i, ray.get(ref))
                    except ray.exceptions.RayError as e:
                        yield Outcome(
                            i,
                            error=f"its Ray worker was lost and the run was retried "
                            f"{self.max_retries} times ({_first_line(e)})",
                        )
                    if queue:
                        submit()
            clean = True
        finally:
            if not clean:
                for ref in refs:
                    try:
                        ray.cancel(ref, force=True)
                    except Exception:  # already finished or its worker already gone
                        pass
            if started:
                ray.shutdown()
