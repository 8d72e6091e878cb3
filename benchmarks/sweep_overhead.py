"""Sweep executor overhead: seconds per run that Ray and Slurm (submitit) add to a sweep.

For each executor, a sweep of ``--runs`` identical-length runs is executed one run at a time
(``workers=1``), so that its wall time is the sum of the runs' own times plus the executor's
overhead:

    overhead per run = (wall time of run_sweep - sum of the runs' own times) / runs

A run's own time is what :func:`sgdscope.sweep.execute_point` measures around the run (building
the model and data, training, writing the store). The wall time is that of ``run_sweep`` as a
user calls it, so it includes starting a local Ray instance (``ray``), starting a controller and
a fresh Python per job (submitit's ``local`` cluster: the Slurm code path minus sbatch and the
queue), importing torch in the workers, dispatch, polling and writing the summary. ``local`` with
one worker runs in the driver and is the baseline.

Each executor runs a 1-run and a ``--runs``-run sweep; the difference splits the overhead into a
fixed cost per sweep (starting Ray, ...) and a marginal cost per run:

    marginal = (overhead(N runs) - overhead(1 run)) / (N - 1),  fixed = overhead(1 run) - marginal

A run's own time, as ``execute_point`` measures it, includes the one-time warm-up of a fresh
process (lazy imports, first torch calls), which a Ray worker or a Slurm job pays where the local
executor pays it once. The "incl. warm-up" columns count it as overhead: they replace each run's
own time with the time of the same run in this warm process (the local executor's).

Executors are interleaved within each round (local, ray, slurm; the next round in reverse) and
rounds repeat; the table reports medians over rounds, and the median of the paired difference of
the marginal cost to ``local``. Two run lengths show whether the overhead depends on how long a
run is.

Usage: python benchmarks/sweep_overhead.py [--rounds 3] [--runs 3] [--steps 10 1000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _timing import table
from sgdscope.sweep import LocalExecutor, run_sweep
from sgdscope.sweep.point import read_attempts


def config(steps: int) -> dict[str, Any]:
    return {
        "name": "overhead",
        "seed": 0,
        "device": "cpu",
        "data": {
            "name": "synthetic",
            "probe_size": 32,
            "options": {"num_samples": 2048, "num_test": 64, "num_classes": 4, "input_shape": [12]},
        },
        "model": {"name": "mlp", "options": {"widths": [16]}},
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"steps": steps, "batch_size": 32, "progress": False},
    }


def executors() -> dict[str, Any]:
    from sgdscope.sweep.ray_executor import RayExecutor
    from sgdscope.sweep.slurm_executor import SlurmExecutor

    return {
        "local": lambda: LocalExecutor(workers=1),
        "ray": lambda: RayExecutor(workers=1),
        "slurm (submitit local)": lambda: SlurmExecutor(cluster="local", workers=1),
    }


def one_sweep(make: Any, steps: int, runs: int, root: Path) -> tuple[float, float]:
    """(wall seconds, sum of the runs' own seconds) of one sweep into a fresh directory."""
    out = Path(tempfile.mkdtemp(dir=root))
    grid = {"seed": list(range(runs))}
    ex = make()
    # run_sweep keeps each result's own time; catch them as the executor hands them over.
    results: list[dict[str, Any]] = []
    inner = ex.run

    def spy(tasks: Any, workdir: Path) -> Any:
        for o in inner(tasks, workdir):
            if o.result is not None:
                results.append(o.result)
            yield o

    ex.run = spy
    t0 = time.perf_counter()
    run_sweep(config(steps), grid, out, executor=ex)
    wall = time.perf_counter() - t0
    assert len(results) == runs and all(r["status"] == "finished" for r in results), results
    assert all(len(read_attempts(out, r["name"])) == 1 for r in results)
    shutil.rmtree(out, ignore_errors=True)
    return wall, sum(r["seconds"] for r in results)


def _split(over1: float, overn: float, n: int) -> tuple[float, float]:
    """(fixed per sweep, marginal per run) from the overheads of a 1-run and an n-run sweep."""
    marginal = (overn - over1) / (n - 1)
    return over1 - marginal, marginal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3, help="runs in the larger sweep (the other: 1)")
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 1000])
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
    exs = executors()
    sizes = (1, args.runs)
    one_sweep(exs["local"], 2, 1, root)  # warm this process (imports, first torch ops)
    # (executor, steps, runs) -> [(wall, runs' own seconds)] over rounds
    raw: dict[tuple[str, int, int], list[tuple[float, float]]] = {}
    for r in range(args.rounds):
        for steps in args.steps:
            order = list(exs) if r % 2 == 0 else list(reversed(exs))
            for n in sizes:
                for name in order:
                    wall, own = one_sweep(exs[name], steps, n, root)
                    raw.setdefault((name, steps, n), []).append((wall, own))
                    print(
                        f"round {r} steps {steps} runs {n} {name}: wall {wall:.2f} s, "
                        f"runs' own {own:.2f} s",
                        flush=True,
                    )
    n = sizes[1]
    rows = []
    for steps in args.steps:
        # A run's time in a warm process: the local executor's, which runs in this process.
        warm = [own / n for _, own in raw[("local", steps, n)]]
        base = None
        for name in exs:
            per_round = []
            for i in range(args.rounds):
                (w1, o1), (wn, on) = raw[(name, steps, 1)][i], raw[(name, steps, n)][i]
                fixed, marginal = _split(w1 - o1, wn - on, n)
                wfixed, wmarginal = _split(w1 - warm[i], wn - n * warm[i], n)
                per_round.append((fixed, marginal, wfixed, wmarginal, on / n))
            if base is None:
                base = per_round

            def med(k: int, vals: list[tuple[float, ...]] = per_round) -> float:
                return statistics.median(v[k] for v in vals)

            rows.append(
                {
                    "executor": name,
                    "steps/run": steps,
                    "run's own s": med(4),
                    "fixed s/sweep": med(0),
                    "marginal s/run": med(1),
                    "marginal − local (paired)": statistics.median(
                        v[1] - b[1] for v, b in zip(per_round, base, strict=True)
                    ),
                    "marginal min–max": f"{min(v[1] for v in per_round):.2f}–"
                    f"{max(v[1] for v in per_round):.2f}",
                    "fixed s/sweep, incl. warm-up": med(2),
                    "marginal s/run, incl. warm-up": med(3),
                }
            )
    print()
    print(table(rows))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
