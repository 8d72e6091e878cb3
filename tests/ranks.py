"""Run a function in several processes joined by torch.distributed (gloo, CPU), as torchrun would.

``run_ranks(fn, *args)`` starts ``world_size`` processes with ``spawn`` (one torch thread each),
joins them over a gloo process group (a file rendezvous: no port to race for) unless ``init`` is
False (then the processes get torchrun's environment variables — ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT`` — and whoever they call initialises the group), calls
``fn(rank, world_size, *args)`` in each, and returns each rank's return value. A rank that raised
is reported with its traceback; a rank that was killed is reported by its exit code; a run that
takes longer than ``timeout`` seconds is killed and fails the test.
"""

from __future__ import annotations

import datetime
import multiprocessing
import os
import pickle
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


class RankFailed(AssertionError):
    """A rank raised, was killed, or the ranks timed out."""

    def __init__(self, message: str, results: dict[int, Any], exitcodes: dict[int, int | None]):
        super().__init__(message)
        self.results = results
        self.exitcodes = exitcodes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child(
    fn: Callable, rank: int, world_size: int, tmp: str, args: tuple, init: bool, env: dict
) -> None:
    os.environ.update(env)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    out = Path(tmp) / f"rank{rank}.pkl"
    try:
        if init:
            dist.init_process_group(
                "gloo",
                init_method=f"file://{tmp}/rendezvous",
                rank=rank,
                world_size=world_size,
                timeout=datetime.timedelta(seconds=60),
            )
        result = {"ok": fn(rank, world_size, *args)}
    except BaseException as exc:  # reported to the parent with the traceback
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        result["exception"] = exc if _picklable(exc) else None
    finally:
        if init and dist.is_initialized():
            dist.destroy_process_group()
    out.write_bytes(pickle.dumps(result))


def _picklable(obj: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:
        return False
    return True


def run_ranks(
    fn: Callable,
    *args: Any,
    world_size: int = 2,
    timeout: float = 240,
    init: bool = True,
    env: dict[str, str] | None = None,
    allow_failure: bool = False,
) -> list[Any]:
    """``[fn(0, world_size, *args), ..., fn(world_size - 1, ...)]`` computed in that many
    processes; with ``allow_failure``, a list of per-rank dicts ``{"ok": value}``,
    ``{"error": text, "exception": exc}`` or ``{"exitcode": code}`` instead of raising."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        procs = []
        for rank in range(world_size):
            rank_env = {
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world_size),
                "LOCAL_WORLD_SIZE": str(world_size),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                **(env or {}),
            }
            if init:  # the group is made here: nothing else should find torchrun variables
                rank_env = env or {}
            p = ctx.Process(
                target=_child, args=(fn, rank, world_size, tmp, args, init, rank_env), daemon=True
            )
            p.start()
            procs.append(p)
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        timed_out = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)
        results: dict[int, Any] = {}
        for rank in range(world_size):
            path = Path(tmp) / f"rank{rank}.pkl"
            if path.exists():
                results[rank] = pickle.loads(path.read_bytes())
            else:
                results[rank] = {"exitcode": procs[rank].exitcode}
    exitcodes = {r: p.exitcode for r, p in enumerate(procs)}
    if timed_out:
        raise RankFailed(f"ranks {timed_out} still running after {timeout} s", results, exitcodes)
    if allow_failure:
        return [results[r] for r in range(world_size)]
    failed = {r: res for r, res in results.items() if "ok" not in res}
    if failed:
        text = "\n".join(
            f"--- rank {r}: {res.get('traceback') or res}" for r, res in sorted(failed.items())
        )
        raise RankFailed(f"ranks {sorted(failed)} failed:\n{text}", results, exitcodes)
    return [results[r]["ok"] for r in range(world_size)]
