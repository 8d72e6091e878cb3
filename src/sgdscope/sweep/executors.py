"""Where a sweep's runs execute. Pluggable: an executor maps a function over tasks.

``local`` uses a process pool with one torch thread per worker (two processes with two threads
each on a 2-core machine slow each other 1.2–5×); ``serial`` runs in this process. A cluster
executor (Ray) can register itself under another name.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from .._registry import Registry
from ..errors import SgdscopeError


class Executor(Protocol):
    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Yield ``fn(task)`` for every task, in completion order."""
        ...


EXECUTORS: Registry[Callable[..., Executor]] = Registry("executor")


def _init_worker() -> None:
    import os

    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@EXECUTORS.register("serial")
class SerialExecutor:
    """Run tasks one after another in this process."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = 1

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        for t in tasks:
            yield fn(t)


@EXECUTORS.register("local")
class LocalExecutor:
    """A pool of ``workers`` processes (spawned, one torch thread each)."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, int(workers))

    def map_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        tasks = list(tasks)
        if self.workers == 1 or len(tasks) <= 1:
            _init_worker()
            yield from SerialExecutor().map_unordered(fn, tasks)
            return
        # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = [pool.submit(fn, t) for t in tasks]
            try:
                for f in as_completed(futures):
                    yield f.result()
            except BrokenProcessPool as e:
                raise SgdscopeError(
                    "a sweep worker process died. From a script, start sweeps under "
                    "`if __name__ == '__main__':` (worker processes are spawned and re-import "
                    "the script), or pass workers=1"
                ) from e
