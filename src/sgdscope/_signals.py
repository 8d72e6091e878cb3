"""SIGINT and SIGTERM end a run cleanly: after the step in flight, with a final checkpoint.

The runner wraps a run in :func:`stop_signals`. Until the training loop starts, a signal stops
at once (nothing is in flight). Inside :meth:`_StopSignals.graceful` (around the loop) the first
signal only sets a flag, which the loop reads between steps with :func:`stop_requested`; it then
writes a checkpoint and raises :class:`~sgdscope.errors.RunInterrupted`. A second signal stops
at once (a second Ctrl-C is the user saying "now").

Two CPython behaviours make a Ctrl-C during start-up go astray, and are handled here:

- a ``KeyboardInterrupt`` raised while Python runs a finaliser or a weakref callback (imports
  run many) is printed as "Exception ignored" and dropped, so the program would go on as if no
  Ctrl-C came. :func:`catch_lost_interrupts` records such an interrupt instead, as a stop request
  that the runner honours (:func:`raise_if_stop_requested`) and the command line reports;
- under ``python -m``, a ``KeyboardInterrupt`` that ended a string ``exec`` (``dataclasses``
  builds methods that way during imports) makes the interpreter kill itself with SIGINT at exit,
  whatever exit status the program chose. :func:`forget_unhandled_keyboard_interrupt` clears
  that record once the interrupt has been handled.

Handlers can only be installed from the main thread; elsewhere (a run started from a worker
thread) signals keep their usual meaning and :func:`stop_signals` does nothing. A signal the
process inherited as ignored (a shell's background job ignores SIGINT; ``nohup``) stays ignored.

This module imports nothing heavy: the command line's entry point uses it before torch loads.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from .errors import RunInterrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: the signal that asked this process to stop (None: none did)
_requested: int | None = None
#: whether a stop request came from an interrupt Python would have dropped
_lost = False


def stop_requested() -> int | None:
    """The signal that asked the run in this process to stop (None when none did)."""
    return _requested


def raise_if_stop_requested(run_dir: str | None = None) -> None:
    """Stop now if a signal asked to (one that was recorded rather than raised); the request
    is then consumed."""
    global _requested, _lost
    if _requested is not None:
        sig, _requested, _lost = _requested, None, False
        raise RunInterrupted(sig, run_dir, None, False)


def take_lost_interrupt() -> int | None:
    """The signal of an interrupt Python dropped (and that no run handled); clears it."""
    global _requested, _lost
    if not _lost:
        return None
    sig, _requested, _lost = _requested, None, False
    return sig


def forget_unhandled_keyboard_interrupt() -> None:
    """Clear CPython's "unhandled KeyboardInterrupt" record after an interrupt was handled.

    CPython sets it when a ``KeyboardInterrupt`` ends a string ``exec``/``eval`` — even one the
    program catches later — and under ``python -m`` then ends the process by SIGINT instead of
    the exit status chosen. Every string ``exec`` resets the record when it starts; on an
    interpreter without it this is a harmless no-op.
    """
    exec("pass", {})


@contextmanager
def catch_lost_interrupts() -> Iterator[None]:
    """Record (instead of dropping) a KeyboardInterrupt raised where Python cannot propagate it
    — a finaliser, a weakref callback — as a stop request; other such errors go to the
    previous ``sys.unraisablehook``."""
    previous = sys.unraisablehook

    global _requested, _lost

    def hook(unraisable: Any) -> None:
        global _requested, _lost
        exc = unraisable.exc_type
        if exc is not None and issubclass(exc, KeyboardInterrupt):
            if _requested is None:
                _requested = int(getattr(unraisable.exc_value, "signum", signal.SIGINT))
                _lost = True
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
        if _lost:  # recorded here and not taken: it must not stop a later run in this process
            _requested, _lost = None, False


#: Set to "1" in a process whose signals are reported by its parent (a sweep's workers).
QUIET_ENV = "SGDSCOPE_QUIET_SIGNALS"


class _StopSignals:
    def __init__(self, run_dir: str | None) -> None:
        self.run_dir = run_dir
        self._graceful = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        global _requested
        if self._graceful and _requested is None:
            _requested = signum
            # A sweep's worker processes stay quiet: the sweep itself says what happened, once.
            if os.environ.get(QUIET_ENV) != "1":
                print(
                    f"{signal.Signals(signum).name} received: stopping after the step in flight "
                    "(press Ctrl-C again to stop at once)",
                    file=sys.stderr,
                    flush=True,
                )
            return
        raise RunInterrupted(signum, self.run_dir, None, False)

    @contextmanager
    def graceful(self) -> Iterator[None]:
        """Within this block the first signal only sets :func:`stop_requested`."""
        self._graceful = True
        try:
            yield
        finally:
            self._graceful = False


@contextmanager
def stop_signals(run_dir: str | None = None) -> Iterator[_StopSignals]:
    """Handle SIGINT / SIGTERM for one run; restores the previous handlers on exit.

    A stop request recorded before (a dropped interrupt) stays pending: the run's next
    :func:`raise_if_stop_requested` or loop check honours it.
    """
    import threading  # here, not at the top: this module loads first, on every start-up

    global _requested, _lost
    state = _StopSignals(run_dir)
    previous: dict[int, Any] = {}
    with catch_lost_interrupts():
        try:
            if threading.current_thread() is threading.main_thread():
                for s in _SIGNALS:
                    # A signal ignored on purpose (a job started in the background, `nohup`)
                    # stays ignored, as Python itself leaves it.
                    if signal.getsignal(s) is not signal.SIG_IGN:
                        previous[s] = signal.signal(s, state._handler)
            yield state
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            _requested, _lost = None, False
