"""The papers' plots, drawn from the store. One function per plot.

Each function takes a :class:`~sgdscope.store.Run` (or a sweep: anything with ``.runs``) and
returns a :class:`matplotlib.figure.Figure`, or ``None`` when the run lacks the data (the probe
was not configured). Tables come back as pandas DataFrames. Steps are updates: step t is the update
θ_t → θ_{t+1}; evaluations at θ_T are stored at step T.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import metrics as M
from ..store import Run
from ._data import (
    BATCH_KEY,
    LR_KEY,
    array_or_none,
    as_sweep,
    eigenvalues,
    grid_keys,
    is_gd,
    is_sweep,
    lambda1,
    lr_at,
    optim_name,
    run_label,
    scalar_names,
    schedule_name,
    series,
    sgd_runs,
    spectral_norm,
)
from .style import REFERENCE, TEXT_WIDTH, color, new_figure, save_figure, styled

STEP_LABEL = "step t (updates)"


def _runs(obj: Any) -> list[Run]:
    if isinstance(obj, Run):
        return [obj]
    if is_sweep(obj):
        return list(obj.runs)
    return list(obj)


#: Legends with more entries than this go under the panels (on the right they squeeze the plot).
LEGEND_RIGHT_MAX = 8


def _legend(ax: Axes, *, ncol: int = 1, fontsize: float | None = None) -> None:
    """The axes' legend outside it, on its right (under the figure when long): a legend never
    covers a curve."""
    handles = ax.get_legend_handles_labels()[0]
    if len(handles) > LEGEND_RIGHT_MAX:
        _figure_legend(ax.figure, [ax], fontsize=fontsize)
    elif handles:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            ncol=ncol,
            fontsize=fontsize,
        )


def _figure_legend(fig: Figure, axes: Sequence[Axes], *, fontsize: float | None = None) -> None:
    """One legend for several panels (each label once), outside them: on the right when short,
    under the panels when long."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if not entries:
        return
    if len(entries) <= LEGEND_RIGHT_MAX:
        fig.legend(entries.values(), entries.keys(), loc="outside right upper", fontsize=fontsize)
    else:
        ncol = min(3, len(entries))
        fig.legend(
            entries.values(),
            entries.keys(),
            loc="outside lower center",
            ncol=ncol,
            fontsize=fontsize,
        )


def _step_axis(ax: Axes) -> None:
    """The x axis counts updates: its label, and integer ticks only (no step 2.5)."""
    ax.set_xlabel(STEP_LABEL)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _positive_log(ax: Axes, values: np.ndarray) -> None:
    """Log y-axis when every finite value is > 0 and they span more than a factor of 20."""
    v = values[np.isfinite(values)]
    if len(v) and v.min() > 0 and v.max() / v.min() > 20:
        ax.set_yscale("log")


# --------------------------------------------------------------------------- one run
@styled
def training_curves(run: Run) -> Figure | None:
    """Loss and accuracy along training: mini-batch loss per step, evaluations per epoch."""
    batch = series(run, M.BATCH_LOSS)
    evals = {s: series(run, M.loss_key(s)) for s in ("train", "val", "test")}
    if batch is None and all(v is None for v in evals.values()):
        return None
    accs = {s: series(run, M.acc_key(s)) for s in ("train", "val", "test")}
    has_acc = any(v is not None for v in accs.values())
    fig, axes = new_figure(1, 2 if has_acc else 1, height=2.6)
    ax = axes[0]
    if batch is not None:
        ax.plot(batch.index, batch.to_numpy(), color="#999999", lw=0.6, label="mini-batch")
    for i, (split, s) in enumerate(evals.items()):
        if s is not None:
            ax.plot(s.index, s.to_numpy(), "o-", color=color(i), label=split)
    _step_axis(ax)
    ax.set_ylabel("loss (nats)")
    ax.set_title("loss")
    if has_acc:
        ax = axes[1]
        for i, (split, s) in enumerate(accs.items()):
            if s is not None:
                ax.plot(s.index, 100 * s.to_numpy(), "o-", color=color(i), label=split)
        _step_axis(ax)
        ax.set_ylabel("accuracy (%)")
        ax.set_title("accuracy")
    _figure_legend(fig, axes)  # one legend: a split has the same colour in both panels
    fig.suptitle(f"Training curves — {run.name}")
    return fig


