"""Cost of the live TensorBoard mirror and of the exports.

1. Per committed step: ``MetricsStore.write_step`` with 8 scalars and one 10-entry array, with
   and without the mirror attached, measured in alternation (medians of rounds).
2. A whole training run (the MLP on digits of benchmarks/trainer.py, 3 epochs, the five cheap
   probes, 63 steps) with ``store.tensorboard`` off and on, in alternation.

Both report wall time and the process's CPU time (all threads: the mirror's writer thread
included). On a machine shared with other jobs the CPU time is the steadier of the two.
3. The rebuild after a resume: replaying a store of ``--steps`` steps into fresh event files.
4. Exports of that store in each format.

Usage: python benchmarks/export.py [--rounds 5] [--run-repeats 5] [--steps 20000] [--threads 1]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _timing import table
from sgdscope.store import MetricsStore
from sgdscope.store.export import export_run
from sgdscope.store.tensorboard import TENSORBOARD_DIR, TensorBoardMirror, attach_tensorboard
from sgdscope.train import run

NAMES = [f"metric_{i}" for i in range(8)]
RUN_CFG = {
    "name": "bench",
    "device": "cpu",
    "data": {"name": "digits", "probe_size": 64},
    "model": {"name": "mlp", "options": {"widths": [64, 64]}},
    "train": {"epochs": 3, "batch_size": 64, "progress": False, "eval_splits": ["train"]},
    "probes": [{"name": n} for n in ("lr", "grad_norm", "param_norm", "distance", "grad_cosine")],
}


def _steps(store: MetricsStore, start: int, n: int) -> None:
    rng = np.random.default_rng(start)
    for t in range(start, start + n):
        store.write_step(
            t, t // 100, dict(zip(NAMES, rng.random(8).tolist(), strict=True)),
            {"spectrum": rng.random(10)},
        )  # fmt: skip


def _timed(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of ``fn()``."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def _rows(what: str, unit: str, scale: float, off: list, on: list) -> list[dict[str, object]]:
    rows = []
    for i, clock in enumerate(("wall", "cpu")):
        a = [x[i] * scale for x in off]
        b = [x[i] * scale for x in on]
        rows.append(
            {"what": what, "clock": clock, f"off {unit}": statistics.median(a),
             f"on {unit}": statistics.median(b), f"on − off {unit}": statistics.median(b) -
             statistics.median(a), "median ratio on/off": statistics.median(
                 [y / x for x, y in zip(a, b, strict=True)])}
        )  # fmt: skip
    return rows


def write_cost(rounds: int, n: int = 2000) -> list[dict[str, object]]:
    tmp = Path(tempfile.mkdtemp())
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for r in range(rounds + 1):  # round 0 warms up
        for mirror in (False, True):
            d = tmp / f"{mirror}-{r}"
            d.mkdir()
            s = MetricsStore(d / "metrics.sqlite")
            if mirror:
                attach_tensorboard(s, d)

            def steps(s=s) -> None:
                _steps(s, 0, n)
                s.close()  # the mirror's last flush counts

            t = _timed(steps)
            if r:
                times[mirror].append(t)
    shutil.rmtree(tmp)
    return _rows("write_step, 8 scalars + 1 array", "µs/step", 1e6 / n, times[False], times[True])


def run_cost(repeats: int) -> list[dict[str, object]]:
    tmp = Path(tempfile.mkdtemp())
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for r in range(repeats + 1):  # round 0 warms up
        for tb in (False, True):
            cfg = dict(RUN_CFG, store={"root": str(tmp), "tensorboard": tb})
            t = _timed(lambda cfg=cfg, out=tmp / f"{tb}-{r}": run(cfg, out=out))
            if r:
                times[tb].append(t)
    shutil.rmtree(tmp)
    return _rows(
        "training run, MLP digits, 3 epochs (63 steps)", "s", 1.0, times[False], times[True]
    )


def rebuild_and_exports(steps: int, rounds: int) -> list[dict[str, object]]:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "run").mkdir()
    s = MetricsStore(tmp / "run" / "metrics.sqlite")
    _steps(s, 0, steps)
    rows = []
    t_rebuild = []
    for _ in range(rounds):
        m = TensorBoardMirror(s, tmp / "run" / TENSORBOARD_DIR)  # store has rows: stale
        t0 = time.perf_counter()
        m.close()  # rebuilds from the store, then flushes
        t_rebuild.append(time.perf_counter() - t0)
    rows.append({"what": f"rebuild: replay {steps} steps × 8 scalars",
                 "median s": statistics.median(t_rebuild)})  # fmt: skip
    s.close()
    for fmt in ("csv", "parquet", "jsonl", "tensorboard"):
        ts = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            out = export_run(tmp / "run", fmt, tmp / f"out-{fmt}")
            ts.append(time.perf_counter() - t0)
        size = sum(p.stat().st_size for p in ([out] if out.is_file() else out.iterdir()))
        rows.append({"what": f"export {fmt}: {steps} steps × (8 scalars + 1 array)",
                     "median s": statistics.median(ts), "MB": size / 1e6})  # fmt: skip
    shutil.rmtree(tmp)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--run-repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(table(write_cost(args.rounds)))
    print()
    print(table(run_cost(args.run_repeats)))
    print()
    print(table(rebuild_and_exports(args.steps, 3)))


if __name__ == "__main__":
    main()
