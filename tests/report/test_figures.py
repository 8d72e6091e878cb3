"""Every figure is drawn from the data it needs, returns None without it, and saves non-blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from sgdscope.probes import list_probes
from sgdscope.report import (
    RUN_FIGURES,
    SWEEP_FIGURES,
    barrier_table,
    eigenvalue_evolution,
    height_table,
    noise_curvature,
    save_figure,
    spectral_density,
)
from sgdscope.report._data import open_target
from sgdscope.report.figures import STEP_LABEL
from sgdscope.store import load_run

from .conftest import scalar_rows, write_run


def expected_run_figures() -> set[str]:
    """The figures the tiny run's probes feed (eigenvalues only once the sharpness probe exists)."""
    names = {"training", "walk", "alignment", "eigen_loss", "alpha_test"}
    if "sharpness" in list_probes():
        names |= {"eigenvalues", "layer_sharpness"}
    return names


def assert_drawn(fig: Figure) -> None:
    """Render on the Agg canvas (cheaper than saving) and check it is not one colour."""
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    assert (pixels != pixels[0, 0]).any()


def assert_not_blank(png: Path) -> None:
    with Image.open(png) as im:
        im.load()
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100, png
    assert (pixels != pixels[0, 0]).any(), f"{png} is one colour"


def test_run_figures_from_a_real_run(tiny_run: Path) -> None:
    # Drawing only: the saved files of the same figures are checked by the report test.
    run = load_run(tiny_run)
    drawn = set()
    for name, fn in RUN_FIGURES.items():
        fig = fn(run)
        assert fig is None or isinstance(fig, Figure), name
        if fig is not None:
            assert fig.axes and all(ax.has_data() for ax in fig.axes if ax.get_visible()), name
            drawn.add(name)
    missing = expected_run_figures() - drawn
    assert not missing, f"figures not drawn: {missing}"


def test_save_figure_writes_png_and_svg(tiny_run: Path, tmp_path: Path) -> None:
    fig = RUN_FIGURES["training"](load_run(tiny_run))
    assert fig is not None
    paths = save_figure(fig, tmp_path / "sub", "training")
    assert paths["svg"].read_text().lstrip().startswith("<?xml")
    assert_not_blank(paths["png"])


def test_tables_from_a_real_run(tiny_run: Path) -> None:
    run = load_run(tiny_run)
    h = height_table(run)
    b = barrier_table(run)
    assert h is not None and list(h.epoch) == [1, 2]
    assert (h["height mean"] >= 0).all() and (h["walk steps"] == 8).all()
    assert b is not None and list(b.epoch) == [1, 2] and (b["walk steps"] == 8).all()


def test_tables_from_per_step_scalars(tmp_path: Path) -> None:
    vals = {
        "height": {t: 0.1 * (t % 3) for t in range(20)},
        "barrier": {t: float(t == 15) for t in range(20)},
        "minimum_inside": {t: 1.0 for t in range(20)},
    }
    run = load_run(write_run(tmp_path / "r", scalar_rows(vals)))
    h, b = height_table(run), barrier_table(run)
    assert h is not None and list(h["walk steps"]) == [10, 10]
    assert b is not None and list(b.barriers) == [0, 1]


