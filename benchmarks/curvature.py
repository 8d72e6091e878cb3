"""Curvature benchmark: HVP styles, top-1 / top-10 eigenvalues and trace against peers.

Workloads (issue 3): W1 — MLP 64-32-10 on 512 digits; W2 — SimpleCNN (16/16/32/32) on 128
CIFAR-shaped synthetic samples. Everything is measured side by side in one run, 2 torch threads,
median of ``--repeats``; peers are imported only if installed (``pip install --no-deps
pyhessian==0.1 hessian-eigenthings==1.0.0a5 curvlinops-for-pytorch==3.0.1`` plus
curvlinops' small import-time dependencies).

    python benchmarks/curvature.py --repeats 3 --eig-repeats 1 --out benchmarks/results/curvature.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

import sgdscope as ss
from sgdscope.curvature import HessianOperator, hutchinson_trace, lanczos, power_iteration


def workload(name: str):
    if name == "W1":
        b = ss.load_dataset("digits", subset=512, val_fraction=0.0, probe_fraction=1.0, seed=0)
        torch.manual_seed(0)
        model = ss.build_model("mlp", b.input_shape, 10, widths=[32])
    else:
        b = ss.load_dataset(
            "synthetic",
            input_shape=[3, 32, 32],
            num_classes=10,
            num_samples=128,
            num_test=1,
            val_fraction=0.0,
            probe_fraction=1.0,
            seed=0,
        )
        torch.manual_seed(0)
        model = ss.build_model("simplecnn", b.input_shape, 10, channels=[16, 16, 32, 32])
    x, y = b.train.tensors()
    return model, x, y


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    return statistics.median(timed(fn)[0] for _ in range(repeats))


# ---------------------------------------------------------------------------------------------
def hvp_table(wl: str, repeats: int) -> list[dict]:
    model, x, y = workload(wl)

    def grad():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    t_grad = median_time(grad, repeats)
    model.zero_grad(set_to_none=True)
    rows = [
        {
            "style": "gradient (loss.backward)",
            "s": t_grad,
            "ratio": 1.0,
            "mem_mb": memory_of(wl, "gradient"),
        }
    ]
    n = sum(p.numel() for p in model.parameters())
    v = torch.randn(n)
    V = torch.randn(n, 10)
    for style in ("reuse", "double_backward", "forward_over_reverse"):
        op = HessianOperator(model, F.cross_entropy, (x, y), hvp=style)
        t_build, _ = timed(lambda op=op: op @ v)  # first product (reuse: builds the graph)
        t = median_time(lambda op=op: op @ v, repeats)
        tm = median_time(lambda op=op: op @ V, max(1, repeats // 2)) / 10
        mem = memory_of(wl, style)
        rows.append(
            {
                "style": style,
                "s": t,
                "ratio": t / t_grad,
                "first": t_build,
                "block10_ratio": tm / t_grad,
                "mem_mb": mem,
                "info": op.info,
            }
        )
    return rows


def memory_of(wl: str, style: str) -> float | None:
    """Peak RSS increase (MB) of 3 products (or gradients) in a fresh process."""
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", wl, style],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return round(json.loads(out.stdout.strip().splitlines()[-1])["mb"], 1)
    except Exception as exc:
        print(f"memory measurement of {style} failed: {exc}", file=sys.stderr)
        return None


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(wl: str, style: str) -> None:
    """Peak RSS (VmHWM, reset through /proc/self/clear_refs) of 3 products (or of 3 gradients
    for ``style="gradient"``) over the resident memory just before them, after a warm-up."""
    torch.set_num_threads(2)
    model, x, y = workload(wl)
    n = sum(p.numel() for p in model.parameters())
    op = None if style == "gradient" else HessianOperator(model, F.cross_entropy, (x, y), hvp=style)

    def work() -> None:
        if op is None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        else:
            op @ torch.randn(n)

    work()  # warm-up (reuse: also builds the retained graph, which counts below as resident)
    if op is not None:
        op.release()  # the retained graph is part of the products' memory
    model.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak-RSS mark
    base = _status_kb("VmRSS")
    for _ in range(3):
        work()
    peak = _status_kb("VmHWM")
    print(json.dumps({"mb": (peak - base) / 1024}))


# ---------------------------------------------------------------------------------------------
class Counter:
    def __init__(self):
        self.n = 0


def run_sgdscope(model, x, y, k, tol=None):
    op = HessianOperator(model, F.cross_entropy, (x, y))
    kw = {} if tol is None else {"tol": tol}
    res = lanczos(op, k, **kw)
    return res.eigenvalues.tolist(), res.num_matvecs


def run_sgdscope_power(model, x, y, k, max_iter=2000):
    op = HessianOperator(model, F.cross_entropy, (x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32 (W2) cannot reach 1e-7: the row says so
        res = power_iteration(op, k, tol=1e-7, max_iter=max_iter)
    return res.eigenvalues.tolist(), res.num_matvecs


def run_pyhessian(model, x, y, k):
    import pyhessian  # noqa: F401  (the package shadows its module ``hessian`` with a class)

    ph = sys.modules["pyhessian.hessian"]
    c = Counter()
    orig = ph.hessian_vector_product

    def counting(*a, **kw):
        c.n += 1
        return orig(*a, **kw)

    ph.hessian_vector_product = counting
    try:
        h = ph.hessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
        vals, _ = h.eigenvalues(top_n=k)
    finally:
        ph.hessian_vector_product = orig
    model.zero_grad(set_to_none=True)
    return sorted(vals, reverse=True), c.n


def _he_operator(model, x, y, c):
    import hessian_eigenthings as he

    op = he.HessianOperator(
        model, [(x, y)], lambda m, batch: F.cross_entropy(m(batch[0]), batch[1])
    )
    orig = op.matvec

    def counting(v):
        c.n += 1
        return orig(v)

    op.matvec = counting
    return op


def run_he_lanczos(model, x, y, k, max_iter=None):
    import hessian_eigenthings as he

    c = Counter()
    op = _he_operator(model, x, y, c)
    res = he.lanczos(op, k=k, which="LA", max_iter=max_iter, seed=0)
    model.zero_grad(set_to_none=True)
    return sorted(torch.as_tensor(res.eigenvalues).tolist(), reverse=True), c.n


def run_he_power(model, x, y, k):
    import hessian_eigenthings as he

    c = Counter()
    op = _he_operator(model, x, y, c)
    res = he.deflated_power_iteration(op, k=k, seed=0)
    model.zero_grad(set_to_none=True)
    return sorted(torch.as_tensor(res.eigenvalues).tolist(), reverse=True), c.n


def _curvlinops_scipy(model, x, y, c):
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator

    params = [p for p in model.parameters() if p.requires_grad]
    op = HessianLinearOperator(
        model, torch.nn.CrossEntropyLoss(), params, [(x, y)], check_deterministic=False
    )
    sp = op.to_scipy()

    def mv(v):
        c.n += 1 if v.ndim == 1 else v.shape[1]
        return sp.matvec(v) if v.ndim == 1 else sp.matmat(v)

    return op, LinearOperator(sp.shape, matvec=mv, matmat=mv, dtype=sp.dtype)


def run_curvlinops(model, x, y, k):
    from scipy.sparse.linalg import eigsh

    c = Counter()
    _, lin = _curvlinops_scipy(model, x, y, c)
    vals = eigsh(lin, k=k, which="LA", return_eigenvectors=False)
    model.zero_grad(set_to_none=True)
    return sorted(vals.tolist(), reverse=True), c.n


def reference(model, x, y, wl):
    dtype = torch.float64 if wl == "W1" else torch.float32
    op = HessianOperator(model, F.cross_entropy, (x, y), dtype=dtype)
    res = lanczos(op, 10, tol=1e-10 if dtype == torch.float64 else 1e-6, max_iter=2000)
    return res.eigenvalues.tolist()


def eig_table(wl: str, repeats: int, only: str = "") -> tuple[list[dict], list[float]]:
    model, x, y = workload(wl)
    ref = reference(model, x, y, wl)
    # float32 (W2) cannot reach 1e-7: cap the product count there instead of timing 2000
    power_cap = 2000 if wl == "W1" else 300
    methods: list[tuple[str, int, Callable]] = [
        ("sgdscope lanczos (defaults)", 1, lambda k: run_sgdscope(model, x, y, k)),
        ("sgdscope lanczos tol=1e-7", 1, lambda k: run_sgdscope(model, x, y, k, tol=1e-7)),
        ("sgdscope lanczos (defaults)", 10, lambda k: run_sgdscope(model, x, y, k)),
        (
            f"sgdscope power_iteration tol=1e-7 (max {power_cap} products)",
            1,
            lambda k: run_sgdscope_power(model, x, y, k, power_cap),
        ),
    ]
    peers = [
        (
            "pyhessian",
            "PyHessian 0.1 eigenvalues (defaults)",
            lambda k: run_pyhessian(model, x, y, k),
        ),
        (
            "hessian_eigenthings",
            "hessian-eigenthings lanczos LA (defaults)",
            lambda k: run_he_lanczos(model, x, y, k),
        ),
        (
            "hessian_eigenthings",
            "hessian-eigenthings lanczos LA max_iter=50",
            lambda k: run_he_lanczos(model, x, y, k, max_iter=50),
        ),
        (
            "hessian_eigenthings",
            "hessian-eigenthings deflated_power_iteration (defaults)",
            lambda k: run_he_power(model, x, y, k),
        ),
        ("curvlinops", "curvlinops 3 + eigsh(which=LA)", lambda k: run_curvlinops(model, x, y, k)),
    ]
    for mod, label, fn in peers:
        try:
            __import__(mod)
        except Exception as exc:  # not installed: say so in the table
            print(f"skipping {label}: {exc}", file=sys.stderr)
            continue
        methods.append((label, 1, fn))
        methods.append((label, 10, fn))
    if only:  # keep the rows whose label contains one of the given words
        methods = [m for m in methods if any(w in m[0] for w in only.split(","))]
    rows = []
    for label, k, fn in methods:
        times, out = [], None
        for _ in range(repeats):
            torch.manual_seed(0)
            dt, out = timed(lambda fn=fn, k=k: fn(k))
            times.append(dt)
        vals, mv = out
        err = max(abs(a - b) / abs(b) for a, b in zip(vals[:k], ref[:k], strict=False))
        rows.append(
            {
                "method": label,
                "k": k,
                "matvecs": mv,
                "s": statistics.median(times),
                "err": err,
                "top": vals[0],
            }
        )
        print(
            f"{wl} {label} k={k}: {mv} products {statistics.median(times):.2f}s err {err:.1e}",
            file=sys.stderr,
        )
    return rows, ref


def trace_table(wl: str, repeats: int) -> list[dict]:
    """Trace at 100 products: error over seeds (mean |err| / |tr|) and time per call."""
    model, x, y = workload(wl)
    op64 = HessianOperator(model, F.cross_entropy, (x, y), dtype=torch.float64)
    n = op64.shape[0]
    if wl != "W1":
        return []
    H = torch.stack([op64 @ e for e in torch.eye(n, dtype=torch.float64)], 1)
    truth = float(H.trace())
    rows = []
    seeds = range(5)
    for label, fn in [
        (
            "sgdscope hutchinson",
            lambda s: (
                hutchinson_trace(
                    HessianOperator(model, F.cross_entropy, (x, y)), 100, seed=s
                ).estimate
            ),
        ),
        (
            "sgdscope hutch++ (99 products)",
            lambda s: (
                hutchinson_trace(
                    HessianOperator(model, F.cross_entropy, (x, y)), 99, seed=s, method="hutch++"
                ).estimate
            ),
        ),
    ]:
        errs, ts = [], []
        for s in seeds:
            dt, est = timed(lambda fn=fn, s=s: fn(s))
            errs.append(abs(est - truth) / abs(truth))
            ts.append(dt)
        rows.append({"method": label, "err": statistics.mean(errs), "s": statistics.median(ts)})
    try:
        from curvlinops import hutchinson_trace as cl_hutch
        from curvlinops import hutchpp_trace

        for label, f, m in (
            ("curvlinops hutchinson_trace", cl_hutch, 100),
            ("curvlinops hutchpp_trace (99 products)", hutchpp_trace, 99),
        ):
            errs, ts = [], []
            for s in seeds:
                c = Counter()
                op, _ = _curvlinops_scipy(model, x, y, c)
                torch.manual_seed(s)
                dt, est = timed(lambda f=f, op=op, m=m: float(f(op, m)))
                errs.append(abs(est - truth) / abs(truth))
                ts.append(dt)
            rows.append({"method": label, "err": statistics.mean(errs), "s": statistics.median(ts)})
    except Exception as exc:
        print(f"skipping curvlinops trace: {exc}", file=sys.stderr)
    return rows


TRACK_MODES = ("sum", "block", "ritz")


def tracking(wl: str, every: int, measurements: int = 3) -> list[dict]:
    """Warm vs cold Lanczos (top-10, default tol) between measurements ``every`` SGD steps apart.

    Every warm start gets the previous measurement's vectors of the default (``ritz``) start.
    """
    model, x, y = workload(wl)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    prev = lanczos(HessianOperator(model, F.cross_entropy, (x, y)), 10)
    rows = []
    for m in range(measurements):
        for _ in range(every):
            opt.zero_grad()
            F.cross_entropy(model(x[:64]), y[:64]).backward()
            opt.step()
        op = HessianOperator(model, F.cross_entropy, (x, y))
        cold = lanczos(op, 10, seed=m + 1)
        row: dict = {"measurement": m + 1, "cold": cold.num_matvecs}
        for mode in TRACK_MODES:
            res = lanczos(op, 10, v0=prev.eigenvectors, seed=m + 1, warm_start=mode)
            err = float(((res.eigenvalues - cold.eigenvalues).abs() / cold.eigenvalues.abs()).max())
            row[mode] = res.num_matvecs
            row[mode + "_how"] = res.warm_start
            row[mode + "_err"] = err
            if mode == "ritz":
                prev = res
        rows.append(row)
        print(f"{wl} tracking every {every}: {row}", file=sys.stderr, flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--eig-repeats", type=int, default=1)
    ap.add_argument("--workloads", default="W1,W2")
    ap.add_argument("--out", default=None)
    ap.add_argument("--memory-child", nargs=2, default=None)
    ap.add_argument("--eig-only", default="", help="eigensolver rows whose label has a word")
    ap.add_argument("--parts", default="hvp,eig,trace,track", help="tables to run")
    ap.add_argument("--track-every", default="5,1", help="SGD steps between tracked measurements")
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    torch.set_num_threads(2)
    lines = [
        "Command: `.venv/bin/python " + " ".join(sys.argv) + "`",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; "
        f"repeats {args.repeats} (HVP), {args.eig_repeats} (eigensolvers)",
        "",
    ]
    for wl in args.workloads.split(","):
        parts = set(args.parts.split(","))
        rows = hvp_table(wl, args.repeats) if "hvp" in parts else []
        lines += (
            []
            if not rows
            else [
                f"### {wl}: one HVP / one gradient",
                "",
                "| style | s per product | × gradient | × gradient per vector in a block of 10 "
                "| peak RSS increase over 3 products (MB) |",
                "| --- | --- | --- | --- | --- |",
            ]
        )
        for r in rows:
            lines.append(
                f"| {r['style']} | {r['s']:.4f} | {r['ratio']:.2f} | "
                f"{r.get('block10_ratio', float('nan')):.2f} | {r.get('mem_mb') or '-'} |"
            )
        info = rows[1]["info"] if rows else None
        lines += (
            []
            if info is None
            else [
                "",
                f"reuse: graph {info['graph_bytes'] / 2**20:.1f} MB retained of budget "
                f"{info['memory_budget'] / 2**20:.0f} MB",
                "",
            ]
        )
        eig, ref = eig_table(wl, args.eig_repeats, args.eig_only) if "eig" in parts else ([], [])
        lines += (
            []
            if not eig
            else [
                f"### {wl}: eigenvalues (largest algebraic); reference λ₁..λ₁₀ = "
                + ", ".join(f"{v:.6g}" for v in ref),
                "",
                "| method | k | products | s | max rel. error |",
                "| --- | --- | --- | --- | --- |",
            ]
        )
        for r in eig:
            lines.append(
                f"| {r['method']} | {r['k']} | {r['matvecs']} | {r['s']:.2f} | {r['err']:.1e} |"
            )
        lines.append("")
        tr = trace_table(wl, args.repeats) if "trace" in parts else []
        if tr:
            lines += [
                f"### {wl}: trace at 100 products (mean rel. error over 5 seeds)",
                "",
                "| method | mean rel. error | s |",
                "| --- | --- | --- |",
            ]
            lines += [f"| {r['method']} | {r['err']:.2e} | {r['s']:.2f} |" for r in tr]
            lines.append("")
        track = [int(e) for e in args.track_every.split(",")] if "track" in parts else []
        for every in track:
            tk = tracking(wl, every)
            lines += [
                f"### {wl}: tracking, top-10 products, measurements every {every} SGD "
                f"step{'s' if every > 1 else ''} (lr 0.05)",
                "",
                "| measurement | cold | warm: sum start | warm: block start "
                "| warm: ritz (default) | ritz: how it finished | cold / ritz |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            lines += [
                f"| {r['measurement']} | {r['cold']} | {r['sum']} | {r['block']} | {r['ritz']} "
                f"| {r['ritz_how']} | {r['cold'] / r['ritz']:.2f} |"
                for r in tk
            ]
            worst = max(r[f"{m}_err"] for r in tk for m in TRACK_MODES)
            lines += ["", f"(largest eigenvalue difference warm vs cold: {worst:.1e} relative)", ""]
        print("\n".join(lines), flush=True)
    text = "\n".join(lines)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