@styled
def eigenvalue_evolution(run: Run, *, max_k: int = 10) -> Figure | None:
    """Top-k Hessian eigenvalues over training with the stability line 2/η (paper A, Fig. 1–2;
    with momentum β the line is 2(1 + β)/η) and ‖H‖₂ when measured."""
    ev = eigenvalues(run)
    if ev is None:
        return None
    steps, vals = ev
    vals = vals[:, :max_k]
    fig, (ax,) = new_figure(width=TEXT_WIDTH * 0.7, height=2.8)
    k = vals.shape[1]
    for i in range(k):
        ax.plot(
            steps,
            vals[:, i],
            "o-" if len(steps) < 30 else "-",
            color=color(i),
            ms=2.5,
            label=f"λ{_sub(i + 1)}",
        )
    norm = spectral_norm(run)
    if norm is not None:
        ax.plot(norm.index, norm.to_numpy(), ":", color="black", label="‖H‖₂")
    _threshold_line(ax, run, steps)
    finite = vals[np.isfinite(vals)]
    if len(finite) and finite.min() > 0:
        ax.set_yscale("log")
    _step_axis(ax)
    ax.set_ylabel("Hessian eigenvalue (loss / param²)")
    ax.set_title(f"Top-{k} eigenvalues of the Hessian — {run.name}")
    _legend(ax, ncol=2 if k > 4 else 1)
    return fig


@styled
def spectral_norm_curve(run: Run) -> Figure | None:
    """The Hessian's spectral norm ‖H‖₂ = max(|λ₁|, |λ_min|) along training (the stored
    ``spectral_norm``), above the validation accuracy (paper B, Fig. 3 and 6)."""
    norm = spectral_norm(run)
    if norm is None:
        return None
    acc = series(run, M.VAL_ACC)
    fig, axes = new_figure(
        2 if acc is not None else 1,
        1,
        width=TEXT_WIDTH * 0.7,
        height=3.6 if acc is not None else 2.6,
        sharex=True,
        height_ratios=[1.6, 1.0] if acc is not None else None,
    )
    axes[0].plot(
        norm.index, norm.to_numpy(), "o-" if len(norm) < 30 else "-", ms=2.5, color=color(0)
    )
    axes[0].set_ylabel("‖H‖₂ (loss / param²)")
    axes[0].set_title(f"Spectral norm of the Hessian — {run.name}")
    if acc is not None:
        axes[1].plot(acc.index, 100 * acc.to_numpy(), "o-", ms=2.5, color=color(1))
        axes[1].set_ylabel("val accuracy (%)")
    _step_axis(axes[-1])
    return fig


def _threshold_line(ax: Axes, run: Run, steps: np.ndarray) -> None:
    """The optimizer's stability threshold on λ(H): the stored ``stability_threshold`` (written
    by the sharpness probe for the optimizer used), else 2(1 + β)/η from the config; none for a
    preconditioned optimizer (Adam), whose threshold bounds another matrix's sharpness."""
    if optim_name(run) in PRECONDITIONED_OPTIMIZERS:
        return
    stored = series(run, M.STABILITY_THRESHOLD)
    beta = float(run.config.get("optim", {}).get("momentum", 0.0) or 0.0)
    label = "2/η" if beta == 0 else "2(1+β)/η"
    if stored is not None:
        ax.plot(stored.index, stored.to_numpy(), "--", color=REFERENCE, label=f"threshold {label}")
        return
    ax.plot(steps, 2 * (1 + beta) / lr_at(run, steps), "--", color=REFERENCE, label=label)


#: Optimizers whose stability threshold bounds the preconditioned sharpness, not λ₁(H).
PRECONDITIONED_OPTIMIZERS = ("adam", "adamw")


@styled
def edge_of_stability(run: Run) -> Figure | None:
    """Sharpness against the optimizer's stability threshold (ratio 1 = the edge): η λ₁/2 for
    SGD/GD, the preconditioned sharpness for Adam (Cohen et al. 2021, 2022), and batch sharpness
    η·BS/2 (Andreyev & Beneventano 2024) when measured."""
    adaptive = optim_name(run) in PRECONDITIONED_OPTIMIZERS
    curves = [
        (series(run, M.STABILITY), "λ₁(P⁻¹ᐟ²HP⁻¹ᐟ²)" if adaptive else "λ₁"),
        (series(run, M.BATCH_SHARPNESS_STABILITY), "batch sharpness"),
    ]
    curves = [(c, lab) for c, lab in curves if c is not None and np.isfinite(c.to_numpy()).any()]
    if not curves:
        return None
    fig, (ax,) = new_figure(width=TEXT_WIDTH * 0.7, height=2.6)
    for i, (c, lab) in enumerate(curves):
        style = "o-" if len(c) < 60 else "-"
        ax.plot(c.index, c.to_numpy(), style, ms=2.5, color=color(i), label=f"{lab} / threshold")
    ax.axhline(1.0, ls="--", color=REFERENCE, label="edge of stability")
    _step_axis(ax)
    ax.set_ylabel("sharpness / stability threshold")
    ax.set_title(f"Edge of stability — {run.name}")
    _legend(ax)
    return fig


def _sub(i: int) -> str:
    return str(i).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


