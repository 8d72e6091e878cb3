"""GGN benchmark: a Gauss-Newton product against a Hessian-vector product and a gradient, and
against hessian-eigenthings 1.0's GGN product, on the W1 MLP and the W2 CNN of
``benchmarks/curvature.py``.

Every contender is timed round-robin (``_timing.interleaved``) so machine load hits all alike;
each row is the median over rounds, and the ratios are medians of per-round ratios. One product
is ``op @ v`` for one random vector on the whole workload (operators built once, outside the
timing, as a user building one operator for a Lanczos run would). The peer is imported only if
installed (``make bench-deps``: ``pip install --no-deps hessian-eigenthings==1.0.0a5``).

    python benchmarks/ggn.py --rounds 15 --out benchmarks/results/ggn.md
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from curvature import workload  # benchmarks/ is the script's directory: W1 / W2, one definition
from sgdscope.curvature import GGNOperator, HessianOperator


def _peer(model, x, y) -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        from hessian_eigenthings.operators.ggn import GGNOperator as HEGGN
    except ImportError:
        return None
    op = HEGGN(
        model,
        [(x, y)],
        forward_fn=lambda m, b: m(b[0]),
        loss_of_output_fn=lambda out, b: F.cross_entropy(out, b[1]),
    )
    return op.matvec


def rounds_of(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def bench(wl: str, rounds: int) -> tuple[list[dict], float]:
    model, x, y = workload(wl)
    n = sum(p.numel() for p in model.parameters())
    v = torch.randn(n, generator=torch.Generator().manual_seed(0))
    hess = HessianOperator(model, F.cross_entropy, (x, y), bn_mode="eval")
    ggn = GGNOperator(model, F.cross_entropy, (x, y), bn_mode="eval")
    ggn_func = GGNOperator(model, F.cross_entropy, (x, y), bn_mode="eval", products="func")

    def grad():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    fns: dict[str, Callable[[], object]] = {
        "gradient (loss.backward)": grad,
        "HVP (sgdscope HessianOperator)": lambda: hess @ v,
        "GGN product (sgdscope GGNOperator)": lambda: ggn @ v,
        "GGN product (sgdscope, products='func')": lambda: ggn_func @ v,
    }
    peer = _peer(model, x, y)
    if peer is not None:
        fns["GGN product (hessian-eigenthings 1.0.0a5)"] = lambda: peer(v)
    # Agreement of the two GGN products (float32: relative difference).
    agree = float("nan")
    if peer is not None:
        a, b = ggn @ v, peer(v).detach()
        agree = float((a - b).norm() / b.norm())
    times = rounds_of(fns, rounds)
    base = times["gradient (loss.backward)"]
    ggn_t = times["GGN product (sgdscope GGNOperator)"]
    rows = []
    for name, ts in times.items():
        rows.append(
            {
                "workload": wl,
                "product": name,
                "median ms": 1e3 * statistics.median(ts),
                "× gradient": statistics.median(t / g for t, g in zip(ts, base, strict=True)),
                "× sgdscope GGN": statistics.median(t / g for t, g in zip(ts, ggn_t, strict=True)),
            }
        )
    model.zero_grad(set_to_none=True)
    return rows, agree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--workloads", default="W1,W2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from _timing import table

    rows: list[dict] = []
    agreement = {}
    for wl in args.workloads.split(","):
        r, a = bench(wl, args.rounds)
        rows += r
        agreement[wl] = a
    text = table(rows)
    print(text)
    print("relative difference sgdscope vs hessian-eigenthings GGN product:", agreement)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
