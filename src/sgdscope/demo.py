"""``sgdscope demo``: a small run on embedded data that exercises every probe available."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .cli._format import console, fmt
from .probes import list_probes
from .store import load_run


def demo_config() -> dict[str, Any]:
    """The demo's config: an MLP on scikit-learn's digits, SGD, a few epochs, all cheap probes."""
    probes: list[dict[str, Any]] = [
        {"name": n} for n in ("lr", "grad_norm", "param_norm", "distance", "grad_cosine")
    ]
    return {
        "name": "demo",
        "seed": 0,
        "data": {"name": "digits", "probe_size": 256},
        "model": {"name": "mlp", "options": {"widths": [64, 64]}},
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 8, "batch_size": 64},
        "probes": probes,
    }


def run_demo(out: str | Path = "runs/demo") -> Path:
    """Run the demo into ``out/<timestamp>``; print where the results are and a summary."""
    from .train import run

    out = Path(out)
    cfg = demo_config()
    available = set(list_probes())
    cfg["probes"] = [p for p in cfg["probes"] if p["name"] in available]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    path = run(cfg, out=out / f"digits-mlp-{stamp}")
    elapsed = time.perf_counter() - t0
    r = load_run(path)
    wide = r.wide()
    console.print(f"[bold]sgdscope demo[/bold]: MLP on digits, SGD η=0.1, S=64 — {elapsed:.1f} s")
    console.print(f"results: {path}")
    evals = wide.dropna(subset=["train_loss"])
    from rich.table import Table

    t = Table("epoch", "train loss", "train acc", "val acc", "mean cos(g_t, g_t+1)", "‖θ − θ₀‖")
    steps_per_epoch = max(1, int(wide.index.max()) // max(1, int(evals["epochs_done"].max())))
    for step, row in evals.iterrows():
        e = int(row["epochs_done"])
        sl = wide.loc[(wide.index >= step - steps_per_epoch) & (wide.index < step)]
        cos = sl["grad_cosine"].mean() if "grad_cosine" in sl and len(sl) else float("nan")
        dist = sl["distance"].iloc[-1] if "distance" in sl and len(sl) else float("nan")
        t.add_row(
            str(e),
            fmt(row["train_loss"]),
            fmt(row["train_acc"]),
            fmt(row["val_acc"]),
            fmt(cos),
            fmt(dist),
        )
    console.print(t)
    return path