@styled
def layer_sharpness(run: Run) -> Figure | None:
    """λ₁ of each parameter group's diagonal Hessian block over training (``lambda_1/<group>``,
    the sharpness probe with ``per_layer``), with the whole network's λ₁ for reference."""
    names = sorted(n for n in scalar_names(run) if M.parse_layer_lambda(n) is not None)
    if not names:
        return None
    fig, (ax,) = new_figure(width=TEXT_WIDTH * 0.7, height=2.8)
    allv = []
    whole = series(run, M.lambda_key(1))
    if whole is not None:
        ax.plot(whole.index, whole.to_numpy(), "--", color=REFERENCE, label="whole network")
        allv.append(whole.to_numpy())
    for i, n in enumerate(names):
        s = series(run, n)
        if s is not None:
            ax.plot(
                s.index,
                s.to_numpy(),
                marker="o" if len(s) < 30 else "",
                ms=2.5,
                ls=("-", "--", ":")[(i // 8) % 3],
                color=color(i),
                label=_layer_label(str(M.parse_layer_lambda(n))),
            )
            allv.append(s.to_numpy())
    if not allv:
        return None
    _positive_log(ax, np.concatenate(allv))
    _step_axis(ax)
    ax.set_ylabel("λ₁ of the layer's block (loss / param²)")
    ax.set_title(f"Sharpness per layer — {run.name}")
    _legend(ax, fontsize=6.5, ncol=2 if len(names) > 5 else 1)
    return fig


def _layer_label(group: str) -> str:
    # nn.Sequential names its children by index: "3" reads better as "layer 3".
    return f"layer {group}" if group.split(".")[-1].isdigit() else group


def _density_arrays(run: Run) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    grid = array_or_none(run, M.DENSITY_GRID)
    dens = array_or_none(run, M.DENSITY)
    if grid is None or dens is None:
        return None
    return grid[0], grid[1], dens[1]


@styled
def spectral_density(run: Run, *, max_curves: int = 4) -> Figure | None:
    """The Hessian's spectral density (stochastic Lanczos quadrature) at a few steps."""
    arrs = _density_arrays(run)
    if arrs is None:
        return None
    steps, grids, dens = arrs
    idx = _spread(len(steps), max_curves)
    fig, (ax,) = new_figure(width=TEXT_WIDTH * 0.7, height=2.8)
    for j, i in enumerate(idx):
        d = np.asarray(dens[i], dtype=float)
        ax.plot(
            np.asarray(grids[i], dtype=float),
            np.maximum(d, 1e-12),
            color=color(j),
            label=f"t = {steps[i]}",
        )
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(1e-8, ax.get_ylim()[0]))
    ax.set_xlabel("eigenvalue λ (loss / param²)")
    ax.set_ylabel("density φ(λ)")
    ax.set_title(f"Hessian spectral density — {run.name}")
    _legend(ax)
    return fig


def _spread(n: int, m: int) -> list[int]:
    """At most m indices of range(n), evenly spread, first and last included."""
    if n <= m:
        return list(range(n))
    return sorted({round(x) for x in np.linspace(0, n - 1, m)})


@styled
def alignment(run: Run, *, max_k: int = 5) -> Figure | None:
    """|cos(g_t, e_i)| over training for the top eigenvectors, against a random direction
    (paper A, Fig. 5)."""
    index = {n: i for n in scalar_names(run) if (i := M.parse_alignment(n)) is not None}
    names = sorted(index, key=index.__getitem__)[:max_k]
    if not names:
        return None
    fig, (ax,) = new_figure(width=TEXT_WIDTH * 0.7, height=2.8)
    allv = []
    for i, n in enumerate(names):
        s = series(run, n)
        if s is not None:
            fmt = "o-" if len(s) < 30 else "-"
            ax.plot(s.index, s.to_numpy(), fmt, color=color(i), label=f"e{_sub(i + 1)}")
            allv.append(s.to_numpy())
    rnd = series(run, M.ALIGNMENT_RANDOM)
    if rnd is not None:
        ax.plot(rnd.index, rnd.to_numpy(), "--", color=REFERENCE, label="random direction")
        allv.append(rnd.to_numpy())
    vals = np.concatenate(allv) if allv else np.array([1.0])
    if np.all(vals[np.isfinite(vals)] > 0):
        ax.set_yscale("log")
    _step_axis(ax)
    ax.set_ylabel("|cos(gₜ, eᵢ)|")
    ax.set_title(f"Gradient alignment with the top eigenvectors — {run.name}")
    _legend(ax, ncol=2)
    return fig


@styled
def eigen_loss(run: Run, *, direction: int = 1, max_curves: int = 6) -> Figure | None:
    """Probe-set loss along the top eigenvector around θ_t, L(θ_t + c·u₁(t)) − L(θ_t), for
    several steps t; c = 1 is where SGD's step lands in that direction (paper A)."""
    arr = array_or_none(run, M.eigen_loss_key(direction))
    grid = array_or_none(run, M.EIGEN_LOSS_GRID)
    if arr is None or grid is None or arr[1].dtype == object or grid[1].dtype == object:
        return None
    steps, losses = arr
    _, grids = grid
    idx = _spread(len(steps), max_curves)
    fig, (ax,) = new_figure(width=TEXT_WIDTH * 0.7, height=2.8)
    cmap = matplotlib.colormaps["viridis"]
    c = np.asarray(grids[0], dtype=float)
    # Relative to c = 0 (θ_t itself) when the grid has it, so the curves of different steps,
    # whose losses differ by far more than the bowl's depth, share one scale.
    zero = np.flatnonzero(c == 0)
    relative = len(zero) == 1
    for j, i in enumerate(idx):
        y = np.asarray(losses[i], dtype=float)
        if relative:
            y = y - y[zero[0]]
        shade = cmap(0.9 * j / max(1, len(idx) - 1))
        ax.plot(
            np.asarray(grids[i], dtype=float), y, "o-", ms=2.5, color=shade, label=f"t = {steps[i]}"
        )
    ax.axvline(0, color=REFERENCE, lw=0.8, ls=":")
    ax.axvline(1, color=REFERENCE, lw=0.8, ls="--", label="c = 1 (SGD step)")
    if np.nanmax(np.abs(c)) > 4:
        ax.set_xscale("symlog", linthresh=1.0, linscale=0.6)
        nice = [v for v in c if v == 0 or abs(v) in (1, 4, 16) or abs(v) == np.abs(c).max()]
        ax.set_xticks(nice, [f"{v:g}" for v in nice])
        ax.minorticks_off()
    sub = _sub(direction)
    ax.set_xlabel(f"c (multiples of the SGD step along e{sub})")
    ax.set_ylabel(
        f"L(θₜ + c·u{sub}) − L(θₜ) (nats)" if relative else f"probe loss L(θₜ + c·u{sub}) (nats)"
    )
    ax.set_title(f"Loss along the top eigenvector — {run.name}")
    _legend(ax, fontsize=6.5)
    return fig


def alpha_test_table(run: Run) -> pd.DataFrame | None:
    """ΔL(α) averaged over the measurements: rows (direction, α) with mean, sem, count."""
    rows = []
    for name in scalar_names(run):
        parsed = M.parse_alpha_test(name)
        if parsed is None or parsed[0].startswith("e"):  # per-direction rows: not in this table
            continue
        s = series(run, name)
        if s is None:
            continue
        v = s.to_numpy()
        sem = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
        rows.append(
            {
                "direction": parsed[0],
                "alpha": parsed[1],
                "mean": float(v.mean()),
                "sem": sem,
                "count": len(v),
            }
        )
    if not rows:
        return None
    return pd.DataFrame(rows).sort_values(["direction", "alpha"]).reset_index(drop=True)


@styled
def alpha_test(run: Run, *, alphas: Sequence[float] = (0.5, 1.0, 2.0)) -> Figure | None:
    """α-test bars: ΔL(α) = L(θ_t + α·u_k) − L(θ_t), mean ± s.e.m. over steps, for the top-1 and
    top-5 subspaces and a random direction (paper A)."""
    table = alpha_test_table(run)
    if table is None:
        return None
    if set(alphas) & set(table.alpha):
        table = table[table.alpha.isin(alphas)]
    dirs = sorted(table.direction.unique(), key=lambda d: (d == "random", len(d), d))
    avals = sorted(table.alpha.unique())
    fig, (ax,) = new_figure(width=TEXT_WIDTH * 0.6, height=2.8)
    width = 0.8 / len(dirs)
    x = np.arange(len(avals))
    for j, d in enumerate(dirs):
        sub = table[table.direction == d].set_index("alpha").reindex(avals)
        label = "random direction" if d == "random" else f"top-{d[1:]} subspace (k={d[1:]})"
        ax.bar(
            x + (j - (len(dirs) - 1) / 2) * width,
            sub["mean"],
            width,
            yerr=sub["sem"],
            color=REFERENCE if d == "random" else color(j),
            label=label,
            capsize=2,
        )
    ax.axhline(0, color="black", lw=0.7)
    ax.set_xticks(x, [f"α = {a:g}" for a in avals])
    ax.set_ylabel("ΔL(α) (nats)")
    ax.set_title(f"α-test: loss change for α × the SGD step — {run.name}")
    _legend(ax)
    return fig


@styled
def walk(run: Run, *, max_segments: int = 40, start: int = 0) -> Figure | None:
    """Paper B's walk: the loss interpolated between consecutive iterates, segment after segment,
    valley floors joined by a dashed line; below, cos(g_t, g_{t+1}) and ‖θ − θ₀‖ at the iterates.

    The x axis is the position along the selected measurements: x = i + α is θ_{t_i}(α), so the
    junction x = i + 1 is θ_{t_i + 1} when the measured steps are consecutive; tick labels give
    the steps.
    """
    arr = array_or_none(run, M.INTERP_LOSS)
    if arr is None or arr[1].dtype == object:
        return None
    steps, curves = arr
    sel = slice(start, start + max_segments)
    steps, curves = steps[sel], np.asarray(curves[sel], dtype=float)
    if len(steps) == 0:
        return None
    k = curves.shape[1]
    alphas = np.linspace(0.0, 1.0, k)
    cos = series(run, M.GRAD_COSINE)
    dist = series(run, M.DISTANCE)
    panels = 1 + (cos is not None) + (dist is not None)
    fig, axes = new_figure(
        panels,
        1,
        width=TEXT_WIDTH,
        height=2.2 + 1.2 * (panels - 1),
        sharex=True,
        height_ratios=[2.0] + [1.0] * (panels - 1),
    )
    ax = axes[0]
    floor_x, floor_y = [], []
    floors = series(run, M.VALLEY_FLOOR)
    astars = series(run, M.ALPHA_STAR)
    for i, (t, y) in enumerate(zip(steps, curves, strict=True)):
        ax.plot(
            i + alphas,
            y,
            "-",
            color=color(0),
            lw=1.0,
            label="interpolated loss" if i == 0 else None,
        )
        if floors is not None and astars is not None and t in floors.index and t in astars.index:
            floor_x.append(i + float(astars[t]))
            floor_y.append(float(floors[t]))
        elif np.all(np.isfinite(y)):
            j = int(np.argmin(y))
            floor_x.append(i + alphas[j])
            floor_y.append(float(y[j]))
    ax.plot(floor_x, floor_y, "--", color=color(1), lw=1.0, marker=".", label="valley floor")
    ax.set_ylabel("train loss (nats)")
    ax.set_title(f"Walk between consecutive iterates — {run.name}")
    _legend(ax)
    # Segment i starts at θ_{t_i} (x = i); the last one ends at θ_{t_last + 1}. With consecutive
    # steps the junctions are exactly the iterates; with sparse ones each value sits at the
    # start of its step's segment, under its tick label.
    pos = {int(t): float(i) for i, t in enumerate(steps)}
    pos.setdefault(int(steps[-1]) + 1, float(len(steps)))
    row = 1
    for s, label in ((cos, "cos(gₜ₋₁, gₜ)"), (dist, "‖θₜ − θ₀‖")):
        if s is None:
            continue
        pts = [(pos[int(t)], float(v)) for t, v in s.items() if int(t) in pos]
        a = axes[row]
        if pts:
            xs, ys = zip(*sorted(pts), strict=True)
            a.plot(xs, ys, "o-", ms=2.5, color=color(row + 1))
        if s is cos:
            a.axhline(0, color=REFERENCE, lw=0.7)
        a.set_ylabel(label)
        row += 1
    ticks = _spread(len(steps), 8)
    axes[-1].set_xticks([float(i) for i in ticks], [str(int(steps[i])) for i in ticks])
    axes[-1].set_xlabel("iterate θₜ (step t); each unit is one update, α from 0 to 1")
    return fig


@styled
def noise_curvature(run: Run) -> Figure | None:
    """Overlap of the top-k eigenspaces of the gradient-noise covariance C and the Hessian H,
    and tr(C) / tr(H), over training (paper B §4; beyond both papers)."""
    overlap = series(run, M.NOISE_OVERLAP)
    ratio = series(run, M.NOISE_TRACE_RATIO)
    if overlap is None and ratio is None:
        return None
    panels = [
        (s, lab)
        for s, lab in ((overlap, "eigenspace overlap (0–1)"), (ratio, "tr(C) / tr(H)"))
        if s is not None
    ]
    fig, axes = new_figure(1, len(panels), width=TEXT_WIDTH * (0.5 * len(panels) + 0.2), height=2.6)
    for i, (ax, (s, lab)) in enumerate(zip(axes, panels, strict=True)):
        ax.plot(s.index, s.to_numpy(), "o-" if len(s) < 30 else "-", color=color(i))
        _step_axis(ax)
        ax.set_ylabel(lab)
    fig.suptitle(f"Gradient noise against curvature — {run.name}")
    return fig


def _epoch_frame(run: Run, names: list[str]) -> pd.DataFrame | None:
    df = run.scalars[run.scalars.name.isin(names)]
    if df.empty:
        return None
    w = df.pivot_table(index="epoch", columns="name", values="value", aggfunc="last")
    return w.reset_index()


def height_table(run: Run) -> pd.DataFrame | None:
    """Paper B, Table 2: height above the valley floor per epoch (mean ± std over its steps)."""
    w = _epoch_frame(run, [M.EPOCH_HEIGHT_MEAN, M.EPOCH_HEIGHT_STD, M.EPOCH_WALK_STEPS])
    if w is not None and M.EPOCH_HEIGHT_MEAN in w:
        out = pd.DataFrame(
            {
                "epoch": w.epoch.astype(int) + 1,
                "height mean": w[M.EPOCH_HEIGHT_MEAN],
                "height std": w.get(M.EPOCH_HEIGHT_STD, np.nan),
                "walk steps": w.get(M.EPOCH_WALK_STEPS, np.nan),
            }
        )
        return out.reset_index(drop=True)
    df = run.scalars[run.scalars.name == M.HEIGHT]
    if df.empty:
        return None
    g = df.groupby("epoch").value
    return pd.DataFrame(
        {
            "epoch": g.mean().index.astype(int) + 1,
            "height mean": g.mean().to_numpy(),
            "height std": g.std(ddof=0).to_numpy(),
            "walk steps": g.count().to_numpy(),
        }
    )


def barrier_table(run: Run) -> pd.DataFrame | None:
    """Paper B, Table 1: barriers crossed per epoch (and the share of curves with an interior
    minimum)."""
    w = _epoch_frame(run, [M.EPOCH_BARRIERS, M.EPOCH_WALK_STEPS, M.EPOCH_MIN_INSIDE_FRAC])
    if w is not None and M.EPOCH_BARRIERS in w:
        steps = w.get(M.EPOCH_WALK_STEPS, np.nan)
        return pd.DataFrame(
            {
                "epoch": w.epoch.astype(int) + 1,
                "barriers": w[M.EPOCH_BARRIERS].astype(int),
                "walk steps": steps,
                "barrier share": w[M.EPOCH_BARRIERS] / steps,
                "min inside share": w.get(M.EPOCH_MIN_INSIDE_FRAC, np.nan),
            }
        ).reset_index(drop=True)
    b = run.scalars[run.scalars.name == M.BARRIER]
    if b.empty:
        return None
    g = b.groupby("epoch").value
    inside = run.scalars[run.scalars.name == M.MINIMUM_INSIDE].groupby("epoch").value.mean()
    return pd.DataFrame(
        {
            "epoch": g.sum().index.astype(int) + 1,
            "barriers": g.sum().astype(int).to_numpy(),
            "walk steps": g.count().to_numpy(),
            "barrier share": (g.sum() / g.count()).to_numpy(),
            "min inside share": inside.reindex(g.sum().index).to_numpy(),
        }
    )


# --------------------------------------------------------------------------- across runs
def _x_positions(
    values: pd.Series, reference: pd.Series | None = None
) -> tuple[np.ndarray, dict[float, str]]:
    """Numbers on a log axis; full batch (inf) placed at 2× the largest finite value of
    ``reference`` (the whole panel's x values, so every group puts "full" at the same place)."""
    v = values.astype(float).to_numpy()
    ref = (reference if reference is not None else values).astype(float).to_numpy()
    finite = ref[np.isfinite(ref)]
    top = 2 * finite.max() if len(finite) else 1.0
    pos = np.where(np.isinf(v), top, v)
    labels = {
        float(p): ("full" if math.isinf(o) else f"{o:g}") for p, o in zip(pos, v, strict=True)
    }
    return pos, labels


def _vs_panel(
    ax: Axes, frame: pd.DataFrame, x: str, y: str, group: str | None, xlabel: str, ylabel: str
) -> bool:
    df = frame[np.isfinite(frame[y].astype(float))]
    if df.empty or df[x].nunique() < 2:
        ax.set_visible(False)
        return False
    groups = [(None, df)] if group is None or df[group].nunique() < 2 else list(df.groupby(group))
    ticks: dict[float, str] = {}
    for j, (gval, g) in enumerate(groups):
        stats = g.groupby(x)[y].agg(["mean", "std", "count"]).reset_index()
        pos, labels = _x_positions(stats[x], df[x])
        ticks.update(labels)
        order = np.argsort(pos)
        err = stats["std"].fillna(0.0).to_numpy()[order]
        glabel = None if gval is None else f"{_short_key(group)} = {_fmt(gval)}"
        ax.errorbar(
            pos[order],
            stats["mean"].to_numpy()[order],
            yerr=err,
            fmt="o-",
            color=color(j),
            capsize=2,
            label=glabel,
        )
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks), [ticks[t] for t in sorted(ticks)])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return True


