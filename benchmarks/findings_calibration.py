"""How often each finding's rule says "reproduced" on constructed sweeps: with no effect (the
claim false, at its null) and with the effect at the stated size (tests/report/synthetic.py says
the size per rule). Three seeds per sweep, in-memory runs, fixed seeds.

    .venv/bin/python benchmarks/findings_calibration.py --draws 200 [--rules A.projected ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.report.synthetic import CASES

from sgdscope.report.findings import REPRODUCED, RULES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rules", nargs="*", default=None)
    args = ap.parse_args()
    rules = {r.id: r for r in RULES}
    t0 = time.perf_counter()
    n = args.draws
    print("| rule | no effect: reproduced | effect at stated size: reproduced |")
    print("| --- | --- | --- |", flush=True)
    for rid, (null, eff) in CASES.items():
        if args.rules and rid not in args.rules:
            continue
        rng = np.random.default_rng(args.seed)
        hn = sum(rules[rid].evaluate(null(rng)).verdict == REPRODUCED for _ in range(n))
        he = sum(rules[rid].evaluate(eff(rng)).verdict == REPRODUCED for _ in range(n))
        print(f"| `{rid}` | {hn}/{n} ({hn / n:.1%}) | {he}/{n} ({he / n:.1%}) |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
