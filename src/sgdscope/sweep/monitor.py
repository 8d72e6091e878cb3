"""The live sweep table: which runs are done, running, failed, retried.

The driver learns a run's end from its executor; that a run started (or started again after its
worker was lost) it reads from the attempt records the workers write beside the runs (see
:mod:`sgdscope.sweep.point`). That works the same for local processes, Ray tasks and Slurm jobs.
On a terminal the table redraws in place; elsewhere (a log file, CI) each change is one line.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any

from .point import read_attempts

#: Order of the states in the counts line.
STATES = ("pending", "running", "finished", "skipped", "diverged", "failed")


@dataclass
class _Row:
    name: str
    state: str = "pending"
    attempts: int = 0
    host: str = ""
    from_step: int | None = None
    started: float | None = None
    seconds: float | None = None
    error: str = ""


class SweepMonitor:
    """Tracks a sweep's runs; shows them live while used as a context manager.

    Args:
        names: the points' names, in grid order.
        sweep_dir: the sweep directory (where the attempt records are).
        session: the driver's session id (attempts of earlier sessions are not counted).
        live: show progress at all (False: only track, e.g. in tests and libraries).
        stream: where to show it (default stderr); a terminal gets the redrawn table.
        poll_s: seconds between reads of the attempt records.
    """

    def __init__(
        self,
        names: list[str],
        sweep_dir: str,
        session: str,
        *,
        live: bool = False,
        stream: IO[str] | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self.rows = {n: _Row(n) for n in names}
        self.sweep_dir = sweep_dir
        self.session = session
        self.live = live
        self.stream = stream or sys.stderr
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rich: Any = None

    # ----------------------------------------------------------------- state
    def poll(self) -> None:
        """Read the attempt records of the runs not yet ended."""
        for row in list(self.rows.values()):
            if row.state not in ("pending", "running"):
                continue
            recs = read_attempts(self.sweep_dir, row.name, self.session)
            if not recs or len(recs) == row.attempts:
                continue
            last = recs[-1]
            with self._lock:
                if row.state not in ("pending", "running"):  # ended meanwhile
                    continue
                row.attempts = len(recs)
                row.state = "running"
                row.host = str(last.get("host", ""))
                row.from_step = last.get("from_step")
                row.started = float(last.get("started") or time.time())
            again = f" (attempt {row.attempts}" if row.attempts > 1 else ""
            if again and row.from_step is not None:
                again += f", resuming from step {row.from_step}"
            self._line(f"{row.name}: running on {row.host}{again + ')' if again else ''}")

    def finished(self, name: str, result: dict[str, Any]) -> None:
        """Record a run's end from its executor's result."""
        row = self.rows[name]
        with self._lock:
            row.state = "skipped" if result.get("skipped") else str(result.get("status"))
            row.seconds = result.get("seconds")
            row.error = (result.get("error") or "").splitlines()[0] if result.get("error") else ""
            if result.get("attempt"):
                row.attempts = max(row.attempts, int(result["attempt"]))
        took = f" in {row.seconds:.1f} s" if row.seconds else ""
        why = f": {row.error}" if row.error else ""
        self._line(f"{name}: {row.state}{took}{why}  [{self.counts_text()}]")

    def counts(self) -> dict[str, int]:
        """Runs per state, plus ``retried``: runs started more than once in this session."""
        with self._lock:
            c = Counter(r.state for r in self.rows.values())
            out = {s: c.get(s, 0) for s in STATES}
            out["retried"] = sum(1 for r in self.rows.values() if r.attempts > 1)
        return out

    def counts_text(self) -> str:
        c = self.counts()
        done = c["finished"] + c["skipped"]
        parts = [f"{done}/{len(self.rows)} done", f"{c['running']} running"]
        parts += [f"{c[k]} {k}" for k in ("diverged", "failed", "retried") if c[k]]
        return ", ".join(parts)

    # ----------------------------------------------------------------- display
    def table(self) -> Any:
        """The current table as a rich renderable."""
        from rich.table import Table

        t = Table(title=f"sweep: {self.counts_text()}", title_justify="left")
        for col in ("run", "state", "attempt", "host", "time"):
            t.add_column(col, overflow="fold")
        # One line per run: the full error is in the run's store and in summary.csv.
        t.add_column("note", no_wrap=True, overflow="ellipsis", max_width=60)
        now = time.time()
        with self._lock:
            for r in self.rows.values():
                if r.state == "running" and r.started:
                    took = f"{now - r.started:.0f} s"
                else:
                    took = f"{r.seconds:.1f} s" if r.seconds else ""
                note = r.error
                if not note and r.attempts > 1 and r.from_step is not None:
                    note = f"resumed from step {r.from_step}"
                t.add_row(r.name, r.state, str(r.attempts or ""), r.host, took, note)
        return t

    def _tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def _line(self, text: str) -> None:
        if self.live and self._rich is None:
            print(f"sweep: {text}", file=self.stream, flush=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()
            if self._rich is not None:
                self._rich.update(self.table())

    def __enter__(self) -> SweepMonitor:
        if self.live and self._tty():
            from rich.console import Console
            from rich.live import Live

            self._rich = Live(self.table(), console=Console(file=self.stream), refresh_per_second=2)
            self._rich.start()
        self._thread = threading.Thread(target=self._loop, name="sweep-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._rich is not None:
            self._rich.update(self.table())
            self._rich.stop()
            self._rich = None
