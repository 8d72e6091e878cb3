"""Cost of paper B's walk: one K = 11 interpolation, and the WalkProbe's overhead on an epoch.

Side by side in one process (ratios are what matter on a shared machine), median of repeats,
with the methods interleaved in every repeat so that load changes hit them alike:

- floor: 11 plain ``model(x)`` forward passes over the data in ``torch.inference_mode``;
- sgdscope: ``interpolate(..., num_points=11)`` (eager, and with ``compile=True``);
- naive: a ``state_dict`` built and loaded per point, forward under ``no_grad`` (what paper B's
  released code did, minus rebuilding the model), then the original state loaded back.

Cases: (i) MLP on mnist1d (4000 train samples), (ii) SimpleCNN on 2000 CIFAR-shaped samples.
Then: a hand-written SGD epoch of the MLP on mnist1d (batch 100, 40 steps) with and without the
WalkProbe measuring at every step (the paper's setting), and at every 10th step, against the same
epoch plus 11 plain forward passes over the train set per step (what any walk probe must cost).

Run:  OMP_NUM_THREADS=2 .venv/bin/python benchmarks/walk.py [--repeats 31] [--cnn-repeats 5]
      [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import sgdscope
from sgdscope.landscape import interpolate
from sgdscope.probes import ProbeContext, When, flat_grads, flat_params
from sgdscope.probes.walk import WalkProbe

CE = nn.functional.cross_entropy
K = 11


def floor_forwards(model: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        for _ in range(K):
            model(x)


def naive(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ta: torch.Tensor, tb: torch.Tensor
) -> list[float]:
    original = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, p in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    out = []
    for a in torch.linspace(0, 1, K).tolist():
        theta = (1 - a) * ta + a * tb
        sd = dict(original)
        for n, piece, s in zip(names, theta.split(sizes), shapes, strict=True):
            sd[n] = piece.view(s).clone()
        model.load_state_dict(sd)
        with torch.no_grad():
            out.append(CE(model(x), y).item())
    model.load_state_dict(original)
    return out


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interpolation_case(
    label: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int, use_compile: bool
) -> list[tuple[str, str, float, float]]:
    model.eval()
    ta = flat_params(model)
    g = torch.Generator().manual_seed(0)
    tb = ta + 0.01 * torch.randn(ta.shape, generator=g)
    data = (x, y)
    methods: dict[str, Callable[[], object]] = {
        "floor: 11 × model(x), inference_mode": lambda: floor_forwards(model, x),
        "interpolate (eager)": lambda: interpolate(model, CE, data, ta, tb, K, bn_mode="eval"),
        "naive: load_state_dict per point": lambda: naive(model, x, y, ta, tb),
    }
    rows: list[tuple[str, str, float, float]] = []
    if use_compile:
        t_compile = timed(
            lambda: interpolate(model, CE, data, ta, tb, K, bn_mode="eval", compile=True)
        )
        print(
            f"[{label}] first compiled interpolate (compile + run): {t_compile:.1f} s", flush=True
        )
        methods["interpolate (compile=True)"] = lambda: interpolate(
            model, CE, data, ta, tb, K, bn_mode="eval", compile=True
        )
    warm = {m: fn() for m, fn in methods.items()}  # warm-up, and a check that they agree
    eager = warm["interpolate (eager)"].losses  # type: ignore[union-attr]
    ref = warm["naive: load_state_dict per point"]
    assert max(abs(a - b) for a, b in zip(eager, ref, strict=True)) < 1e-4, (eager, ref)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(repeats):
        for m, fn in methods.items():
            times[m].append(timed(fn))
    floor = statistics.median(times["floor: 11 × model(x), inference_mode"])
    for m, ts in times.items():
        med = statistics.median(ts)
        rows.append((label, m, med * 1e3, med / floor))
    return rows


def sgd_epoch(
    model: nn.Module,
    bundle,
    probe: WalkProbe | str | None,
    order: torch.Tensor,
    batch_size: int,
    lr: float,
) -> None:
    """One hand-written SGD epoch; ``probe="floor"`` runs 11 plain forwards per step instead."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    theta0 = flat_params(model)
    steps = len(bundle.train) // batch_size
    for i in range(steps):
        idx = order[i * batch_size : (i + 1) * batch_size]
        x, y = bundle.train.index(idx)
        opt.zero_grad()
        if isinstance(probe, WalkProbe):
            theta = flat_params(model)
        loss = CE(model(x), y)
        loss.backward()
        opt.step()
        if probe == "floor":
            floor_forwards(model, bundle.train.x)
        elif isinstance(probe, WalkProbe):
            ctx = ProbeContext(
                model=model,
                loss_fn=CE,
                step=i,
                epoch=0,
                lr=lr,
                theta0=theta0,
                loss=loss.item(),
                grad=flat_grads(model),
                theta=theta,
                theta_next=flat_params(model),
                data=bundle,
                epoch_end=i == steps - 1,
            )
            if probe.due(i, 0):
                probe.measure(ctx)
            if ctx.epoch_end:
                probe.on_epoch_end(ctx)


