"""How close ``sgdscope plan`` comes to the measured wall time of small-variant runs.

For each recipe, rounds of: ``sgdscope plan RECIPE --json`` (one process; its estimate for one
run, as the recipes sweep several seeds) and ``sgdscope run RECIPE`` (one process, one run at
the config's seed, timed from start to exit), in alternating order, both with
``OMP_NUM_THREADS=1``, so that the load of a shared machine hits plan and run alike. Reported:
estimate / measured per round and their median per recipe (1.0 = exact; the goal is within
[0.5, 1.5]).

Run:  .venv/bin/python benchmarks/plan_accuracy.py [--recipes a-eigenvalues b-walk-sgd]
      [--rounds 3] [--out benchmarks/results/plan.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _timing import table

HERE = Path(__file__).resolve().parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def plan_hours(recipe: str) -> tuple[float, str, float]:
    """(estimated seconds, dominant cost, seconds the plan itself took)."""
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "sgdscope", "plan", recipe, "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    )
    took = time.perf_counter() - t
    p = json.loads(out.stdout)
    # `sgdscope run RECIPE` trains once (the config's seed): compare with the plan of one run,
    # not with its total over the recipe's seeds (the recipes sweep several).
    first = p["runs"][0]
    dom = first["dominant"]
    return first["hours"] * 3600.0, f"{dom[0]}: {dom[1]:.0%}", took


def run_seconds(recipe: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "sgdscope", "run", recipe, "--out", str(Path(tmp) / "r")],
            capture_output=True,
            text=True,
            check=True,
            env=_env(),
        )
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", nargs="+", default=["a-eigenvalues", "b-walk-sgd"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    summary = []
    for recipe in args.recipes:
        ratios = []
        for r in range(args.rounds):
            if r % 2 == 0:
                est, dom, took = plan_hours(recipe)
                meas = run_seconds(recipe)
            else:
                meas = run_seconds(recipe)
                est, dom, took = plan_hours(recipe)
            ratios.append(est / meas)
            rows.append(
                {
                    "recipe": recipe,
                    "round": r,
                    "estimated s": est,
                    "measured s": meas,
                    "estimate / measured": est / meas,
                    "plan took s": took,
                    "dominant (plan)": dom,
                }
            )
            print(rows[-1], flush=True)
        summary.append(
            {"recipe": recipe, "rounds": args.rounds, "median ratio": statistics.median(ratios)}
        )
    text = table(rows) + "\n\n" + table(summary)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
