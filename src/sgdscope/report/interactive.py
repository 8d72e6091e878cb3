"""Interactive figures for the HTML page: a report figure translated to a plotly figure.

The matplotlib figure stays the one source: the PNG/SVG files and the page's interactive figure
show the same data, colours, line styles, scales, labels, titles and legend entries. The page
draws it with plotly.js, inlined in the page from the ``plotly`` package (the optional extra
``sgdscope[interactive]``): zoom, pan, hover for values, a legend entry clicked hides its curves,
a double click resets the axes; no network.

Translated: lines (``ax.plot``), error bars, bars, horizontal and vertical reference lines,
linear and log axes (a symlog axis is shown linear), fixed tick labels, shared x axes, titles,
legend entries, and the integer ticks of a step axis. A figure holding any other artist (text,
images, filled areas, scatter collections) gets ``None``: the page shows its static PNG.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex, to_rgba
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator

#: Pixels per inch of the matplotlib figure in the page (its PNG is saved at 150 dpi).
PX_PER_INCH = 130
#: Line widths and marker sizes: points of the figure to pixels of the page.
PX_PER_POINT = 1.4
#: A curve with more points than this is reduced to the minimum and maximum of each of
#: MAX_POINTS / 2 buckets: spikes stay, the page stays light (a 100-epoch run has 50 000 steps).
MAX_POINTS = 4000
#: Legends with more entries, or longer labels, go under the plot instead of on its right.
LEGEND_RIGHT_MAX_ENTRIES = 10
LEGEND_RIGHT_MAX_LABEL = 30

_DASH = {"-": "solid", "--": "dash", ":": "dot", "-.": "dashdot", "solid": "solid"}
_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif'


@functools.cache
def plotly_js() -> str | None:
    """plotly.js (minified) from the installed ``plotly`` package, or None without it."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        return None
    return str(get_plotlyjs())


def plotly_version() -> str | None:
    """The version of plotly.js :func:`plotly_js` returns, or None."""
    try:
        from plotly.offline import get_plotlyjs_version
    except ImportError:
        return None
    return str(get_plotlyjs_version())


# --------------------------------------------------------------------------- numbers
def _num(v: float) -> float | None:
    """A JSON number (6 significant digits; the figure shows no more), None for NaN and ±inf."""
    v = float(v)
    return float(f"{v:.6g}") if math.isfinite(v) else None


def _nums(values: Any) -> list[float | None]:
    return [_num(v) for v in np.asarray(values, dtype=float).ravel()]


