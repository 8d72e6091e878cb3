"""Synthetic run and sweep stores for the report tests, and one tiny real run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sgdscope.store import CONFIG_FILE, META_FILE, METRICS_FILE, MetricsStore

from ..helpers import tiny_config

Row = tuple[int, int, Mapping[str, float], Mapping[str, Any]]


def write_run(
    path: Path,
    rows: Iterable[Row],
    *,
    lr: float = 0.1,
    batch_size: int | str = 32,
    optim: str = "sgd",
    options: Mapping[str, Any] | None = None,
    schedule: str = "constant",
    seed: int = 0,
    status: str = "finished",
) -> Path:
    """A run directory with the given rows (step, epoch, scalars, arrays) and a minimal config."""
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "name": path.name,
        "seed": seed,
        "data": {"name": "synthetic"},
        "optim": {"name": optim, "lr": lr, "momentum": 0.0, "options": dict(options or {})},
        "schedule": {"name": schedule, "options": {}},
        "train": {"epochs": 2, "batch_size": batch_size},
    }
    (path / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    (path / META_FILE).write_text(yaml.safe_dump({"sgdscope": "test", "torch": "x", "seed": seed}))
    store = MetricsStore(path / METRICS_FILE)
    store.set_status("running")
    last = 0
    for step, epoch, scalars, arrays in rows:
        store.write_step(step, epoch, dict(scalars), dict(arrays))
        last = step
    store.set_status(status, last_step=last)
    store.close()
    return path


def scalar_rows(values: Mapping[str, Mapping[int, float]], steps_per_epoch: int = 10) -> list[Row]:
    """Rows from {name: {step: value}} (epoch = step // steps_per_epoch)."""
    steps = sorted({s for v in values.values() for s in v})
    return [
        (s, s // steps_per_epoch, {n: v[s] for n, v in values.items() if s in v}, {}) for s in steps
    ]


def curve_rows(
    curves: Mapping[int, np.ndarray], inside: bool, barrier: Callable[[int], bool]
) -> list[Row]:
    """Walk-probe rows: interp_loss arrays and their per-step scalars."""
    rows: list[Row] = []
    for t, y in curves.items():
        j = int(np.argmin(y))
        alphas = np.linspace(0, 1, len(y))
        scalars = {
            "valley_floor": float(y[j]),
            "alpha_star": float(alphas[j]),
            "height": float(y[0] - y[j]),
            "minimum_inside": float(inside),
            "barrier": float(barrier(t)),
            "grad_cosine": -0.3,
            "distance": 0.1 * t,
        }
        rows.append((t, t // 10, scalars, {"interp_loss": y}))
    return rows


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real run with the walk and the paper-A probes (16 steps on synthetic data)."""
    import torch

    import sgdscope as ss

    torch.set_num_threads(1)
    cfg = tiny_config()
    probes: list[dict[str, Any]] = [
        {"name": n} for n in ("lr", "grad_norm", "param_norm", "distance", "grad_cosine")
    ]
    probes += [
        {"name": "sharpness", "every": 4, "options": {"per_layer": True}},
        {"name": "walk", "every": 1},
        {"name": "alignment", "every": 4, "options": {"k": 3}},
        {"name": "eigen_loss", "every": 4, "options": {"grid": [-2, -1, -0.5, 0.5, 1, 2]}},
        {"name": "step_scale", "every": 4, "options": {"ks": [1, 3], "alphas": [0.5, 1, 2]}},
    ]
    cfg["eigenbasis"] = {"k": 3, "every": 4}
    cfg["probes"] = probes
    return ss.run(cfg, out=tmp_path_factory.mktemp("report") / "tiny")


# --------------------------------------------------------------------------- synthetic sweeps
STEPS = list(range(0, 101, 5))
RANK = {32: 1, 128: 2, "full": 3}
SEEDS = (0, 1, 2)


def _lambda_curve(peak: float, peak_step: int) -> dict[int, float]:
    """1 at step 0, linear up to ``peak`` at ``peak_step``, then down to 0.8 × peak at 100."""
    out = {}
    for t in STEPS:
        if t <= peak_step:
            out[t] = 1.0 + (peak - 1.0) * t / max(peak_step, 1)
        else:
            out[t] = peak - 0.2 * peak * (t - peak_step) / (100 - peak_step)
    return out


def _sgd_run(root: Path, lr: float, s: int | str, seed: int, good: bool) -> None:
    k = RANK[s]
    jitter = 1.0 + 0.02 * seed  # seeds differ a little
    if good:
        lam = _lambda_curve(
            10.0 * k * (1.0 if lr == 0.01 else 0.5) * jitter, 5 * k + (5 if lr == 0.01 else 0)
        )
        height = 10 * lr * jitter
        cos = -0.3 * k + 0.15 - 0.01 * lr - 0.01 * seed
        dist = 0.1 / k * jitter
    else:
        lam = _lambda_curve(10.0 * (4 - k) * (1.0 if lr == 0.1 else 0.5) * jitter, 100)
        height = 0.001 / lr * jitter
        cos = 0.3 * k - 0.5 + (0.4 if lr == 0.1 else 0.0) + 0.01 * seed
        dist = 0.1 * k * jitter
    values = {
        "lambda_1": lam,
        "height": {t: height for t in STEPS},
        "grad_cosine": {t: cos for t in STEPS},
        "distance": {t: dist * t for t in STEPS},
        "param_norm": {t: 10.0 for t in STEPS},
        "lr": {t: lr for t in STEPS},
        "train_loss": {0: 2.0, 100: 0.1},
        "val_acc": {0: 0.1, 100: 0.9},
        "test_acc": {0: 0.1, 100: 0.9},
    }
    name = f"sgd-lr{lr:g}-S{s}_seed={seed}"
    write_run(root / name, scalar_rows(values), lr=lr, batch_size=s, seed=seed)


def _final_run(
    root: Path,
    name: str,
    final_lambda: float,
    *,
    seed: int,
    loss: float = 0.1,
    acc: float = 0.9,
    norm: float = 10.0,
    distance: float = 3.0,
    **kw: Any,
) -> None:
    jitter = 1.0 + 0.02 * seed
    values = {
        "lambda_1": {0: 1.0, 50: final_lambda * 1.1 * jitter, 100: final_lambda * jitter},
        "train_loss": {0: 2.0, 100: loss * jitter},
        "val_acc": {0: 0.1, 100: acc + 0.001 * seed},
        "test_acc": {0: 0.1, 100: acc + 0.001 * seed},
        "param_norm": {0: 8.0, 100: norm * jitter},
        "distance": {0: 0.0, 100: distance * jitter},
        "grad_cosine": {t: -0.9 for t in STEPS},
    }
    write_run(root / f"{name}_seed={seed}", scalar_rows(values), seed=seed, **kw)


def build_sweep(root: Path, good: bool) -> Path:
    """A folder of runs (3 seeds each) covering the sweep findings, built to reproduce them (or
    not)."""
    runs = root / "runs"
    top, remove = (1.0, 20.0) if good else (20.0, 1.0)
    noisy = (
        {"loss": 0.5, "acc": 0.7, "norm": 12.0, "distance": 10.0}
        if good
        else {"loss": 0.05, "acc": 0.95, "norm": 9.0, "distance": 1.0}
    )
    for seed in SEEDS:
        for lr in (0.01, 0.1):
            for s in (32, 128, "full"):
                _sgd_run(runs, lr, s, seed, good)
        proj = {"optim": "projected_sgd", "seed": seed}
        _final_run(runs, "top-only", top, options={"mode": "top_only"}, **proj)
        _final_run(runs, "remove-top", remove, options={"mode": "remove_top"}, **proj)
        nsgd = {"optim": "nsgd", "seed": seed}
        _final_run(runs, "nsgd-0.1", 100.0 if good else 12.0, options={"gamma": 0.1}, **nsgd)
        _final_run(runs, "nsgd-1", 10.0, options={"gamma": 1.0}, **nsgd)
        _final_run(runs, "noisy-gd", 10.0, optim="noisy_gd", batch_size="full", seed=seed, **noisy)
        _final_run(runs, "sgd-cyclical", 10.0, schedule="cyclical", seed=seed)
    return root


@pytest.fixture(scope="session")
def good_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sweep(tmp_path_factory.mktemp("good_sweep"), good=True)


@pytest.fixture(scope="session")
def bad_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sweep(tmp_path_factory.mktemp("bad_sweep"), good=False)
