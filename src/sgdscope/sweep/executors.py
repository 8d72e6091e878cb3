"""Where a sweep's runs execute: one interface, several engines.

An executor takes the sweep's :class:`~sgdscope.sweep.point.RunTask` list and runs
:func:`~sgdscope.sweep.point.execute_point` on each, somewhere; it yields an :class:`Outcome` per
task in completion order. Every executor runs the same function into the same run directories,
so the runs, ``summary.csv`` and the report do not depend on the executor.

- ``serial``: in this process, one after another.
- ``local``: a pool of spawned processes with one torch thread each (two processes with two
  threads each on a 2-core machine slow each other 1.2–5×). Workers die with the sweep.
- ``ray``: one Ray task per run on a local Ray instance or a cluster (``pip install
  "sgdscope[ray]"``); see :mod:`sgdscope.sweep.ray_executor`.
- ``slurm``: one Slurm job per run or a job array, through submitit (``pip install
  "sgdscope[slurm]"``); see :mod:`sgdscope.sweep.slurm_executor`.
"""

from __future__ import annotations

import inspect
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._registry import Registry
from .._signals import QUIET_ENV
from ..errors import InvalidArgumentError, SgdscopeError
from ._lifetime import die_with_parent, terminate
from .point import RunTask, execute_point, set_threads


@dataclass(frozen=True)
class Outcome:
    """What became of one task.

    Attributes:
        index: the task's position in the list given to the executor.
        result: :func:`execute_point`'s dict, or None when the task never completed.
        error: why it never completed (its worker was lost more often than retries allow, the
            job was cancelled, ...); None when ``result`` is set.
    """

    index: int
    result: dict[str, Any] | None = None
    error: str | None = None


class Executor(Protocol):
    """Runs sweep points somewhere and reports each as it completes."""

    def run(self, tasks: Sequence[RunTask], workdir: Path) -> Iterator[Outcome]:
        """Run ``execute_point`` on every task; yield an :class:`Outcome` per task as each ends.

        ``workdir`` is a folder inside the sweep directory (so on the sweep's storage) for the
        executor's own files: logs, job records. Leaving the generator early (an exception, a
        signal) stops the tasks still running.
        """
        ...


#: Executor name -> a loader returning its class (cluster executors import their engine lazily).
EXECUTORS: Registry[Callable[[], Callable[..., Executor]]] = Registry("executor")


def _init_worker(parent_pid: int) -> None:
    die_with_parent(parent_pid)
    set_threads(1)
    os.environ[QUIET_ENV] = "1"  # the sweep reports an interrupt once, not each worker


class SerialExecutor:
    """Run tasks one after another in this process."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = 1

    def run(self, tasks: Sequence[RunTask], workdir: Path) -> Iterator[Outcome]:
        for i, t in enumerate(tasks):
            yield Outcome(i, execute_point(t))


class LocalExecutor:
    """A pool of ``workers`` spawned processes, one torch thread each.

    The workers are killed by the kernel if the sweep process dies, and terminated (SIGTERM,
    then SIGKILL after ``grace_s`` seconds) if the sweep is interrupted.
    """

    #: Seconds an interrupted worker gets to end its step before it is killed.
    grace_s = 10.0

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, int(workers or 1))

    def run(self, tasks: Sequence[RunTask], workdir: Path) -> Iterator[Outcome]:
        tasks = list(tasks)
        if self.workers == 1 or len(tasks) <= 1:
            set_threads(1)
            yield from SerialExecutor().run(tasks, workdir)
            return
        # spawn, not fork: forking a process whose torch thread pools are running can deadlock.
        pool = ProcessPoolExecutor(
            min(self.workers, len(tasks)),
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        clean = False
        try:
            futures = {pool.submit(execute_point, t): i for i, t in enumerate(tasks)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    try:
                        yield Outcome(futures[f], f.result())
                    except BrokenProcessPool as e:
                        raise SgdscopeError(
                            "a sweep worker process died. From a script, start sweeps under "
                            "`if __name__ == '__main__':` (worker processes are spawned and "
                            "re-import the script), or pass workers=1; re-running the sweep "
                            "resumes its runs"
                        ) from e
            clean = True
        finally:
            if not clean:
                # Interrupted, or a worker died: no worker may outlive this call.
                terminate(list(getattr(pool, "_processes", {}).values()), self.grace_s)
            pool.shutdown(wait=clean, cancel_futures=not clean)


def _ray() -> Callable[..., Executor]:
    from .ray_executor import RayExecutor

    return RayExecutor


def _slurm() -> Callable[..., Executor]:
    from .slurm_executor import SlurmExecutor

    return SlurmExecutor


EXECUTORS.register("serial")(lambda: SerialExecutor)
EXECUTORS.register("local")(lambda: LocalExecutor)
EXECUTORS.register("ray")(_ray)
EXECUTORS.register("slurm")(_slurm)


def make_executor(name: str, **options: Any) -> Executor:
    """Build the executor ``name`` with the options it takes; refuse options it does not.

    Options whose value is None are left to the executor's default, so a command line can pass
    every option it has.
    """
    factory = EXECUTORS.get(name)()
    given = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(factory).parameters)
    wrong = sorted(set(given) - accepted)
    if wrong:

        def flag(n: str) -> str:
            return "--" + n.replace("_", "-")

        raise InvalidArgumentError(
            f"{', '.join(map(flag, wrong))}: not an option of the {name!r} executor (it takes "
            f"{', '.join(map(flag, sorted(accepted))) or 'none'}); drop it or choose another "
            "--executor"
        )
    return factory(**given)
