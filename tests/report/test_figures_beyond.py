"""The edge-of-stability figure and the threshold line of the optimizer used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sgdscope.report.figures import edge_of_stability, eigenvalue_evolution
from sgdscope.store import load_run

from .conftest import scalar_rows, write_run


def _rows(threshold: float | None, bs: bool = True) -> list:
    steps = range(0, 50, 5)
    values: dict[str, dict[int, float]] = {
        "lambda_1": {s: 1.0 + 0.1 * s for s in steps},
        "stability": {s: (1.0 + 0.1 * s) / 20 for s in steps},
    }
    if bs:
        values["batch_sharpness_stability"] = {s: 0.05 * (1 + s) for s in steps}
    if threshold is not None:
        values["stability_threshold"] = {s: threshold for s in steps}
    return scalar_rows(values)


def _threshold_lines(fig: Figure) -> list:
    return [ln for ln in fig.axes[0].get_lines() if "threshold" in str(ln.get_label())]


def test_edge_of_stability_figure_draws_both_ratios(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r", _rows(20.0)))
    fig = edge_of_stability(run)
    assert isinstance(fig, Figure)
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert labels == ["λ₁ / threshold", "batch sharpness / threshold", "edge of stability"]
    assert (
        edge_of_stability(load_run(write_run(tmp_path / "e", scalar_rows({"x": {0: 1.0}})))) is None
    )


def test_threshold_line_is_the_stored_one_and_absent_for_adam(tmp_path: Path) -> None:
    sgd = load_run(write_run(tmp_path / "sgd", _rows(30.0, bs=False), lr=0.1))
    (line,) = _threshold_lines(eigenvalue_evolution(sgd))
    np.testing.assert_allclose(line.get_ydata(), 30.0)  # stored (here ≠ 2/η = 20)
    adam = load_run(write_run(tmp_path / "adam", _rows(3800.0, bs=False), optim="adam"))
    fig = eigenvalue_evolution(adam)
    assert not _threshold_lines(fig) and not any(
        "2/η" in str(ln.get_label()) for ln in fig.axes[0].get_lines()
    )
    labels = [ln.get_label() for ln in edge_of_stability(adam).axes[0].get_lines()]
    assert labels[0] == "λ₁(P⁻¹ᐟ²HP⁻¹ᐟ²) / threshold"
