"""The matplotlib → plotly translation of report figures: same data, scales, labels, legend; a
figure it does not cover stays static (None); long curves are thinned without losing spikes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sgdscope.report.interactive import MAX_POINTS, axis_scales, decimate, figure_spec


def _drawn(fig: Figure) -> Figure:
    fig.canvas.draw()  # figure_spec reads the laid-out axes positions
    return fig


def test_decimate_keeps_every_spike_and_at_most_max_points() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=50_000)
    y[12_345], y[40_000] = 100.0, -100.0
    y[777] = np.nan
    keep = decimate(np.arange(len(y)), y)
    assert len(keep) <= MAX_POINTS and np.all(np.diff(keep) > 0)
    assert {12_345, 40_000} <= set(keep.tolist())
    assert np.array_equal(decimate(np.arange(10), np.arange(10.0)), np.arange(10))


def test_a_line_figure_translates_with_its_data_scales_and_legend() -> None:
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.add_subplot()
    steps = np.arange(0, 12)
    ax.plot(steps, 2.0**steps, "o-", color="#0072b2", label="λ₁")
    ax.plot(steps, 1.5**steps, "--", color="#d55e00", label="λ₂")
    ax.axhline(20.0, ls="--", color="#666", label="2/η")
    ax.set_yscale("log")
    ax.set_xlabel("step t (updates)")
    ax.set_ylabel("eigenvalue")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Top eigenvalues")
    spec = figure_spec(_drawn(fig))
    assert spec is not None
    json.dumps(spec, allow_nan=False)  # embeddable as is
    first, second = spec["data"]
    assert first["name"] == "λ₁" and first["mode"] == "lines+markers"
    assert first["x"] == steps.tolist() and first["y"] == (2.0**steps).tolist()
    assert first["line"]["color"] == "#0072b2" and second["line"]["dash"] == "dash"
    layout = spec["layout"]
    assert layout["yaxis"]["type"] == "log" and layout["xaxis"]["type"] == "linear"
    assert layout["xaxis"]["title"]["text"] == "step t (updates)"
    assert layout["title"]["text"] == "Top eigenvalues"
    assert layout["meta"]["integer_axes"] == ["xaxis"]
    assert layout["yaxis"]["dtick"] == 1  # 1 to 2048: labels at powers of ten, not 2 3 4 …
    (shape,) = layout["shapes"]  # the reference line, at log10(20) on the log axis
    assert shape["y0"] == pytest.approx(np.log10(20.0)) and shape["name"] == "2/η"
    assert axis_scales(spec) == {"x": "linear", "y": "log"}


def test_nan_becomes_a_gap_and_text_keeps_the_figure_static() -> None:
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1.0, np.nan, 3.0])
    spec = figure_spec(_drawn(fig))
    assert spec is not None and spec["data"][0]["y"] == [1.0, None, 3.0]
    ax.text(0.5, 0.5, "note")  # an artist the translation does not cover
    assert figure_spec(_drawn(fig)) is None


def test_ticks_the_figure_placed_keep_their_labels() -> None:
    """Batch sizes on a log axis labelled "32 128 full", as in the sweep figures."""
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([32, 128, 256], [3.0, 2.0, 1.0], "o-")
    ax.set_xscale("log")
    ax.set_xticks([32, 128, 256], ["32", "128", "full"])
    spec = figure_spec(_drawn(fig))
    assert spec is not None
    x = spec["layout"]["xaxis"]
    assert x["type"] == "log" and x["tickmode"] == "array"
    assert x["tickvals"] == [32.0, 128.0, 256.0] and x["ticktext"] == ["32", "128", "full"]
