"""Worker processes live no longer than the sweep that started them.

Two halves. In each worker, :func:`die_with_parent` asks the kernel to SIGKILL it when its
parent dies (``PR_SET_PDEATHSIG``), so a sweep killed with SIGKILL takes its workers with it. In
the driver, :func:`signals_interrupt` turns SIGINT, SIGTERM and SIGHUP into
:class:`SweepInterrupted`, so the executor's clean-up runs (terminate the workers, wait for
them) before the driver exits. Together: no worker outlives the sweep, so a re-run never finds
an old worker still writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

_PR_SET_PDEATHSIG = 1


class SweepInterrupted(KeyboardInterrupt):
    """The sweep driver got SIGINT, SIGTERM or SIGHUP; its workers were stopped.

    A ``KeyboardInterrupt`` so that code which already lets Ctrl-C through does the same here.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux only).

    Called first thing in a worker. If the parent died before the request took effect the
    worker exits at once (its parent is then no longer ``parent_pid``).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):  # not glibc/musl: fall back to the driver's handler
            pass
    if os.getppid() != parent_pid:
        os._exit(1)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`SweepInterrupted` in the main
    thread.

    Outside the main thread (where Python cannot install handlers) this does nothing; the
    workers' parent-death signal still holds.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    global _active, _received
    old = {s: signal.signal(s, _raise) for s in _SIGNALS}
    _active, _received = True, None
    try:
        yield
    except SweepInterrupted:
        raise
    except KeyboardInterrupt as e:
        # Some libraries turn the exception our handler raised into a bare KeyboardInterrupt
        # (Ray's wait does); the signal that caused it is remembered.
        raise SweepInterrupted(_received or signal.SIGINT) from e
    finally:
        _active = False
        for s, h in old.items():
            # None: a handler installed outside Python (e.g. by Ray), which cannot be put back.
            signal.signal(s, signal.SIG_DFL if h is None else h)


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_active = False
_received: int | None = None


def _raise(signum: int, frame: Any) -> None:
    global _received
    _received = signum
    raise SweepInterrupted(signum)


def reassert_handlers() -> None:
    """Put the sweep's handlers back after a library replaced them (``ray.init`` installs its
    own SIGTERM handler, which aborts the process before the workers are stopped)."""
    if _active and threading.current_thread() is threading.main_thread():
        for s in _SIGNALS:
            signal.signal(s, _raise)


def terminate(processes: Iterable[Any], grace_s: float = 10.0) -> None:
    """SIGTERM each live process, wait up to ``grace_s`` seconds in all, then SIGKILL the rest.

    ``processes`` are ``multiprocessing.Process``-like (``pid``, ``is_alive``, ``terminate``,
    ``kill``, ``join``). SIGTERM first so a run can end its step and record its status.
    """
    procs = [p for p in processes if p.is_alive()]
    for p in procs:
        with contextlib.suppress(OSError):
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            with contextlib.suppress(OSError):
                p.kill()
            p.join(5.0)
