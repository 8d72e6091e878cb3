"""The GPU figures of issue 13, in one short script (under 5 minutes on one GPU).

1. Hessian-vector products: products per second and peak memory of ``HessianOperator`` products
   and of Lanczos top-10, for SimpleCNN and ResNet-32 on 2560 CIFAR-shaped examples (float32,
   BatchNorm in eval mode, the library's default product style).
2. The walk: one step of paper B's walk (K = 11 points, BatchNorm in train mode) for VGG-11 over
   45 000 CIFAR-shaped examples, with its peak memory.
3. The CUDA test suite (``pytest -m cuda tests/cuda``): passed / failed / skipped.

Data are synthetic tensors of CIFAR-10's shapes (3 × 32 × 32, 10 classes): the timings do not
depend on the values. On a machine without a GPU, ``--device cpu --small`` runs every part at a
reduced size (8 examples, a 256-example walk, Lanczos capped at 12 products) to check the
script; its figures are then only a smoke test.

Run:  python benchmarks/gpu.py [--device cuda] [--small] [--no-tests] [--out results.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

import sgdscope as ss
from sgdscope.curvature import HessianOperator, lanczos
from sgdscope.landscape import interpolate
from sgdscope.probes import flat_params

ROOT = Path(__file__).resolve().parents[1]
CE = nn.functional.cross_entropy


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


def _data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x.to(device), y.to(device)


def _model(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return ss.build_model(name, (3, 32, 32), 10).to(device)


def hvp_figures(name: str, n: int, device: torch.device, max_iter: int | None) -> dict:
    model = _model(name, device)
    data = _data(n, device)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _reset_peak(device)
    op = HessianOperator(model, CE, data)
    v = torch.randn(op.shape[0], device=device)
    op.matvec(v)  # builds what later products reuse
    _sync(device)
    reps = 0
    t = time.perf_counter()
    while reps < 2 or (time.perf_counter() - t < 5.0 and reps < 50):
        op.matvec(v)
        reps += 1
    _sync(device)
    hvp_s = (time.perf_counter() - t) / reps
    hvp_peak = _peak_mib(device)
    op.release()
    _reset_peak(device)
    op = HessianOperator(model, CE, data)
    t = time.perf_counter()
    with warnings.catch_warnings():  # --small caps Lanczos before it converges
        warnings.simplefilter("ignore")
        res = lanczos(op, 10, tol=1e-4, seed=0, max_iter=max_iter)
    _sync(device)
    lan_s = time.perf_counter() - t
    lan_peak = _peak_mib(device)
    op.release()
    return {
        "model": name,
        "examples": n,
        "parameters": params,
        "HVP products/s": 1.0 / hvp_s,
        "HVP peak MiB": hvp_peak,
        "Lanczos top-10 s": lan_s,
        "Lanczos products": res.num_matvecs,
        "Lanczos products/s": res.num_matvecs / lan_s,
        "Lanczos peak MiB": lan_peak,
        "lambda_1": float(res.eigenvalues[0]),
    }


def walk_figures(n: int, device: torch.device) -> dict:
    model = _model("vgg11", device)
    x, y = _data(n, device)
    a = flat_params(model)
    b = a + 1e-3 * torch.randn(a.numel(), generator=torch.Generator().manual_seed(1)).to(device)
    interpolate(model, CE, (x[:256], y[:256]), a, b, 3, bn_mode="train")  # warm-up
    _reset_peak(device)
    _sync(device)
    t = time.perf_counter()
    curve = interpolate(model, CE, (x, y), a, b, 11, bn_mode="train")
    _sync(device)
    seconds = time.perf_counter() - t
    return {
        "model": "vgg11",
        "examples": n,
        "points": 11,
        "walk step s": seconds,
        "example-forwards/s": 11 * n / seconds,
        "peak MiB": _peak_mib(device),
        "finite": bool(torch.isfinite(torch.as_tensor(curve.losses)).all()),
    }


def cuda_tests(device: torch.device, timeout: int) -> dict:
    env = dict(os.environ)
    if device.type != "cuda":
        env["SGDSCOPE_CUDA_TEST_DEVICE"] = "cpu"  # checks the tests themselves
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/cuda", "-m", "cuda and not slow", "-q", "-rs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:]
    return {
        "suite": "tests/cuda",
        "device": "cuda" if device.type == "cuda" else "cpu (stand-in)",
        "exit": proc.returncode,
        "summary": tail[0] if tail else proc.stderr[-200:],
        "seconds": time.perf_counter() - t,
    }


def _table(rows: list[dict]) -> str:
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in r.values()]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="reduced sizes (a CPU smoke test)")
    ap.add_argument("--no-tests", action="store_true", help="skip the CUDA test suite")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables here")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run with --device cpu --small to check the script")
    started = time.perf_counter()
    n_hvp, n_walk = (8, 256) if args.small else (2560, 45_000)
    max_iter = 12 if args.small else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    head = (
        f"device: {name}; torch {torch.__version__}; sgdscope {ss.__version__}; "
        f"{'small sizes' if args.small else 'full sizes'}; threads {torch.get_num_threads()}"
    )
    print(head, flush=True)
    hvp = [hvp_figures(m, n_hvp, device, max_iter) for m in ("simplecnn", "resnet32")]
    print(_table(hvp), flush=True)
    walk = [walk_figures(n_walk, device)]
    print(_table(walk), flush=True)
    tests = [] if args.no_tests else [cuda_tests(device, timeout=240)]
    if tests:
        print(_table(tests), flush=True)
    total = time.perf_counter() - started
    text = (
        "\n\n".join([head, _table(hvp), _table(walk)] + ([_table(tests)] if tests else []))
        + f"\n\ntotal: {total:.0f} s\n"
    )
    print(f"total: {total:.0f} s")
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(
            json.dumps({"head": head, "hvp": hvp, "walk": walk, "tests": tests}, indent=2)
        )


if __name__ == "__main__":
    main()