def _short_key(key: str | None) -> str:
    return {LR_KEY: "η", BATCH_KEY: "S"}.get(key or "", (key or "").rsplit(".", 1)[-1])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "full" if math.isinf(v) else f"{v:g}"
    return str(v)


def _sweep_grid(sweep: Any, ys: list[tuple[str, str]], title: str) -> Figure | None:
    frame = sgd_runs(sweep).frame
    if frame.empty:
        return None
    ys = [(y, lab) for y, lab in ys if y in frame and np.isfinite(frame[y].astype(float)).any()]
    xs = [
        (x, lab, g)
        for x, lab, g in (
            (LR_KEY, "learning rate η", BATCH_KEY),
            (BATCH_KEY, "batch size S", LR_KEY),
        )
        if frame[x].nunique() > 1
    ]
    if not ys or not xs:
        return None
    fig, axes = new_figure(
        len(ys),
        len(xs),
        width=TEXT_WIDTH if len(xs) > 1 else TEXT_WIDTH * 0.6,
        height=2.3 * len(ys),
    )
    drawn = False
    for r, (y, ylab) in enumerate(ys):
        for c, (x, xlab, g) in enumerate(xs):
            drawn |= _vs_panel(axes[r * len(xs) + c], frame, x, y, g, xlab, ylab)
    if not drawn:
        return None
    _figure_legend(fig, [a for a in axes if a.get_visible()], fontsize=6.5)
    fig.suptitle(title)
    return fig


