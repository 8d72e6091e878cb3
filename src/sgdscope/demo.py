"""``sgdscope demo``: small runs on embedded data that test both papers' main findings, an HTML
report for each paper, and the verdicts printed as text.

Paper A (digits, MLP, SGD at three learning rates): λ₁ along training, gradient alignment with the
top eigenvectors, the α test. Paper B (mnist1d, MLP): the walk between consecutive iterates under
SGD at two learning rates and three batch sizes, GD at the edge of stability, and GD with
isotropic noise. About 1–2 minutes on 2 CPU cores (``BENCHMARKS.md``); ``--quick`` shrinks every
run for a smoke test.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .cli._format import console


def paper_a_sweep(quick: bool = False) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Config and grid of the paper-A part: SGD at η ∈ {0.05, 0.2, 0.5}, λ₁/alignment/α-test."""
    every = 2 if quick else 10
    config = {
        "name": "demo-a",
        "data": {"name": "digits", "probe_size": 256},
        "model": {"name": "mlp", "options": {"widths": [64, 64]}},
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 1 if quick else 8, "batch_size": 32, "progress": False},
        "eigenbasis": {"k": 5, "every": every, "bn_mode": "eval"},
        "probes": [
            {"name": "sharpness", "every": every},
            {"name": "alignment", "every": every, "options": {"k": 5}},
            {"name": "step_scale", "every": every},
            {"name": "grad_cosine"},
            {"name": "distance"},
        ],
    }
    if quick:
        config["train"]["steps"] = 6
    return config, {"optim.lr": [0.05, 0.2, 0.5]}


def paper_b_sweep(quick: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Config and points of the paper-B part: SGD (η, S), GD and GD + isotropic noise."""
    epochs = 1 if quick else 10
    config = {
        "name": "demo-b",
        "data": {"name": "mnist1d", "probe_size": 256},
        "model": {"name": "mlp", "options": {"widths": [128, 128]}},
        "optim": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": epochs, "batch_size": 100, "progress": False},
        "probes": [
            {
                "name": "walk",
                "epochs": [0, epochs - 1],
                "options": {"num_points": 11, "bn_mode": "train"},
            },
            {"name": "grad_cosine"},
            {"name": "distance"},
            {"name": "param_norm"},
        ],
    }
    gd_steps = 6 if quick else 300
    gd = {"train.batch_size": "full", "train.steps": gd_steps, "probes.0.epochs": [0, gd_steps - 1]}
    points = [
        {"optim.lr": 0.1, "train.batch_size": 100},
        {"optim.lr": 0.4, "train.batch_size": 100},
        {"optim.lr": 0.4, "train.batch_size": 25},
        {"optim.lr": 0.4, "train.batch_size": 400},
        {"optim.lr": 1.0, **gd},
        {"optim.lr": 1.0, "optim.name": "noisy_gd", "optim.options.c": 0.3, **gd},
    ]
    if quick:
        for p in points:
            p.setdefault("train.steps", 6)
    return config, points


def sharpness_table(sweep: Any) -> str:
    """Paper A's numbers for the demo's runs: λ₁ at its first measurement, its peak (and step) and
    at the end; mean |cos(g, e_i)| over the top 5 against a random direction; the α test ΔL(α)
    along the top-1 step (mean over measurements)."""
    import pandas as pd

    rows = []
    for run in sweep.runs:
        lam = run.scalar("lambda_1")
        if lam.empty:
            continue
        row = {
            "run": run.name,
            "λ₁ first": f"{lam.iloc[0]:.3g}",
            "λ₁ peak (step)": f"{lam.max():.3g} ({int(lam.idxmax())})",
            "λ₁ last": f"{lam.iloc[-1]:.3g}",
            "2/η": f"{2 / float(run.config['optim']['lr']):.3g}",
        }
        align, rand = run.scalar("alignment_mean5"), run.scalar("alignment_random")
        if not align.empty:
            row["align top-5"] = f"{align.mean():.3f}"
            row["align random"] = f"{rand.mean():.4f}"
        for a in ("0.5", "1", "2"):
            d = run.scalar(f"alpha_test_k1_a{a}")
            if not d.empty:
                row[f"ΔL(α={a})"] = f"{d.mean():+.2e}"
        rows.append(row)
    return pd.DataFrame(rows).to_string(index=False) if rows else "(no sharpness measurements)"


def walk_table(sweep: Any) -> str:
    """Paper B's Tables 1–2 for the demo's runs: per walked epoch, height above the valley floor
    (mean ± std over the epoch's updates), barriers crossed and the share of minima inside."""
    import pandas as pd

    rows = []
    for run in sweep.runs:
        wide = run.wide(
            [
                "epoch_height_mean",
                "epoch_height_std",
                "epoch_barriers",
                "epoch_min_inside_frac",
                "epoch_walk_steps",
            ]
        )
        if "epoch_height_mean" not in wide:
            continue
        epochs = run.scalars.drop_duplicates("step").set_index("step")["epoch"]
        for step, r in wide.dropna(subset=["epoch_height_mean"]).iterrows():
            rows.append(
                {
                    "run": run.name,
                    "epoch": int(epochs.get(step, -1)) + 1,
                    "height (nats)": f"{r['epoch_height_mean']:.4f} ± {r['epoch_height_std']:.4f}",
                    "barriers": f"{int(r['epoch_barriers'])}/{int(r['epoch_walk_steps'])}",
                    "min inside": f"{r['epoch_min_inside_frac']:.0%}",
                }
            )
    if not rows:
        return "(no walk measurements)"
    return pd.DataFrame(rows).to_string(index=False)


def run_demo(out: str | Path = "runs/demo", *, workers: int = 2, quick: bool = False) -> Path:
    """Run both parts into ``out/<timestamp>``, write the reports, print the verdicts."""
    from .report import findings_text, judge, write_report
    from .sweep import load_sweep, run_sweep

    root = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    t0 = time.perf_counter()
    console.print(f"[bold]sgdscope demo[/bold] → {root}  ({workers} worker processes)")
    parts = {
        "A — sharpest directions (digits, MLP, SGD η ∈ {0.05, 0.2, 0.5})": (
            "paper-a",
            paper_a_sweep,
        ),
        "B — a walk with SGD (mnist1d, MLP; SGD over η and S, GD, GD + noise)": (
            "paper-b",
            paper_b_sweep,
        ),
    }
    for title, (name, make) in parts.items():
        config, grid = make(quick)
        t = time.perf_counter()
        path = run_sweep(config, grid, root / name, workers=workers)
        sweep = load_sweep(path)
        html = write_report(path)
        console.print(f"\n[bold]Paper {title}[/bold] — {time.perf_counter() - t:.0f} s")
        cols = [
            c
            for c in (
                "run",
                "status",
                "train_loss",
                "test_acc",
                "peak_lambda_1",
                "mean_grad_cosine",
                "distance",
                "mean_height",
            )
            if c in sweep.summary
        ]
        console.print(sweep.summary[cols].to_string(index=False, float_format="%.4g"))
        console.print(walk_table(sweep) if name == "paper-b" else sharpness_table(sweep))
        console.print(findings_text(judge(path), include_na=False))
        console.print(f"report: {html}")
    console.print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s: {root}")
    return root