def probe_overhead(repeats: int) -> list[tuple[str, float, float]]:
    bundle = sgdscope.load_dataset("mnist1d", val_fraction=0)
    torch.manual_seed(0)
    init = sgdscope.build_model("mlp", (40,), 10, widths=[256, 256])
    state = {k: v.clone() for k, v in init.state_dict().items()}
    order = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(0))
    variants: dict[str, Callable[[], WalkProbe | str | None]] = {
        "SGD epoch, no probe": lambda: None,
        "SGD epoch + 11 × model(x_train) per step (floor of any walk probe)": lambda: "floor",
        "SGD epoch + WalkProbe every step": lambda: WalkProbe(When(), num_points=K),
        "SGD epoch + WalkProbe every 10 steps": lambda: WalkProbe(When(every=10), num_points=K),
    }

    def one(make: Callable[[], WalkProbe | str | None]) -> float:
        init.load_state_dict(state)
        init.train()
        probe = make()
        return timed(lambda: sgd_epoch(init, bundle, probe, order, 100, 0.1))

    for make in variants.values():
        one(make)  # warm-up
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v, make in variants.items():
            times[v].append(one(make))
    base = statistics.median(times["SGD epoch, no probe"])
    return [
        (v, statistics.median(ts) * 1e3, statistics.median(ts) / base) for v, ts in times.items()
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=31, help="repeats of the MLP timings")
    ap.add_argument(
        "--cnn-repeats", type=int, default=5, help="repeats of the SimpleCNN and epoch timings"
    )
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, K = {K}, "
        f"median of {args.repeats} (SimpleCNN: {args.cnn_repeats})",
        flush=True,
    )

    mnist = sgdscope.load_dataset("mnist1d", val_fraction=0)
    torch.manual_seed(0)
    mlp = sgdscope.build_model("mlp", (40,), 10, widths=[256, 256])
    cifar = sgdscope.load_dataset(
        "synthetic",
        val_fraction=0,
        num_samples=2000,
        num_test=10,
        num_classes=10,
        input_shape=[3, 32, 32],
    )
    torch.manual_seed(0)
    cnn = sgdscope.build_model("simplecnn", (3, 32, 32), 10)
    rows = interpolation_case(
        f"MLP 40-256-256-10, mnist1d n={len(mnist.train)}",
        mlp,
        *mnist.train.tensors(),
        args.repeats,
        not args.no_compile,
    )
    rows += interpolation_case(
        f"SimpleCNN, 3×32×32 n={len(cifar.train)}",
        cnn,
        *cifar.train.tensors(),
        args.cnn_repeats,
        not args.no_compile,
    )
    print("\n| case | method | median ms | × floor |\n| --- | --- | ---: | ---: |")
    for case, m, ms, ratio in rows:
        print(f"| {case} | {m} | {ms:.1f} | {ratio:.2f} |", flush=True)

    over = probe_overhead(args.cnn_repeats)
    print("\n| MLP on mnist1d, batch 100, 40 steps | median ms | × epoch without probe |")
    print("| --- | ---: | ---: |")
    for v, ms, ratio in over:
        print(f"| {v} | {ms:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
