"""Trainer overhead: seconds per SGD step of sgdscope's Trainer against a plain torch loop.

Both run the same model, data, batch size and learning rate for the same number of steps, side by
side in one process, repeated in alternation; the table reports medians and their ratio. The
Trainer's cost includes its per-step work: one SQLite transaction, the cheap probes (flat copies of
θ and g, norms, the gradient cosine), and its end-of-epoch evaluation and checkpoint.

Usage: python benchmarks/trainer.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from _timing import table
from sgdscope.config import load_config
from sgdscope.train import build_parts, run

CASES = {
    "mlp-digits S=64": {
        "data": {"name": "digits", "probe_size": 64},
        "model": {"name": "mlp", "options": {"widths": [64, 64]}},
        "train": {"epochs": 3, "batch_size": 64, "progress": False, "eval_splits": ["train"]},
    },
    "mlp-mnist1d S=100": {
        "data": {"name": "mnist1d", "probe_size": 64},
        "model": {"name": "mlp", "options": {"widths": [128, 128]}},
        "train": {"epochs": 2, "batch_size": 100, "progress": False, "eval_splits": ["train"]},
    },
}


def plain_loop(cfg: dict, steps: int) -> float:
    parts = build_parts(load_config(cfg))
    model, data, bs = parts.model, parts.data, parts.batch_size
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        perm = torch.randperm(len(data.train), generator=gen)
        for i in range(0, len(perm), bs):
            if done == steps:
                break
            x, y = data.train.index(perm[i : i + bs])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            done += 1
    return time.perf_counter() - t0


def trainer_loop(cfg: dict, probes: list[dict]) -> tuple[float, int]:
    tmp = Path(tempfile.mkdtemp())
    c = dict(cfg, probes=probes)
    parts = build_parts(load_config(c))
    steps = parts.total_steps
    t0 = time.perf_counter()
    run(c, out=tmp / "r")
    elapsed = time.perf_counter() - t0
    shutil.rmtree(tmp)
    return elapsed, steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cheap = [{"name": n} for n in ("lr", "grad_norm", "param_norm", "distance", "grad_cosine")]
    rows = []
    for name, cfg in CASES.items():
        res: dict[str, list[float]] = {"plain": [], "trainer": [], "trainer+probes": []}
        steps = 0
        trainer_loop(cfg, cheap)  # warm-up: first-call imports and caches are not per-step costs
        plain_loop(cfg, 10)
        for _ in range(args.repeats):
            t_bare, steps = trainer_loop(cfg, [])
            t_probe, _ = trainer_loop(cfg, cheap)
            res["trainer"].append(t_bare)
            res["trainer+probes"].append(t_probe)
            res["plain"].append(plain_loop(cfg, steps))
        med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
        rows.append(
            {
                "case": name,
                "steps": steps,
                "plain ms/step": 1e3 * med["plain"] / steps,
                "trainer ms/step": 1e3 * med["trainer"] / steps,
                "trainer+5 probes ms/step": 1e3 * med["trainer+probes"] / steps,
                "ratio trainer/plain": med["trainer"] / med["plain"],
                "ratio +probes/plain": med["trainer+probes"] / med["plain"],
            }
        )
    print(f"torch threads: {args.threads}, repeats: {args.repeats} (medians)")
    print(table(rows))


if __name__ == "__main__":
    main()
