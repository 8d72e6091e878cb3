"""Constructed runs and sweeps held in memory, for judging the findings on many random draws.

:class:`MemRun` is a :class:`~sgdscope.store.Run` whose scalars, arrays and status are given
instead of read from a store (the judge reads nothing else), so a test can build hundreds of
sweeps per second. ``CASES`` holds, per rule, a generator of a sweep with no effect (the claim
false, at its null) and one with the effect at its stated size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sgdscope.report._data import FolderSweep
from sgdscope.store import Run

Gen = Callable[[np.random.Generator], FolderSweep]


class MemRun(Run):
    """A run whose data are given: scalars ``{name: {step: value}}`` (epoch = step //
    ``steps_per_epoch`` unless ``epochs`` maps steps to epochs), arrays ``{name: (steps,
    values)}``."""

    def __init__(
        self,
        name: str,
        scalars: Mapping[str, Mapping[int, float]],
        *,
        arrays: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
        lr: float = 0.1,
        batch_size: int | str = 32,
        optim: str = "sgd",
        options: Mapping[str, Any] | None = None,
        schedule: str = "constant",
        seed: int = 0,
        status: str = "finished",
        steps_per_epoch: int = 10,
    ) -> None:
        self.path = Path("mem") / name
        self.config = {
            "name": name,
            "seed": seed,
            "optim": {"name": optim, "lr": lr, "options": dict(options or {})},
            "schedule": {"name": schedule},
            "train": {"batch_size": batch_size},
        }
        self.meta = {}
        rows = [
            (int(s), int(s) // steps_per_epoch, n, float(v))
            for n, by_step in scalars.items()
            for s, v in by_step.items()
        ]
        df = pd.DataFrame(rows, columns=["step", "epoch", "name", "value"])
        self.__dict__["scalars"] = df.sort_values(["step", "name"]).reset_index(drop=True)
        self._arrays = dict(arrays or {})
        self._status = status
        self._last = int(df.step.max()) if len(df) else 0

    @property
    def info(self) -> dict[str, Any]:
        return {"status": self._status, "last_step": self._last, "error": None}

    def array_names(self) -> list[str]:
        return list(self._arrays)

    def array(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self._arrays[name]


def sweep(runs: Sequence[Run], keys: Sequence[str]) -> FolderSweep:
    return FolderSweep(Path("mem"), list(runs), list(keys))


SEEDS = (0, 1, 2)
LR = (0.05, 0.2, 0.4)
BATCH: tuple[int | str, ...] = (32, 128, "full")


def _ar1(rng: np.random.Generator, n: int, phi: float = 0.5) -> np.ndarray:
    e = rng.normal(size=n) * math.sqrt(1 - phi**2)
    out = np.empty(n)
    out[0] = rng.normal()
    for i in range(1, n):
        out[i] = phi * out[i - 1] + e[i]
    return out


def _steps(
    values: Sequence[float] | np.ndarray, every: int = 1, start: int = 0
) -> dict[int, float]:
    return {start + i * every: float(v) for i, v in enumerate(values)}


def _final(name: str, value: float) -> dict[str, dict[int, float]]:
    return {name: {0: value * 1.1, 100: value}}


# --------------------------------------------------------------------------- paper A
def lambda_peak(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """λ₁ at steps 0, 10, ..., 100 (early window: steps ≤ 30). No effect: stationary log-noise
    (sd 0.3). Effect: 1 at the start, 3 early, 2.4 later (rise 3 vs the minimum 1.5)."""
    runs = []
    for s in SEEDS:
        base = rng.normal(0, 0.3)
        if effect:
            mean = np.array([0.0] + [math.log(3)] * 3 + [math.log(2.4)] * 7)
        else:
            mean = np.zeros(11)
        lam = np.exp(base + mean + 0.1 * _ar1(rng, 11))
        runs.append(MemRun(f"s{s}", {"lambda_1": _steps(lam, 10)}, seed=s))
    return sweep(runs, ["seed"])


def _trend_runs(
    rng: np.random.Generator,
    xs: Sequence[Any],
    key: str,
    make: Callable[[int, Any, float], dict[str, dict[int, float]]],
) -> FolderSweep:
    runs = []
    for s in SEEDS:
        u = rng.normal()
        for x in xs:
            kw: dict[str, Any] = {"lr": x} if key == "optim.lr" else {"batch_size": x}
            runs.append(MemRun(f"{key}={x}_s{s}", make(s, x, u), seed=s, **kw))
    return sweep(runs, [key, "seed"])


def peak_lower(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """peak λ₁ ∝ η^b, b = −0.5 (twice the minimum −0.25) or 0; seed intercepts sd 1, noise 0.1."""
    b = -0.5 if effect else 0.0

    def make(s: int, lr: float, u: float) -> dict[str, dict[int, float]]:
        peak = math.exp(u + b * math.log(lr) + 0.1 * rng.normal())
        return {"lambda_1": {0: 0.1 * peak, 50: peak, 100: 0.8 * peak}}

    return _trend_runs(rng, LR, "optim.lr", make)


def peak_earlier(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """λ₁ peaks at a position 0.3 + b ln(η/0.2) of 100 steps, b = −0.06 (3× the minimum) or 0;
    noise sd 0.01 in position."""
    b = -0.06 if effect else 0.0

    def make(s: int, lr: float, u: float) -> dict[str, dict[int, float]]:
        pos = 0.3 + b * math.log(lr / 0.2) + 0.01 * rng.normal()
        p = round(100 * min(max(pos, 0.05), 0.95))
        lam = 1 + 5 * np.exp(-(((np.arange(101) - p) / 3.0) ** 2))
        return {"lambda_1": _steps(lam)}

    return _trend_runs(rng, LR, "optim.lr", make)


def alignment(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """20 measurements per run; |cos(g, r)| ≈ 0.01 |N(0,1)|, top-5 mean at 10× (the minimum is
    5×) or at the same level."""
    runs = []
    for s in SEEDS:
        rnd = 0.01 * np.abs(rng.normal(size=20))
        if effect:  # 10× the random level's mean 0.01·√(2/π)
            top = 0.08 * np.exp(0.3 * _ar1(rng, 20) - 0.045)
        else:
            top = 0.01 * np.abs(rng.normal(size=20))
        vals = {"alignment_mean5": _steps(top, 10), "alignment_random": _steps(rnd, 10)}
        runs.append(MemRun(f"s{s}", vals, seed=s))
    return sweep(runs, ["seed"])


def alpha_test(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """60 α-test steps per run, AR(1) noise sd 0.003: ΔL(0.5), ΔL(1), ΔL(2) = −0.01, −0.005,
    +0.02 or all 0."""
    means = (-0.01, -0.005, 0.02) if effect else (0.0, 0.0, 0.0)
    runs = []
    for s in SEEDS:
        vals = {
            f"alpha_test_k1_a{a:g}": _steps(m + 0.003 * _ar1(rng, 60), 5)
            for a, m in zip((0.5, 1, 2), means, strict=True)
        }
        runs.append(MemRun(f"s{s}", vals, seed=s))
    return sweep(runs, ["seed"])


def eigen_overshoot(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """40 eigen_loss measurements per run; c_min = 0.5 (short of the step) with probability 0.8
    (the stated size) or 0.5 (the null: a coin), else 2 (beyond it)."""
    p = 0.8 if effect else 0.5
    runs = []
    for s in SEEDS:
        cmin = np.where(rng.random(40) < p, 0.5, 2.0)
        runs.append(MemRun(f"s{s}", {"eigen_loss_cmin_e1": _steps(cmin, 10)}, seed=s))
    return sweep(runs, ["seed"])


def _groups(
    rng: np.random.Generator,
    groups: Mapping[str, dict[str, Any]],
    values: Callable[[str, float], dict[str, dict[int, float]]],
    keys: Sequence[str],
) -> FolderSweep:
    runs = []
    for s in SEEDS:
        u = rng.normal(0, 0.2)  # a seed effect shared by the groups
        for g, kw in groups.items():
            runs.append(MemRun(f"{g}_s{s}", values(g, u), seed=s, **kw))
    return sweep(runs, [*keys, "seed"])


def projected(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """Final λ₁: top-only 0.4×, remove-top 2.5× SGD's (margins 1/1.1 and 1.1; run log-noise sd
    0.15), train loss equal (log sd 0.1), or every group alike."""
    factor = {"top": 0.4, "rem": 2.5, "sgd": 1.0} if effect else {"top": 1, "rem": 1, "sgd": 1}
    groups = {
        "top": {"optim": "projected_sgd", "options": {"mode": "top_only"}},
        "rem": {"optim": "projected_sgd", "options": {"mode": "remove_top"}},
        "sgd": {},
    }

    def values(g: str, u: float) -> dict[str, dict[int, float]]:
        lam = 10 * factor[g] * math.exp(u + 0.15 * rng.normal())
        loss = 0.1 * math.exp(u + 0.1 * rng.normal())
        return {**_final("lambda_1", lam), **_final("train_loss", loss)}

    return _groups(rng, groups, values, ["optim.name", "optim.options.mode"])


def _nsgd(
    rng: np.random.Generator, gamma: float, ratio: float, subspace: str = "top", sd: float = 0.2
) -> FolderSweep:
    groups = {
        "nsgd": {"optim": "nsgd", "options": {"gamma": gamma, "subspace": subspace}},
        "base": {"optim": "nsgd", "options": {"gamma": 1.0}},
    }

    def values(g: str, u: float) -> dict[str, dict[int, float]]:
        lam = 100 * (ratio if g == "nsgd" else 1.0) * math.exp(u + sd * rng.normal())
        acc = 0.9 + 0.005 * rng.normal()
        return {**_final("lambda_1", lam), **_final("test_acc", acc)}

    return _groups(rng, groups, values, ["optim.options.gamma"])


def nsgd_sharper(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """γ = 0.1: final λ₁ 5× the γ = 1 baseline (minimum 2×; the paper 4.1×) or 1×, accuracy equal
    (sd 0.5 points)."""
    return _nsgd(rng, 0.1, 5.0 if effect else 1.0)


def nsgd_flatter(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """γ = 10: final λ₁ 0.2× the baseline (maximum 0.5×; the paper 0.33×) or 1×."""
    return _nsgd(rng, 10.0, 0.2 if effect else 1.0)


def nsgd_control(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """Random-subspace γ = 0.1: ratio 1 to the baseline (the claim: inside [1/2, 2]) or 2, on the
    bound (the claim false); run log-noise sd 0.1."""
    return _nsgd(rng, 0.1, 1.0 if effect else 2.0, subspace="random", sd=0.1)


# --------------------------------------------------------------------------- paper B: walk
_A = np.linspace(0, 1, 11)
_BOWL = 1.0 + (_A - 0.5) ** 2
_SLOPE = 2.0 - _A


def _walk_run(
    name: str,
    rng: np.random.Generator,
    *,
    epochs: int,
    per_epoch: int,
    p_ok: float | Sequence[float] = 1.0,
    p_barrier: float | Sequence[float] = 0.0,
    height: Callable[[int], np.ndarray] | None = None,
    **kw: Any,
) -> MemRun:
    """Walked steps 0 … epochs·per_epoch − 1 (epoch = step // per_epoch)."""
    n = epochs * per_epoch
    ep = np.arange(n) // per_epoch
    pok = np.broadcast_to(np.asarray(p_ok, float), (epochs,))[ep]
    pbar = np.broadcast_to(np.asarray(p_barrier, float), (epochs,))[ep]
    ok = rng.random(n) < pok
    curves = np.stack([_BOWL if o else _SLOPE for o in ok])
    h = height(n) if height is not None else np.full(n, 0.1)
    vals = {
        "height": _steps(h),
        "barrier": _steps((rng.random(n) < pbar).astype(float)),
        "minimum_inside": _steps(ok.astype(float)),
    }
    arrays = {"interp_loss": (np.arange(n), curves)}
    return MemRun(name, vals, arrays=arrays, steps_per_epoch=per_epoch, **kw)


def convex_inside(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """2 walked epochs × 40 curves per run (an epoch of the small variants); each curve passes the
    joint test with probability 0.8 (the claim: > 0.5) or 0.5."""
    p = 0.8 if effect else 0.5
    runs = [_walk_run(f"s{s}", rng, epochs=2, per_epoch=40, p_ok=p, seed=s) for s in SEEDS]
    return sweep(runs, ["seed"])


def early_barriers(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """100 walked steps in the first epoch; a barrier with probability 0.01 (the claim: < 0.1)
    or 0.1, in every run."""
    p = 0.01 if effect else 0.1
    runs = [
        _walk_run(f"s{s}", rng, epochs=2, per_epoch=100, p_barrier=(p, 0.1), seed=s) for s in SEEDS
    ]
    return sweep(runs, ["seed"])


def barriers_later(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """2 walked epochs × 100 steps: barrier probability 0 then 0.1 (Table 1's pattern), or 0.05
    in both."""
    p = (0.0, 0.1) if effect else (0.05, 0.05)
    runs = [_walk_run(f"s{s}", rng, epochs=2, per_epoch=100, p_barrier=p, seed=s) for s in SEEDS]
    return sweep(runs, ["seed"])


def height_vs_lr(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """2 walked epochs × 20 steps per run; height ∝ η^b with b = 2 (the paper's ≈ 2; minimum
    0.5) or 0; seed intercepts sd 0.3, run effects sd 0.1, per-step log-noise sd 0.3."""
    b = 2.0 if effect else 0.0
    runs = []
    for s in SEEDS:
        u = rng.normal(0, 0.3)
        for lr in LR:
            level = u + b * math.log(lr) + 0.1 * rng.normal()
            runs.append(
                _walk_run(
                    f"lr{lr}_s{s}",
                    rng,
                    epochs=2,
                    per_epoch=20,
                    seed=s,
                    lr=lr,
                    height=lambda n, lv=level: np.exp(lv + 0.3 * rng.normal(size=n)),
                )
            )
    return sweep(runs, ["optim.lr", "seed"])


def height_decreases(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """2 walked epochs × 20 steps; the second epoch's height 0.5× the first's (maximum 0.8×) or
    1×; per-step log-noise sd 0.3, run effects sd 0.1."""
    r = 0.5 if effect else 1.0
    runs = []
    for s in SEEDS:

        def h(n: int) -> np.ndarray:
            ep = np.arange(n) // 20
            return np.exp(
                0.1 * rng.normal(size=2)[ep] + math.log(r) * ep + 0.3 * rng.normal(size=n)
            )

        runs.append(_walk_run(f"s{s}", rng, epochs=2, per_epoch=20, seed=s, height=h))
    return sweep(runs, ["seed"])


def cos_vs_batch(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """Mean cos = −0.2 + slope · rank(S) (full batch last), slope −0.1 (twice the minimum) or 0;
    seed effects sd 0.05, run noise sd 0.03."""
    slope = -0.1 if effect else 0.0

    def make(s: int, batch: Any, u: float) -> dict[str, dict[int, float]]:
        c = -0.2 + 0.05 * u + slope * BATCH.index(batch) + 0.03 * rng.normal()
        return {"grad_cosine": _steps(c + 0.05 * rng.normal(size=10), 1, 1)}

    return _trend_runs(rng, BATCH, "train.batch_size", make)


def distance_vs_batch(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """‖θ − θ₀‖ at step 100 ∝ exp(slope · rank(S)), slope −0.3 (3× the minimum −0.1) or 0; seed
    effects sd 0.3, run noise sd 0.05. Runs differ in length (larger S: fewer steps), so the
    distance is compared at the shortest run's last step."""
    slope = -0.3 if effect else 0.0

    def make(s: int, batch: Any, u: float) -> dict[str, dict[int, float]]:
        rank = BATCH.index(batch)
        rate = math.exp(0.3 * u + slope * rank + 0.05 * rng.normal())
        last = 100 * (3 - rank)  # more steps per epoch for smaller batches
        return {"distance": {t: rate * math.sqrt(t) for t in range(0, last + 1, 10)}}

    return _trend_runs(rng, BATCH, "train.batch_size", make)


def cos_vs_lr(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """Mean cos with slope 0 on ln η (the claim: inside ±0.05) or 0.05, on the bound; seed effects
    sd 0.05, run noise sd 0.005."""
    slope = 0.0 if effect else 0.05

    def make(s: int, lr: float, u: float) -> dict[str, dict[int, float]]:
        c = -0.3 + 0.05 * u + slope * math.log(lr) + 0.005 * rng.normal()
        return {"grad_cosine": _steps(np.full(10, c), 1, 1)}

    return _trend_runs(rng, LR, "optim.lr", make)


def gd_cosine(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """3 GD runs, 40 steps of cos(g_t, g_{t+1}) with AR(1) noise sd 0.05: mean −0.95 (the claim:
    < −0.7) or −0.7, on the bound."""
    mu = -0.95 if effect else -0.7
    runs = [
        MemRun(
            f"s{s}",
            {"grad_cosine": _steps(mu + 0.05 * _ar1(rng, 40), 1, 1)},
            batch_size="full",
            seed=s,
        )
        for s in SEEDS
    ]
    return sweep(runs, ["seed"])


def noisy_gd(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """GD against GD + noise (c = 0.3): final train loss 2×, accuracy −5 points, distance 2×,
    ‖θ‖ 1.2× (minimums 1.1×, < 0, 1.1×, > 1×), or every number alike; seed effects shared."""
    groups = {
        "gd": {"batch_size": "full"},
        "noisy": {"batch_size": "full", "optim": "noisy_gd", "options": {"c": 0.3}},
    }
    eff = {"loss": 2.0, "acc": -0.05, "dist": 2.0, "norm": 1.2} if effect else None

    def values(g: str, u: float) -> dict[str, dict[int, float]]:
        e = eff if (g == "noisy" and eff) else {"loss": 1.0, "acc": 0.0, "dist": 1.0, "norm": 1.0}
        return {
            **_final("train_loss", 0.1 * e["loss"] * math.exp(u + 0.1 * rng.normal())),
            **_final("test_acc", 0.9 + e["acc"] + 0.005 * rng.normal()),
            **_final("distance", 5 * e["dist"] * math.exp(u + 0.1 * rng.normal())),
            **_final("param_norm", 20 * e["norm"] * math.exp(0.1 * u + 0.03 * rng.normal())),
        }

    return _groups(rng, groups, values, ["optim.name", "optim.options.c"])


def spectral_norm(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """20 measurements of ‖H‖₂ per run (windows of 4): falling to 0.5× then rising 1.5× in the
    last window (minimums 0.8× and 1.1×), or stationary; log-noise sd 0.1."""
    runs = []
    for s in SEEDS:
        if effect:
            prof = np.concatenate([np.linspace(0, math.log(0.5), 16), np.full(4, math.log(0.75))])
        else:
            prof = np.zeros(20)
        v = 10 * np.exp(rng.normal(0, 0.3) + prof + 0.1 * rng.normal(size=20))
        runs.append(MemRun(f"s{s}", {"spectral_norm": _steps(v, 10)}, seed=s))
    return sweep(runs, ["seed"])


def schedules(rng: np.random.Generator, effect: bool) -> FolderSweep:
    """Final test accuracy: trapezoid and cyclical equal to step-wise (the claim: > −2 points) or
    2 points lower, on the margin; seed effects shared, run noise sd 0.3 points."""
    delta = 0.0 if effect else -0.02
    groups = {sch: {"schedule": sch} for sch in ("step_decay", "cyclical", "trapezoid")}

    def values(g: str, u: float) -> dict[str, dict[int, float]]:
        acc = 0.9 + 0.05 * u + (0.0 if g == "step_decay" else delta) + 0.003 * rng.normal()
        return _final("test_acc", acc)

    return _groups(rng, groups, values, ["schedule.name"])


def _two(fn: Callable[[np.random.Generator, bool], FolderSweep]) -> tuple[Gen, Gen]:
    return (lambda r: fn(r, False)), (lambda r: fn(r, True))


#: rule id → (no effect, effect at the stated size).
CASES: dict[str, tuple[Gen, Gen]] = {
    "A.lambda_peak": _two(lambda_peak),
    "A.peak_lower": _two(peak_lower),
    "A.peak_earlier": _two(peak_earlier),
    "A.alignment": _two(alignment),
    "A.alpha_test": _two(alpha_test),
    "A.eigen_overshoot": _two(eigen_overshoot),
    "A.projected": _two(projected),
    "A.nsgd_sharper": _two(nsgd_sharper),
    "A.nsgd_flatter": _two(nsgd_flatter),
    "A.nsgd_control": _two(nsgd_control),
    "B.convex_inside": _two(convex_inside),
    "B.early_barriers": _two(early_barriers),
    "B.barriers_later": _two(barriers_later),
    "B.height_vs_lr": _two(height_vs_lr),
    "B.height_decreases": _two(height_decreases),
    "B.cos_vs_batch": _two(cos_vs_batch),
    "B.distance_vs_batch": _two(distance_vs_batch),
    "B.cos_vs_lr": _two(cos_vs_lr),
    "B.gd_cosine": _two(gd_cosine),
    "B.noisy_gd": _two(noisy_gd),
    "B.spectral_norm": _two(spectral_norm),
    "B.schedules": _two(schedules),
}