@styled
def peak_lambda(sweep: Any) -> Figure | None:
    """Peak λ₁ against η and against S across a sweep (paper A, Fig. 4); seeds as error bars."""
    return _sweep_grid(
        sweep, [("peak_lambda_1", "peak λ₁ (loss / param²)")], "Peak sharpness across the sweep"
    )


@styled
def walk_vs_hparams(sweep: Any) -> Figure | None:
    """Mean cos(g_t, g_{t+1}), final ‖θ − θ₀‖ and mean height above the valley floor against η
    and S (paper B, Fig. 4)."""
    return _sweep_grid(
        sweep,
        [
            ("mean_grad_cosine", "mean cos(gₜ, gₜ₊₁)"),
            ("final_distance", "final ‖θ − θ₀‖"),
            ("mean_height", "mean height (nats)"),
        ],
        "The walk against learning rate and batch size",
    )


#: A panel of :func:`_curves`: the metric (a scalar's name, or a function of the run giving its
#: series by step), the y label, and a factor applied to the values (100 for percentages).
Panel = tuple[str | Callable[[Run], pd.Series | None], str, float]


def _panel_series(run: Run, metric: str | Callable[[Run], pd.Series | None]) -> pd.Series | None:
    return series(run, metric) if isinstance(metric, str) else metric(run)