def decimate(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` points of a curve: in each of ``max_points // 2``
    equal buckets, its lowest and highest finite y, in order (every spike survives)."""
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 2)
    size = math.ceil(n / buckets)
    pad = buckets * size - n
    yy = np.asarray(y, dtype=float)
    lo = np.concatenate([np.where(np.isfinite(yy), yy, np.inf), np.full(pad, np.inf)])
    hi = np.concatenate([np.where(np.isfinite(yy), yy, -np.inf), np.full(pad, -np.inf)])
    start = np.arange(buckets) * size
    keep = np.concatenate(
        [start + lo.reshape(buckets, size).argmin(1), start + hi.reshape(buckets, size).argmax(1)]
    )
    keep = np.unique(keep[keep < n])
    return keep


# --------------------------------------------------------------------------- styles
def _color(c: Any) -> tuple[str, float]:
    rgba = to_rgba(c)
    return to_hex(rgba, keep_alpha=False), float(rgba[3])


def _line_style(line: Line2D) -> dict[str, Any]:
    col, alpha = _color(line.get_color())
    style = {
        "color": col,
        "width": round(float(line.get_linewidth()) * PX_PER_POINT, 2),
        "dash": _DASH.get(str(line.get_linestyle()), "solid"),
    }
    return {"line": style, "opacity": alpha * (line.get_alpha() or 1.0)}


def _has_marker(line: Line2D) -> bool:
    return line.get_marker() not in (None, "", " ", "None", "none")


def _has_line(line: Line2D) -> bool:
    return str(line.get_linestyle()) not in ("None", "none", "", " ")


def _marker(line: Line2D) -> dict[str, Any]:
    col, _ = _color(line.get_markerfacecolor())
    return {"color": col, "size": round(float(line.get_markersize()) * PX_PER_POINT * 1.3, 2)}


def _label(artist: Any) -> str | None:
    label = artist.get_label()
    return None if label is None or str(label).startswith("_") else str(label)


# --------------------------------------------------------------------------- axes
class _Unsupported(Exception):
    """An artist the translation does not cover: the figure stays static."""


def _axis_names(i: int) -> tuple[str, str, str, str]:
    """(layout key of x, of y, trace ref of x, of y) for the i-th axes."""
    n = "" if i == 0 else str(i + 1)
    return f"xaxis{n}", f"yaxis{n}", f"x{n}", f"y{n}"


def _fixed_ticks(axis: Any) -> dict[str, Any]:
    """Ticks the figure placed itself (``set_xticks(values, labels)``: "32 128 full" for batch
    sizes): the same values and texts, whatever formatter matplotlib keeps them in."""
    loc = axis.get_major_locator()
    if not isinstance(loc, FixedLocator):
        return {}
    vals = [float(v) for v in loc.locs]
    text = [str(t) for t in axis.get_major_formatter().format_ticks(vals)]
    return {"tickmode": "array", "tickvals": _nums(vals), "ticktext": text}


def _integer_ticks(axis: Any) -> bool:
    loc = axis.get_major_locator()
    return isinstance(loc, MaxNLocator) and bool(getattr(loc, "_integer", False))


def _axis(ax: Axes, which: str, domain: list[float], anchor: str) -> dict[str, Any]:
    axis = ax.xaxis if which == "x" else ax.yaxis
    scale = ax.get_xscale() if which == "x" else ax.get_yscale()
    log = scale == "log"
    out: dict[str, Any] = {
        "domain": domain,
        "anchor": anchor,
        "type": "log" if log else "linear",
        "title": {"text": ax.get_xlabel() if which == "x" else ax.get_ylabel()},
        "showline": True,
        "linecolor": "#444",
        "ticks": "outside",
        "showgrid": True,
        "gridcolor": "#e8e8e8",
        "zeroline": False,
        "automargin": True,
        "exponentformat": "power" if log else "B",
    }
    out.update(_fixed_ticks(axis))
    if log and "tickmode" not in out:
        lo, hi = sorted(ax.get_xlim() if which == "x" else ax.get_ylim())
        # plotly labels every minor tick of a short log range (1 2 3 … 9 10): keep 1-2-5 within
        # two decades, powers of ten beyond.
        if lo > 0 and math.log10(hi / lo) >= 2:
            out["dtick"] = 1
        else:
            out["dtick"] = "D2"
    autoscale = ax.get_autoscalex_on() if which == "x" else ax.get_autoscaley_on()
    if not autoscale:
        lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
        if log:
            if lo > 0 and hi > 0:
                out["range"] = [math.log10(lo), math.log10(hi)]
        else:
            out["range"] = [_num(lo), _num(hi)]
    return out


def _domains(axes: Sequence[Axes]) -> list[tuple[list[float], list[float]]]:
    """Each axes' plot area as fractions of the union of all of them (plotly's margins hold
    the outer labels; the gaps between panels keep matplotlib's room for inner ones)."""
    boxes = [ax.get_position() for ax in axes]
    x0, x1 = min(b.x0 for b in boxes), max(b.x1 for b in boxes)
    y0, y1 = min(b.y0 for b in boxes), max(b.y1 for b in boxes)
    w, h = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)

    def frac(v: float, lo: float, span: float) -> float:
        return round(min(1.0, max(0.0, (v - lo) / span)), 4)

    return [
        ([frac(b.x0, x0, w), frac(b.x1, x0, w)], [frac(b.y0, y0, h), frac(b.y1, y0, h)])
        for b in boxes
    ]


# --------------------------------------------------------------------------- artists
class _Builder:
    def __init__(self) -> None:
        self.data: list[dict[str, Any]] = []
        self.shapes: list[dict[str, Any]] = []
        self.legend_seen: set[str] = set()
        self.integer_axes: list[str] = []

    def _legend(self, item: dict[str, Any], label: str | None, fallback: str) -> None:
        if label is None:
            item["name"] = fallback
            item["showlegend"] = False
            return
        item["name"] = label
        item["legendgroup"] = label
        item["showlegend"] = label not in self.legend_seen
        self.legend_seen.add(label)

    def line(self, line: Line2D, xref: str, yref: str, fallback: str) -> None:
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        keep = decimate(x, y)
        x, y = x[keep], y[keep]
        label = _label(line)
        prev = self.data[-1] if self.data else None
        style = _line_style(line)
        if (
            label is None
            and prev is not None
            and prev.get("type") == "scatter"
            and prev.get("xaxis") == xref
            and prev.get("yaxis") == yref
            and prev.get("line") == style["line"]
            and prev.get("_marker") == _has_marker(line)
        ):
            # A curve drawn in pieces (the walk's segments): one trace, gaps between pieces,
            # so its legend entry hides every piece.
            prev["x"] += [None, *_nums(x)]
            prev["y"] += [None, *_nums(y)]
            return
        mode = "+".join(
            m for m, on in (("lines", _has_line(line)), ("markers", _has_marker(line))) if on
        )
        trace: dict[str, Any] = {
            "type": "scatter",
            "mode": mode or "lines",
            "x": _nums(x),
            "y": _nums(y),
            "xaxis": xref,
            "yaxis": yref,
            "_marker": _has_marker(line),
            **style,
        }
        if _has_marker(line):
            trace["marker"] = _marker(line)
        self._legend(trace, label, fallback)
        self.data.append(trace)

    def reference(self, line: Line2D, ax: Axes, xref: str, yref: str, horizontal: bool) -> None:
        """axhline / axvline: a shape spanning the plot area, in the legend when labelled."""
        style = _line_style(line)["line"]
        if horizontal:
            xs, (v, *_) = line.get_xdata(), line.get_ydata()
            log = ax.get_yscale() == "log"
            shape = {"xref": f"{xref} domain", "x0": float(xs[0]), "x1": float(xs[-1])}
            value = math.log10(v) if log and v > 0 else float(v)
            shape |= {"yref": yref, "y0": value, "y1": value}
        else:
            (v, *_), ys = line.get_xdata(), line.get_ydata()
            log = ax.get_xscale() == "log"
            value = math.log10(v) if log and v > 0 else float(v)
            shape = {"xref": xref, "x0": value, "x1": value}
            shape |= {"yref": f"{yref} domain", "y0": float(ys[0]), "y1": float(ys[-1])}
        item = {"type": "line", "layer": "below", "line": style, **shape}
        label = _label(line)
        if label is not None:
            self._legend(item, label, label)
        self.shapes.append(item)

    def errorbar(self, c: ErrorbarContainer, xref: str, yref: str, fallback: str) -> None:
        data_line, _caps, cols = c.lines
        if data_line is None:
            return  # the error bars of a bar chart: drawn with the bars
        self.line(data_line, xref, yref, fallback)
        trace = self.data[-1]
        if c.has_yerr and cols:
            x = trace["x"]
            lo, hi = _error_extents(cols[-1])
            y = trace["y"]
            plus = [_err(hi.get(xi), yi, +1) for xi, yi in zip(x, y, strict=True)]
            minus = [_err(lo.get(xi), yi, -1) for xi, yi in zip(x, y, strict=True)]
            trace["error_y"] = {
                "type": "data",
                "symmetric": False,
                "array": plus,
                "arrayminus": minus,
                "color": trace["line"]["color"],
                "thickness": 1,
                "width": 3,
            }
        if _label(c) is not None:
            trace["name"] = str(_label(c))
            trace["legendgroup"] = trace["name"]
            trace["showlegend"] = trace["name"] not in self.legend_seen
            self.legend_seen.add(trace["name"])

    def bars(self, c: BarContainer, xref: str, yref: str, fallback: str) -> None:
        rects = list(c.patches)
        if not rects:
            return
        x = [r.get_x() + r.get_width() / 2 for r in rects]
        trace: dict[str, Any] = {
            "type": "bar",
            "x": _nums(x),
            "y": _nums([r.get_height() for r in rects]),
            "base": _nums([r.get_y() for r in rects]),
            "width": _nums([r.get_width() for r in rects]),
            "xaxis": xref,
            "yaxis": yref,
            "marker": {"color": _color(rects[0].get_facecolor())[0]},
        }
        err = c.errorbar
        if err is not None and err.has_yerr and err.lines[2]:
            lo, hi = _error_extents(err.lines[2][-1])
            tops = [r.get_y() + r.get_height() for r in rects]
            xs = trace["x"]
            trace["error_y"] = {
                "type": "data",
                "symmetric": False,
                "array": [_err(hi.get(xi), t, +1) for xi, t in zip(xs, tops, strict=True)],
                "arrayminus": [_err(lo.get(xi), t, -1) for xi, t in zip(xs, tops, strict=True)],
                "color": "#333",
                "thickness": 1,
                "width": 3,
            }
        self._legend(trace, _label(c), fallback)
        self.data.append(trace)


def _error_extents(
    col: LineCollection,
) -> tuple[dict[float | None, float], dict[float | None, float]]:
    """Per x, the low and high ends of the vertical error segments of an errorbar collection."""
    lo: dict[float | None, float] = {}
    hi: dict[float | None, float] = {}
    for seg in col.get_segments():
        if len(seg) < 2:
            continue
        x = _num(seg[0][0])
        ys = [float(seg[0][1]), float(seg[-1][1])]
        lo[x], hi[x] = min(ys), max(ys)
    return lo, hi


def _err(end: float | None, y: float | None, sign: int) -> float:
    if end is None or y is None or not math.isfinite(end):
        return 0.0
    return float(_num(max(0.0, sign * (end - y))) or 0.0)


def _owned_by_containers(ax: Axes) -> set[int]:
    ids: set[int] = set()
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            data_line, caps, cols = c.lines
            ids.update(id(a) for a in (data_line, *caps, *cols) if a is not None)
        elif isinstance(c, BarContainer):
            ids.update(id(p) for p in c.patches)
            if c.errorbar is not None:
                data_line, caps, cols = c.errorbar.lines
                ids.update(id(a) for a in (data_line, *caps, *cols) if a is not None)
    return ids


def _add_axes(b: _Builder, ax: Axes, xref: str, yref: str) -> None:
    if ax.texts or ax.images or ax.tables or ax.artists:
        raise _Unsupported("text, image or table")
    owned = _owned_by_containers(ax)
    if any(id(c) not in owned for c in ax.collections):
        raise _Unsupported("a collection outside error bars")
    if any(id(p) not in owned for p in ax.patches):
        raise _Unsupported("a patch outside bars")
    fallback = ax.get_ylabel() or ax.get_title() or "value"
    for c in ax.containers:
        if isinstance(c, BarContainer):
            b.bars(c, xref, yref, fallback)
    containers = {id(c.lines[0]): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        if id(line) in containers:
            b.errorbar(containers[id(line)], xref, yref, fallback)
            continue
        if id(line) in owned:
            continue
        tr = line.get_transform()
        if tr == ax.transData:
            b.line(line, xref, yref, fallback)
        elif tr == ax.get_yaxis_transform():
            b.reference(line, ax, xref, yref, horizontal=True)
        elif tr == ax.get_xaxis_transform():
            b.reference(line, ax, xref, yref, horizontal=False)
        else:
            raise _Unsupported("a line in another coordinate system")


def _title(fig: Figure) -> str:
    title = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    return str(title or "")


def figure_spec(fig: Figure) -> dict[str, Any] | None:
    """The plotly figure (``{"data", "layout"}``, JSON-ready) of a report figure whose layout
    has been drawn (saved), or None when it holds an artist this translation does not cover.

    Sizes: ``layout.height`` in pixels and ``layout.meta.width`` (the figure's width at
    :data:`PX_PER_INCH`, the page's maximum width for it); ``layout.meta.integer_axes`` names
    the axes whose ticks must stay on integers (steps).
    """
    axes = [ax for ax in fig.axes if ax.get_visible()]
    if not axes:
        return None
    b = _Builder()
    layout: dict[str, Any] = {}
    domains = _domains(axes)
    bottom_of_shared: dict[int, Axes] = {}
    for ax in axes:
        group = ax.get_shared_x_axes().get_siblings(ax)
        low = min(group, key=lambda a: a.get_position().y0)
        bottom_of_shared[id(ax)] = low
    first_ref: dict[int, str] = {}
    annotations: list[dict[str, Any]] = []
    for i, (ax, (dx, dy)) in enumerate(zip(axes, domains, strict=True)):
        xkey, ykey, xref, yref = _axis_names(i)
        try:
            _add_axes(b, ax, xref, yref)
        except _Unsupported:
            return None
        xaxis = _axis(ax, "x", dx, yref)
        yaxis = _axis(ax, "y", dy, xref)
        siblings = [a for a in ax.get_shared_x_axes().get_siblings(ax) if a is not ax]
        for s in siblings:
            if id(s) in first_ref:
                xaxis["matches"] = first_ref[id(s)]
                break
        first_ref[id(ax)] = xaxis.get("matches", xref)
        if siblings and bottom_of_shared[id(ax)] is not ax:
            xaxis["showticklabels"] = False
            xaxis["title"] = {"text": ""}
        if _integer_ticks(ax.xaxis):
            b.integer_axes.append(xkey)
        layout[xkey], layout[ykey] = xaxis, yaxis
        title = ax.get_title()
        if title and (len(axes) > 1 or _title(fig)):
            annotations.append(
                {
                    "text": title,
                    "xref": "paper",
                    "yref": "paper",
                    "x": (dx[0] + dx[1]) / 2,
                    "y": dy[1],
                    "xanchor": "center",
                    "yanchor": "bottom",
                    "yshift": 4,
                    "showarrow": False,
                    "font": {"size": 12},
                }
            )
    title = _title(fig) or (axes[0].get_title() if len(axes) == 1 else "")
    width_in, height_in = fig.get_size_inches()
    names = sorted(b.legend_seen, key=len)
    below = len(names) > LEGEND_RIGHT_MAX_ENTRIES or (
        names and len(names[-1]) > LEGEND_RIGHT_MAX_LABEL
    )
    legend: dict[str, Any] = {"font": {"size": 11}, "tracegroupgap": 2}
    if below:
        # Under the lowest x axis' title: about 70 px below the plot area, in its fractions.
        plot_px = max(float(fig.get_size_inches()[1]) * PX_PER_INCH - 60, 100)
        gap = -min(0.6, 75 / plot_px)
        legend |= {"orientation": "h", "x": 0, "xanchor": "left", "y": gap, "yanchor": "top"}
    layout |= {
        "height": round(float(height_in) * PX_PER_INCH) + (60 if title else 20),
        "margin": {"l": 10, "r": 10, "t": 50 if title else 20, "b": 10},
        "font": {"family": _FONT, "size": 12, "color": "#222"},
        # Left: the mode bar (zoom, pan, save) at the top right would cover a centred title.
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 14}},
        "showlegend": bool(b.legend_seen),
        "legend": legend,
        "hovermode": "closest",
        "plot_bgcolor": "white",
        "paper_bgcolor": "white",
        "shapes": b.shapes,
        "annotations": annotations,
        "barmode": "overlay",
        "meta": {
            "width": round(float(width_in) * PX_PER_INCH) + (160 if b.legend_seen else 40),
            "integer_axes": b.integer_axes,
        },
    }
    for trace in b.data:
        trace.pop("_marker", None)
    return {"data": b.data, "layout": layout}


def axis_scales(spec: dict[str, Any]) -> dict[str, str]:
    """``{"x": ..., "y": ...}``: the scale of each direction of a spec's axes ("log",
    "linear", or "log and linear" when panels differ)."""
    out = {}
    for d in ("x", "y"):
        kinds = {
            v.get("type", "linear") for k, v in spec["layout"].items() if k.startswith(d + "axis")
        }
        out[d] = " and ".join(sorted(kinds, reverse=False)) if kinds else "linear"
    return out


__all__ = ["MAX_POINTS", "axis_scales", "decimate", "figure_spec", "plotly_js", "plotly_version"]
