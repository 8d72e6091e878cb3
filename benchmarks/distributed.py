"""Data-parallel Hessian-vector products: 2 processes × 1 thread against 1 process × 1 thread.

The probe set (``--examples``, default 4096, CIFAR-free: digits-shaped 64-d inputs, 10 classes)
is held whole by one process, or cut in two halves held by two gloo processes
(``HessianOperator``'s data parallelism: each rank multiplies on its half, one all-reduce of the
(n,) product). Each round times ``--products`` products of the one-process operator (rank 1 waits
in a barrier, without using a core) and as many of the two-process one, in alternating order, so
load changes hit both alike; the table gives medians over rounds of

- **throughput ratio** = products per second of 2 processes / of 1 process, in wall time (what a
  user gets; on a loaded machine the two processes rarely both get a core);
- **CPU-time ratio** = CPU seconds per product of 1 process / of the busier of the 2 ranks: the
  speed-up two free cores would give, before communication;
- the batches whose first-order graph each operator keeps (``reuse``; the rest is recomputed per
  product), so that a speed-up from a graph that fits only in the halves is visible;
- **communication share** = wall time inside the product's collectives (the all-reduce of the
  product and the small check that both ranks multiply the same vector, waiting for the slower
  rank included) / the product's wall time, and the same all-reduce timed alone after a barrier.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distributed.py [--rounds 9] [--products 3]
      [--examples 4096] [--model mlp cnn] [--out benchmarks/results/distributed.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _timing import table

MODELS = {
    "mlp": ("MLP 64→256→256→128→10", (64,)),
    "cnn": ("SimpleCNN on 1×16×16", (1, 16, 16)),
}


def _build(model_name: str, examples: int):
    import sgdscope as ss

    torch.manual_seed(0)
    shape = MODELS[model_name][1]
    if model_name == "mlp":
        model = ss.build_model("mlp", shape, 10, widths=[256, 256, 128], activation="relu")
    else:
        model = ss.build_model("simplecnn", shape, 10, channels=[8, 8, 16, 16])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(examples, *shape, generator=g)
    y = torch.randint(0, 10, (examples,), generator=g)
    return model, x, y


def _worker(rank: int, world: int, args: dict, tmp: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import torch.distributed as dist

    import sgdscope as ss
    from sgdscope import _distributed

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rdzv", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=600),
    )  # fmt: skip
    model, x, y = _build(args["model"], args["examples"])
    half = len(y) // 2
    mine = (x[:half], y[:half]) if rank == 0 else (x[half:], y[half:])
    one = ss.HessianOperator(model, F.cross_entropy, (x, y), group=None) if rank == 0 else None
    two = ss.HessianOperator(model, F.cross_entropy, mine)
    n = two.shape[0]

    # Time spent inside the collectives of a product (the all-reduce and the same-vector check).
    spent = [0.0]
    plain = _distributed.Shard.all_reduce

    def timed(self, t, op="sum", *, inplace=False):
        t0 = time.perf_counter()
        out = plain(self, t, op, inplace=inplace)
        spent[0] += time.perf_counter() - t0
        return out

    _distributed.Shard.all_reduce = timed
    gen = torch.Generator().manual_seed(2)
    vectors = [torch.randn(n, generator=gen) for _ in range(args["products"])]

    def products(op) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        for v in vectors:
            op @ v
        return (time.perf_counter() - w0) / len(vectors), (time.process_time() - c0) / len(vectors)

    # warm up: the retained graphs are built at the first product
    if rank == 0:
        products(one)
    products(two)
    rows = []
    for r in range(args["rounds"]):
        record: dict[str, float] = {}
        order = ("one", "two") if r % 2 == 0 else ("two", "one")
        for phase in order:
            dist.barrier()
            if phase == "one":
                if rank == 0:
                    record["one_wall"], record["one_cpu"] = products(one)
            else:
                spent[0] = 0.0
                record["two_wall"], record["two_cpu"] = products(two)
                record["comm"] = spent[0] / len(vectors)
        dist.barrier()
        buf = torch.randn(n)
        t0 = time.perf_counter()
        for _ in range(len(vectors)):
            dist.all_reduce(buf)
        record["allreduce_alone"] = (time.perf_counter() - t0) / len(vectors)
        rows.append(record)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, rows)
    if rank == 0:
        graphs = {
            "one": f"{one.info['retained_batches']}/{one.info['batches']}",
            "two": f"{two.info['retained_batches']}/{two.info['batches']}",
        }
        Path(tmp, "result.json").write_text(
            json.dumps({"n": n, "ranks": gathered, "graphs": graphs})
        )
    dist.destroy_process_group()


def _median_ratio(pairs: list[tuple[float, float]]) -> tuple[float, float, float]:
    ratios = sorted(a / b for a, b in pairs)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2]


def _measure(model: str, args: argparse.Namespace) -> dict[str, object]:
    params = {"model": model, "rounds": args.rounds, "products": args.products,
              "examples": args.examples}  # fmt: skip
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=_worker, args=(r, 2, params, tmp)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise SystemExit(f"a rank failed: exit codes {[p.exitcode for p in procs]}")
        result = json.loads(Path(tmp, "result.json").read_text())
    r0, r1 = result["ranks"]
    wall = [(a["one_wall"], a["two_wall"]) for a in r0]
    cpu = [(a["one_cpu"], max(a["two_cpu"], b["two_cpu"])) for a, b in zip(r0, r1, strict=True)]
    share = sorted(a["comm"] / a["two_wall"] for a in r0)
    alone = sorted(a["allreduce_alone"] / a["two_wall"] for a in r0)
    thr, thr_lo, thr_hi = _median_ratio(wall)
    cpu_r, cpu_lo, cpu_hi = _median_ratio(cpu)
    label = MODELS[model][0]
    return {
        "model": f"{label} ({result['n'] / 1e6:.2f} M params), {args.examples} examples, float32",
        "throughput ratio, wall (median)": thr,
        "quartiles": f"{thr_lo:.2f}-{thr_hi:.2f}",
        "CPU-time ratio (median)": cpu_r,
        "CPU quartiles": f"{cpu_lo:.2f}-{cpu_hi:.2f}",
        "communication share (median)": f"{100 * statistics.median(share):.1f}%",
        "all-reduce alone / product": f"{100 * statistics.median(alone):.2f}%",
        "1 process, ms per product": 1e3 * statistics.median(a["one_wall"] for a in r0),
        "2 processes, ms per product": 1e3 * statistics.median(a["two_wall"] for a in r0),
        "retained graphs (1 / 2 processes)": f"{result['graphs']['one']} / "
        f"{result['graphs']['two']}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--products", type=int, default=3)
    ap.add_argument("--examples", type=int, default=4096)
    ap.add_argument("--model", nargs="+", choices=sorted(MODELS), default=["mlp"])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distributed.md"))
    args = ap.parse_args()
    rows = [_measure(model, args) for model in args.model]
    load = os.getloadavg()
    text = (
        "# Data-parallel Hessian-vector products: 2 processes × 1 thread against 1 × 1\n\n"
        f"Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/distributed.py --rounds "
        f"{args.rounds} --products {args.products} --examples {args.examples} --model "
        f"{' '.join(args.model)}`\n(torch {torch.__version__}, gloo, {platform.machine()}, "
        f"{os.cpu_count()} cores). Load average at the end of the run: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)"
        + (
            " — the machine was shared with other developers and overloaded: wall times are "
            "inflated and noisy, and two processes rarely got two cores at once; the integrator "
            "reruns this on a quiet machine."
            if load[0] > 0.5 * (os.cpu_count() or 1)
            else "."
        )
        + f"\nMedians over {args.rounds} interleaved rounds of {args.products} products each "
        "(quartiles beside them).\n\n" + table(rows) + "\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