def _curves(runs: list[Run], labels: list[str], panels: list[Panel], title: str) -> Figure | None:
    present = [p for p in panels if any(_panel_series(r, p[0]) is not None for r in runs)]
    if not present:
        return None
    ncols = 2 if len(present) > 1 else 1
    nrows = math.ceil(len(present) / ncols)
    extra = 0.0 if len(runs) <= 8 else 0.18 * math.ceil(len(runs) / 3)  # room for the legend
    fig, axes = new_figure(nrows, ncols, width=TEXT_WIDTH, height=2.3 * nrows + extra)
    for ax, (name, ylabel, scale) in zip(axes, present, strict=False):
        for i, (r, lab) in enumerate(zip(runs, labels, strict=True)):
            s = _panel_series(r, name)
            if s is not None:
                marker = "o" if len(s) < 30 else ""
                # Past the palette's 8 colours, dashes and dots keep runs apart.
                ls = ("-", "--", ":")[(i // 8) % 3]
                ax.plot(
                    s.index,
                    scale * s.to_numpy(),
                    marker=marker,
                    ls=ls,
                    ms=2.5,
                    lw=1.0,
                    color=color(i),
                    label=lab,
                )
        _step_axis(ax)
        ax.set_ylabel(ylabel)
    for ax in axes[len(present) :]:
        ax.set_visible(False)
    _figure_legend(fig, axes[: len(present)], fontsize=6.5)
    fig.suptitle(title)
    return fig


def _labels(runs: list[Run], keys: list[str]) -> list[str]:
    """Short labels: the grid values when few, else the run names (a sweep names its runs by
    their grid point)."""
    labels = [run_label(r, keys) for r in runs]
    if len(set(labels)) == len(labels) and max(map(len, labels), default=0) <= 40:
        return labels
    return [r.name for r in runs]


@styled
def lambda_runs(sweep: Any) -> Figure | None:
    """λ₁ over training for each SGD run of a sweep (paper A, Fig. 1): the same runs as the
    peak-λ₁ figure and its finding."""
    curves = [(r, lambda1(r)) for r in sgd_runs(sweep).runs]
    curves = [(r, c) for r, c in curves if c is not None]
    if len(curves) < 2:
        return None
    keys = grid_keys(as_sweep(sweep))
    labels = _labels([r for r, _ in curves], keys)
    fig, (ax,) = new_figure(width=TEXT_WIDTH * 0.75, height=3.0)
    allv = []
    for i, ((_, c), lab) in enumerate(zip(curves, labels, strict=True)):
        ax.plot(
            c.index,
            c.to_numpy(),
            marker="o" if len(c) < 30 else "",
            ms=2.5,
            lw=1.0,
            ls=("-", "--", ":")[(i // 8) % 3],
            color=color(i),
            label=lab,
        )
        allv.append(c.to_numpy())
    _positive_log(ax, np.concatenate(allv))
    _step_axis(ax)
    ax.set_ylabel("λ₁ (loss / param²)")
    ax.set_title("Top Hessian eigenvalue along training, per run")
    _legend(ax, fontsize=6.5, ncol=2 if len(curves) > 6 else 1)
    return fig


@styled
def spectral_norm_runs(sweep: Any) -> Figure | None:
    """‖H‖₂ = max(|λ₁|, |λ_min|) (the stored ``spectral_norm``) and the validation accuracy
    along training, one curve per run (paper B, Fig. 3 and 6)."""
    runs = [r for r in _runs(sweep) if spectral_norm(r) is not None]
    if len(runs) < 2:
        return None
    labels = _labels(runs, grid_keys(as_sweep(sweep)))
    return _curves(
        runs,
        labels,
        [
            (spectral_norm, "‖H‖₂ (loss / param²)", 1.0),
            (M.VAL_ACC, "val accuracy (%)", 100.0),
        ],
        "Spectral norm of the Hessian along training, per run",
    )


@styled
def gd_vs_noisy(sweep_or_runs: Any) -> Figure | None:
    """GD against GD + isotropic noise (paper B, Fig. 5): train loss, val accuracy, ‖θ‖ and
    cos(g_t, g_{t+1}). Needs at least one GD run and one ``noisy_gd`` run."""
    runs = _runs(sweep_or_runs)
    gd = [r for r in runs if is_gd(r)]
    noisy = [r for r in runs if optim_name(r) == "noisy_gd"]
    if not gd or not noisy:
        return None
    chosen = gd + noisy
    labels = [("GD" if is_gd(r) else "GD + noise") + f" ({r.name})" for r in chosen]
    return _curves(
        chosen,
        labels,
        [
            (M.TRAIN_LOSS, "train loss (nats)", 1.0),
            (M.VAL_ACC, "val accuracy (%)", 100.0),
            (M.PARAM_NORM, "‖θₜ‖", 1.0),
            (M.GRAD_COSINE, "cos(gₜ₋₁, gₜ)", 1.0),
        ],
        "GD vs GD + isotropic noise",
    )


@styled
def schedule_comparison(sweep_or_runs: Any) -> Figure | None:
    """Learning-rate schedules compared (paper B): η_t and val accuracy per run. Needs runs with
    at least two different schedules."""
    runs = _runs(sweep_or_runs)
    names = {schedule_name(r) for r in runs}
    if len(names) < 2:
        return None
    labels = [f"{schedule_name(r)} ({r.name})" for r in runs]
    return _curves(
        runs,
        labels,
        [
            (M.LR, "learning rate η_t", 1.0),
            (M.VAL_ACC, "val accuracy (%)", 100.0),
        ],
        "Learning-rate schedules",
    )


@styled
def runs_overview(sweep: Any) -> Figure | None:
    """Train loss and val accuracy of every run of a sweep."""
    runs = _runs(sweep)
    if len(runs) < 2:
        return None
    labels = _labels(runs, grid_keys(as_sweep(sweep)))
    return _curves(
        runs,
        labels,
        [
            (M.TRAIN_LOSS, "train loss (nats)", 1.0),
            (M.VAL_ACC, "val accuracy (%)", 100.0),
        ],
        "All runs",
    )


#: Figures of one run, by file name, in report order.
RUN_FIGURES: dict[str, Callable[[Run], Figure | None]] = {
    "training": training_curves,
    "eigenvalues": eigenvalue_evolution,
    "spectral_norm": spectral_norm_curve,
    "edge_of_stability": edge_of_stability,
    "layer_sharpness": layer_sharpness,
    "spectral_density": spectral_density,
    "alignment": alignment,
    "eigen_loss": eigen_loss,
    "alpha_test": alpha_test,
    "walk": walk,
    "noise_curvature": noise_curvature,
}

#: Figures across the runs of a sweep, by file name, in report order.
SWEEP_FIGURES: dict[str, Callable[[Any], Figure | None]] = {
    "runs": runs_overview,
    "lambda_runs": lambda_runs,
    "spectral_norm_runs": spectral_norm_runs,
    "peak_lambda": peak_lambda,
    "walk_vs_hparams": walk_vs_hparams,
    "gd_vs_noisy": gd_vs_noisy,
    "schedules": schedule_comparison,
}

#: Tables of one run, by title.
RUN_TABLES: dict[str, Callable[[Run], pd.DataFrame | None]] = {
    "Height above the valley floor per epoch (paper B, Table 2)": height_table,
    "Barriers crossed per epoch (paper B, Table 1)": barrier_table,
    "α-test: ΔL(α) averaged over steps (paper A)": alpha_test_table,
}

__all__ = [
    "RUN_FIGURES",
    "RUN_TABLES",
    "SWEEP_FIGURES",
    "alignment",
    "alpha_test",
    "alpha_test_table",
    "barrier_table",
    "eigen_loss",
    "edge_of_stability",
    "eigenvalue_evolution",
    "gd_vs_noisy",
    "height_table",
    "lambda_runs",
    "layer_sharpness",
    "noise_curvature",
    "peak_lambda",
    "runs_overview",
    "save_figure",
    "schedule_comparison",
    "spectral_density",
    "spectral_norm_curve",
    "spectral_norm_runs",
    "training_curves",
    "walk",
    "walk_vs_hparams",
]
