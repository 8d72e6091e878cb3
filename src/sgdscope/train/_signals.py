"""SIGINT and SIGTERM end a run cleanly: after the step in flight, with a final checkpoint.

The runner wraps a run in :func:`stop_signals`. Until the training loop starts, a signal stops
at once (nothing is in flight). Inside :meth:`_StopSignals.graceful` (around the loop) the first
signal only sets a flag, which the loop reads between steps with :func:`stop_requested`; it then
writes a checkpoint and raises :class:`~sgdscope.errors.RunInterrupted`. A second signal stops
at once (a second Ctrl-C is the user saying "now").

Handlers can only be installed from the main thread; elsewhere (a run started from a worker
thread) signals keep their usual meaning and this module does nothing.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ..errors import RunInterrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: int | None = None


def stop_requested() -> int | None:
    """The signal that asked the run in this process to stop (None when none did)."""
    return _requested


class _StopSignals:
    def __init__(self, run_dir: str | None) -> None:
        self.run_dir = run_dir
        self.step: int | None = None
        self._graceful = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        global _requested
        if self._graceful and _requested is None:
            _requested = signum
            name = signal.Signals(signum).name
            print(
                f"{name} received: stopping after the step in flight "
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
    """Handle SIGINT / SIGTERM for one run; restores the previous handlers on exit."""
    global _requested
    state = _StopSignals(run_dir)
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous: dict[int, Any] = {}
    _requested = None
    try:
        for s in _SIGNALS:
            previous[s] = signal.signal(s, state._handler)
        yield state
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _requested = None
