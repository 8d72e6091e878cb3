"""Cost of a Hessian-vector product on tiny Hugging Face GPT-2 models, against their gradient.

The gradient is what one training step costs: ``model(**batch).loss.backward()`` (forward and
backward, grads zeroed first). Against it, per vector, with the model's own ``.loss``
(``loss_fn=None``) on the same token batch:

- ``reuse`` (the default): one product through the retained first-order graph;
- ``reuse, block of 10``: one ``matmat`` of 10 vectors, per vector, batched (the default where
  the model's operations allow it) and as a loop (``block_products="loop"``);
- ``double_backward``: forward, gradient with a graph, backward — per product;
- ``forward_over_reverse``: ``torch.func.jvp`` of ``torch.func.grad``.

Each round times the gradient and every product style back to back (interleaved, so load changes
hit them alike); the table gives the median over rounds of each ratio (product time / gradient
time of the same round) and the median times, in CPU time of this process (``process_time``:
the work done, much less sensitive to other processes on a shared machine than wall time) and in
wall time. One thread (``--threads 1``, the default): several OpenMP threads spin while they
wait for a core on a loaded machine, and that spinning counts as CPU time.

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hf.py [--rounds 15] [--sizes test small medium]
      [--out benchmarks/results/hf.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from _timing import table
from sgdscope.curvature import HessianOperator

SIZES = {
    # key: (label, (n_embd, n_layer, n_head, vocab, seq_len, batch))
    "test": ("test-size (576 params)", (4, 2, 2, 12, 8, 4)),
    "small": ("small (0.13 M params)", (64, 2, 2, 256, 32, 16)),
    "medium": ("medium (1.3 M params)", (128, 4, 4, 1024, 64, 16)),
}


def build(n_embd: int, n_layer: int, n_head: int, vocab: int, seq: int, batch: int):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=seq,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))
    return model, {"input_ids": ids, "labels": ids}


def measure(name: str, spec: tuple, rounds: int) -> list[dict[str, object]]:
    model, batch = build(*spec)
    n = sum(p.numel() for p in model.parameters())

    def gradient() -> None:
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()

    ops = {
        style: HessianOperator(model, None, batch, hvp=style)
        for style in ("reuse", "double_backward", "forward_over_reverse")
    }
    looped = HessianOperator(model, None, batch, block_products="loop")
    gen = torch.Generator().manual_seed(2)
    v = torch.randn(n, generator=gen)
    V = torch.randn(n, 10, generator=gen)
    fns: dict[str, Callable[[], object]] = {"gradient": gradient}
    fns.update({style: (lambda op=op: op @ v) for style, op in ops.items()})
    fns["reuse, block of 10, batched"] = lambda: ops["reuse"].matmat(V)
    fns["reuse, block of 10, loop"] = lambda: looped.matmat(V)
    per_vector = {"reuse, block of 10, batched": 10, "reuse, block of 10, loop": 10}
    for fn in fns.values():  # warm up: graphs built, batching decided
        fn()
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[k].append((time.process_time() - c0) / per_vector.get(k, 1))
            wall[k].append((time.perf_counter() - w0) / per_vector.get(k, 1))
    rows = []
    for k in fns:
        if k == "gradient":
            continue
        r_cpu = [t / g for t, g in zip(cpu[k], cpu["gradient"], strict=True)]
        r_wall = [t / g for t, g in zip(wall[k], wall["gradient"], strict=True)]
        q1, _, q3 = statistics.quantiles(r_cpu, n=4)
        rows.append(
            {
                "model": name,
                "product (per vector)": k,
                "ratio, CPU time (median)": statistics.median(r_cpu),
                "CPU ratio quartiles": f"{q1:.2f}-{q3:.2f}",
                "ratio, wall time (median)": statistics.median(r_wall),
                "product CPU ms": 1e3 * statistics.median(cpu[k]),
                "gradient CPU ms": 1e3 * statistics.median(cpu["gradient"]),
            }
        )
    assert ops["reuse"].info["block_products"] == "batched"
    assert looped.info["block_products"] == "loop"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["test", "small"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "hf.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for key in args.sizes:
        name, spec = SIZES[key]
        rows += measure(name, spec, args.rounds)
        print(table(rows[-5:]), flush=True)
    load = os.getloadavg()
    threads = os.environ.get("OMP_NUM_THREADS", "?")
    command = f"OMP_NUM_THREADS={threads} .venv/bin/python benchmarks/hf.py --rounds {args.rounds}"
    command += f" --sizes {' '.join(args.sizes)} --threads {args.threads}"
    text = f"""# Tiny Hugging Face GPT-2: Hessian-vector product against the gradient

Command: `{command}`
(torch {torch.__version__}, transformers {transformers.__version__}, {platform.machine()}, CPU,
float32, `loss_fn=None`: the model's own `.loss`). Load average at the end of the run:
{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) on 2 cores shared with other
developers: wall times are inflated and noisy. The figures to read are the ratios of CPU time
(this process's): each product against the gradient timed in the same round,
interleaved, median over {args.rounds} rounds (quartiles beside it).

The gradient is one training step's forward + backward (`model(**batch).loss.backward()`).
Model sizes (n_embd, n_layer, n_head, vocab, sequence length, batch):
{"; ".join(f"{SIZES[k][0]}: {SIZES[k][1]}" for k in args.sizes)}.

{table(rows)}
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
