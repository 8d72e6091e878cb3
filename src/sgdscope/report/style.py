"""One matplotlib style for every sgdscope figure: readable at paper size, Agg only.

Figures are built as :class:`matplotlib.figure.Figure` objects with an Agg canvas attached,
never through ``pyplot``: no global figure registry to leak (nothing to close), no GUI backend,
and the user's own pyplot backend (a notebook's, say) is left alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Paper sizes in inches: one column of a two-column paper, and the full text width.
COLUMN_WIDTH = 3.4
TEXT_WIDTH = 6.8

#: Okabe–Ito: distinguishable by colour-blind readers and in greyscale print.
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)

#: Colour of reference lines (2/η, random baselines, zero).
REFERENCE = "#555555"

RC: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),
    "lines.linewidth": 1.3,
    "lines.markersize": 3.5,
    "legend.frameon": False,
    "svg.fonttype": "none",  # text stays text in SVG (searchable, editable)
    "figure.constrained_layout.use": True,
}

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def style() -> Iterator[None]:
    """Apply the sgdscope rc parameters inside the block (artists read them when created)."""
    with matplotlib.rc_context(RC):
        yield


def styled(fn: F) -> F:
    """Decorator: draw the figure function under :func:`style`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float = TEXT_WIDTH,
    height: float | None = None,
    sharex: bool | str = False,
    height_ratios: list[float] | None = None,
) -> tuple[Figure, list[Axes]]:
    """A styled figure and its axes as a flat list (row-major)."""
    if height is None:
        height = 2.4 * nrows if ncols > 1 or nrows > 1 else 2.6
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # Agg rendering, whatever backend pyplot uses
    gs_kw = {"height_ratios": height_ratios} if height_ratios else None
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False, gridspec_kw=gs_kw)
    return fig, list(axes.ravel())


def color(i: int) -> str:
    """The i-th colour of the palette (cycled)."""
    return PALETTE[i % len(PALETTE)]


def save_figure(fig: Figure, directory: str | Path, name: str) -> dict[str, Path]:
    """Write ``fig`` as ``directory/name.png`` and ``directory/name.svg``; returns both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    engine = fig.get_layout_engine()
    with style():
        for ext in ("png", "svg"):
            path = directory / f"{name}.{ext}"
            fig.savefig(path, format=ext, dpi=RC["savefig.dpi"], metadata=_metadata(ext))
            out[ext] = path
            # The layout is solved by the first save; freezing it halves the second's cost.
            fig.set_layout_engine("none")
    fig.set_layout_engine(engine)
    return out


def _metadata(ext: str) -> dict[str, Any]:
    # No creation date in the SVG: the same run gives byte-identical figures.
    return {"Date": None} if ext == "svg" else {}
