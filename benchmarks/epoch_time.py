"""Estimated time per training epoch of the paper-scale models on random data of the right shape.

Times ``--steps`` SGD steps (forward, backward, update) after ``--warmup`` untimed ones and
extrapolates to one epoch: CIFAR-10 (50 000 images of 3×32×32, batch 128) for the image models,
PTB (929 589 training tokens, batch 20 × bptt 35, vocabulary 10 000) for the LSTM.

    OMP_NUM_THREADS=2 python benchmarks/epoch_time.py --threads 2 \
        --out benchmarks/results/epoch_times.md
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

import torch

from sgdscope.losses import loss_for_task
from sgdscope.models import build_model, num_parameters

CIFAR_TRAIN = 50_000
PTB_TRAIN_TOKENS = 929_589  # ptb.train.txt with one <eos> per line

# name, model, input shape, classes, task, batch size, examples per epoch, options
CASES = [
    ("SimpleCNN / CIFAR-10", "simplecnn", (3, 32, 32), 10, "classification", 128, CIFAR_TRAIN, {}),
    ("ResNet-32 / CIFAR-10", "resnet32", (3, 32, 32), 10, "classification", 128, CIFAR_TRAIN, {}),
    ("VGG-11 / CIFAR-10", "vgg11", (3, 32, 32), 10, "classification", 128, CIFAR_TRAIN, {}),
    ("ResNet-56 / CIFAR-10", "resnet56", (3, 32, 32), 10, "classification", 128, CIFAR_TRAIN, {}),
    (
        "LSTM LM (2×200) / PTB",
        "lstm_lm",
        (35,),
        10_000,
        "language_model",
        20,
        PTB_TRAIN_TOKENS // 35,
        {},
    ),
]


def time_case(model_name, shape, k, task, batch, steps, warmup, opts, device):
    torch.manual_seed(0)
    model = build_model(model_name, shape, k, **opts).to(device).train()
    loss_fn = loss_for_task(task)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    if task == "language_model":
        x = torch.randint(0, k, (batch, *shape), device=device)
        y = torch.randint(0, k, (batch, *shape), device=device)
    else:
        x = torch.randn(batch, *shape, device=device)
        y = torch.randint(0, k, (batch,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / steps
    cpu = (time.process_time() - c0) / steps
    return wall, cpu, num_parameters(model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="*", help="model names to run (default: all)")
    ap.add_argument("--out", type=Path, help="write a markdown table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lines = [
        "| model / data | parameters | batch | wall s / step | CPU s / step | steps / epoch "
        "| est. min / epoch (wall) | est. min / epoch (CPU s / threads) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, name, shape, k, task, batch, n_epoch, opts in CASES:
        if args.only and name not in args.only:
            continue
        wall, cpu, n_params = time_case(
            name, shape, k, task, batch, args.steps, args.warmup, opts, device
        )
        steps = math.ceil(n_epoch / batch)
        # CPU seconds / threads: the wall time the same work would take on otherwise idle cores.
        line = (
            f"| {label} | {n_params / 1e6:.2f} M | {batch} | {wall:.3f} | {cpu:.3f} | {steps} | "
            f"{wall * steps / 60:.1f} | {cpu / args.threads * steps / 60:.1f} |"
        )
        print(line, flush=True)
        lines.append(line)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    where = (
        f"{args.device}, torch {torch.__version__}, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"1-min load average at the end {load:.1f}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join([f"Measured on: {where}", "", *lines, ""]))
    print(where)


if __name__ == "__main__":
    main()