def test_eigenvalues_and_density_from_arrays(tmp_path: Path) -> None:
    grid = np.linspace(-1, 20, 50)
    rows = []
    for t in range(0, 50, 10):
        top = 1.0 + t / 5
        dens = np.exp(-((grid - top) ** 2)) + 1e-3
        arrays = {
            "eigenvalues": np.array([top, top / 2, top / 4]),
            "density_grid": grid,
            "density": dens / dens.sum(),
        }
        rows.append((t, t // 10, {"lr": 0.1}, arrays))
    run = load_run(write_run(tmp_path / "r", rows))
    for fn in (eigenvalue_evolution, spectral_density):
        fig = fn(run)
        assert isinstance(fig, Figure)
        assert_drawn(fig)
    # The 2/η line is drawn at 2 / 0.1 = 20.
    ax = eigenvalue_evolution(run).axes[0]
    ref = [ln for ln in ax.get_lines() if ln.get_label() == "2/η"]
    assert ref and np.allclose(ref[0].get_ydata(), 20.0)


def test_noise_curvature_figure(tmp_path: Path) -> None:
    vals = {
        "noise_overlap": {t: 0.5 + 0.01 * t for t in range(0, 40, 10)},
        "noise_trace_ratio": {t: 1.0 for t in range(0, 40, 10)},
    }
    fig = noise_curvature(load_run(write_run(tmp_path / "r", scalar_rows(vals))))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert_drawn(fig)


def test_figures_none_without_data(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "bare", scalar_rows({"grad_norm": {0: 1.0}})))
    for name, fn in RUN_FIGURES.items():
        assert fn(run) is None, name
    assert height_table(run) is None and barrier_table(run) is None
    for name, fn in SWEEP_FIGURES.items():
        assert fn([run]) is None, name


#: Sweep figures whose data the synthetic sweep lacks (tested on their own runs below).
_NOT_IN_GOOD_SWEEP = {"spectral_norm_runs"}


@pytest.mark.parametrize("name", sorted(set(SWEEP_FIGURES) - _NOT_IN_GOOD_SWEEP))
def test_sweep_figures(good_sweep: Path, name: str) -> None:
    sweep = open_target(good_sweep)
    fig = SWEEP_FIGURES[name](sweep)
    assert isinstance(fig, Figure), name
    assert all(ax.has_data() for ax in fig.axes if ax.get_visible()), name


# --------------------------------------------------------------------------- layout
def _all_figures(tiny_run: Path, good_sweep: Path) -> list[tuple[str, Figure]]:
    run, sweep = load_run(tiny_run), open_target(good_sweep)
    figs = [(n, fn(run)) for n, fn in RUN_FIGURES.items()]
    figs += [(f"sweep_{n}", fn(sweep)) for n, fn in SWEEP_FIGURES.items()]
    return [(n, f) for n, f in figs if f is not None]


def test_legends_cover_no_axes_and_step_ticks_are_integers(
    tiny_run: Path, good_sweep: Path
) -> None:
    """Every legend (of an axes or of the figure) lies outside every visible plot area, and a
    step axis shows whole steps only."""
    checked_steps = 0
    for name, fig in _all_figures(tiny_run, good_sweep):
        fig.canvas.draw()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        for leg in legends:
            box = leg.get_window_extent()
            for ax in fig.axes:
                if ax.get_visible():
                    area = ax.get_window_extent()
                    assert not box.overlaps(area), f"{name}: a legend covers a plot"
        for ax in fig.axes:
            if ax.get_visible() and ax.get_xlabel() == STEP_LABEL:
                lo, hi = sorted(ax.get_xlim())
                ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
                assert ticks and all(float(t).is_integer() for t in ticks), (name, ticks)
                checked_steps += 1
    assert checked_steps >= 8  # the check ran on the step axes, not on none


def _norm_run(path: Path, scale: float) -> Path:
    """λ₁ > 0 and a larger |λ_min|; the stored spectral_norm differs from both on purpose (it
    is what the probe measured, and what the figure must show)."""
    vals = {
        "lambda_1": {t: scale * (1.0 + 0.1 * t) for t in range(0, 50, 10)},
        "lambda_min": {t: -scale * (3.0 + 0.1 * t) for t in range(0, 50, 10)},
        "spectral_norm": {t: scale * (7.0 + 0.2 * t) for t in range(0, 50, 10)},
        "val_acc": {0: 0.1, 40: 0.8},
    }
    return write_run(path, scalar_rows(vals))


def test_spectral_norm_figures_plot_the_stored_metric(tmp_path: Path) -> None:
    run = load_run(_norm_run(tmp_path / "a", 1.0))
    fig = RUN_FIGURES["spectral_norm"](run)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # ‖H‖₂ above the val accuracy
    (line,) = fig.axes[0].get_lines()
    assert np.allclose(line.get_xdata(), [0, 10, 20, 30, 40])
    assert np.allclose(line.get_ydata(), [7.0, 9.0, 11.0, 13.0, 15.0])  # not max(|λ₁|, |λ_min|)
    assert np.allclose(fig.axes[1].get_lines()[0].get_ydata(), [10.0, 80.0])
    assert_drawn(fig)

    other = load_run(_norm_run(tmp_path / "b", 2.0))
    fig = SWEEP_FIGURES["spectral_norm_runs"]([run, other])
    assert isinstance(fig, Figure)
    curves = {ln.get_label(): ln.get_ydata() for ln in fig.axes[0].get_lines()}
    assert sorted(np.max(v) for v in curves.values()) == [15.0, 30.0]
    assert_drawn(fig)
    # Without the stored metric nor λ_min there is no ‖H‖₂: no figure (|λ₁| is only a bound).
    bare = load_run(write_run(tmp_path / "c", scalar_rows({"lambda_1": {0: 1.0, 10: 2.0}})))
    assert RUN_FIGURES["spectral_norm"](bare) is None
