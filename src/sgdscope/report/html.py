"""One self-contained HTML page per run or sweep: figures, tables, config, versions, findings.

Every figure is written as PNG + SVG under ``figures/`` beside the page, for papers and slides.
In the page it is interactive (zoom, pan, hover) when the optional extra ``sgdscope[interactive]``
(plotly) is installed and the figure translates (:mod:`sgdscope.report.interactive`); otherwise
it is the PNG, embedded as base64. plotly.js is inlined in the page: it opens with no network.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from ..recipes import Published
from ..store import Run
from ..store.summary import SUMMARY_FIELDS
from ._data import grid_keys, is_sweep, open_target, run_label, sweep_frame
from ._evidence import Evidence
from ._published import compare, recipe_of
from .figures import RUN_FIGURES, RUN_TABLES, SWEEP_FIGURES
from .findings import (
    INSUFFICIENT,
    NOT_APPLICABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Finding,
    format_number,
    judge,
    judge_per_seed,
    verdict_counts,
)
from .interactive import figure_spec, plotly_js, plotly_version
from .style import save_figure
from .tables import SWEEP_TABLES

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"


@dataclass
class _Page:
    """The page's sections as HTML fragments, the figure files written, and whether the page
    draws interactive figures (then it carries plotly.js)."""

    title: str
    sections: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    interactive: bool = False
    findings: list[Finding] = field(default_factory=list)


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _scale_note(fig: Figure) -> str:
    """What the figure's axes are, said from the axes themselves (a docstring cannot know: a log
    axis is chosen only when every value is positive)."""
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    notes = []
    for d in ("x", "y"):
        logs = [ax for ax in axes if (ax.get_xscale() if d == "x" else ax.get_yscale()) == "log"]
        if logs and len(logs) == len(axes):
            notes.append(f"{d} axis log scale")
        elif logs:
            notes.append(f"{d} axis log scale in {len(logs)} of {len(axes)} panels")
    return f" ({'; '.join(notes)}.)" if notes else ""


def _figure_html(fig: Figure, directory: Path, name: str, caption: str, page: _Page) -> str:
    paths = save_figure(fig, directory, name)  # draws the layout figure_spec reads
    page.figures.extend(paths.values())
    caption += _scale_note(fig)
    files = f'<span class="files">({_esc(FIGURES_DIR)}/{_esc(name)}.png, .svg)</span>'
    spec = figure_spec(fig) if plotly_js() is not None else None
    if spec is None:
        data = base64.b64encode(paths["png"].read_bytes()).decode("ascii")
        return (
            f'<figure id="fig-{_esc(name)}"><img alt="{_esc(caption)}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)} {files}</figcaption></figure>"
        )
    page.interactive = True
    # JSON inside <script>: "</" would end the element early.
    payload = json.dumps(spec, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    width = spec["layout"]["meta"]["width"]
    height = spec["layout"]["height"]
    return (
        f'<figure id="fig-{_esc(name)}" class="interactive">'
        f'<div class="plot" role="img" aria-label="{_esc(caption)}" '
        f'style="max-width:{width}px;height:{height}px"></div>'
        f'<script type="application/json" class="spec">{payload}</script>'
        f"<figcaption>{_esc(caption)} Drag to zoom, double-click to reset, click a legend "
        f"entry to hide it. {files}</figcaption></figure>"
    )


_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`")


def _first_line(fn: Callable[..., Any]) -> str:
    """The first paragraph of ``fn``'s docstring as plain text (reST roles and ``literals``
    become their text: a caption shows no backticks)."""
    doc = (fn.__doc__ or "").strip()
    text = " ".join(doc.split("\n\n")[0].split())
    return _ROLE.sub(r"\1", text).replace("``", "").replace("`", "")


#: A table with more columns than this is shown in several tables of at most this many
#: (the first column, the run, repeated), so that it fits the page without scrolling sideways.
MAX_TABLE_COLUMNS = 9


def _header_html(name: str) -> str:
    """A column name that may wrap after ``_`` or ``.`` (peak_lambda_1_step is wider than its
    numbers), with its meaning as a tooltip when it is a summary field."""
    title = f"{name}: {SUMMARY_FIELDS[name]}" if name in SUMMARY_FIELDS else name
    text = re.sub(r"([_.])", r"\1<wbr>", _esc(name))
    return f'<th title="{_esc(title)}">{text}</th>'


def _cell_html(v: Any) -> str:
    if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):
        return "<td>–</td>"
    if isinstance(v, (bool, np.bool_)):
        return f"<td>{v}</td>"
    if isinstance(v, (int, float)) or hasattr(v, "dtype"):
        try:
            return f"<td>{_esc(format_number(float(v)))}</td>"
        except (TypeError, ValueError):
            pass
    text = str(v)
    return f'<td class="text">{_esc(text) if text else "–"}</td>'


def _table_html(df: pd.DataFrame, caption: str) -> str:
    """The frame as tables of at most :data:`MAX_TABLE_COLUMNS` columns; columns with no value
    at all are left out (they say nothing and cost width)."""
    df = df.loc[:, [c for c in df.columns if df[c].astype(str).str.strip().ne("").any()]]
    df = df.loc[:, df.notna().any(axis=0)]
    cols = list(df.columns)
    if not cols:
        return ""
    first, rest = cols[0], cols[1:]
    width = MAX_TABLE_COLUMNS - 1
    chunks = [rest[i : i + width] for i in range(0, len(rest), width)] or [[]]
    out = []
    for i, chunk in enumerate(chunks):
        part = [first, *chunk]
        head = "".join(_header_html(str(c)) for c in part)
        rows = "".join(
            "<tr>" + "".join(_cell_html(v) for v in row) + "</tr>"
            for row in df[part].itertuples(index=False)
        )
        note = f" ({i + 1} of {len(chunks)})" if len(chunks) > 1 else ""
        out.append(
            f"<h4>{_esc(caption)}{note}</h4><table class='data'><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    return f'<div class="table">{"".join(out)}</div>'


def _run_figures(run: Run, directory: Path, page: _Page, prefix: str = "") -> list[str]:
    out = []
    for name, fn in RUN_FIGURES.items():
        fig = fn(run)
        if fig is not None:
            out.append(_figure_html(fig, directory, prefix + name, _first_line(fn), page))
    return out


def _run_tables(run: Run) -> list[str]:
    out = []
    for caption, fn in RUN_TABLES.items():
        df = fn(run)
        if df is not None and not df.empty:
            out.append(_table_html(df, caption))
    return out


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in d.items() if v is not None
    )
    return f'<table class="kv">{rows}</table>'


def _config_html(config: dict[str, Any]) -> str:
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    return f"<pre>{_esc(text)}</pre>"


_CLASS = {REPRODUCED: "ok", NOT_REPRODUCED: "bad", INSUFFICIENT: "ins", NOT_APPLICABLE: "na"}
_PART_COLUMNS = ("claim", "statistic", "effect", "uncertainty", "threshold", "verdict")


def _verdict_html(verdict: str) -> str:
    return f'<span class="verdict {_CLASS[verdict]}">{_esc(verdict)}</span>'


def _part_html(p: Evidence) -> str:
    f = p.fields()
    cells = "".join(
        f"<td>{_verdict_html(p.verdict) if k == 'verdict' else _esc(f[k])}</td>"
        for k in _PART_COLUMNS
    )
    extra = "".join(
        f"<div class='{k}'>{_esc(k)}: {_esc(f[k])}</div>" for k in ("needs", "excluded") if k in f
    )
    if extra:
        cells = cells[: -len("</td>")] + extra + "</td>"
    return f'<tr class="{_CLASS[p.verdict]}">{cells}</tr>'


def _findings_html(findings: list[Finding]) -> str:
    """Per finding: its verdict, the paper's claim and the rule; under it one row per tested part
    with the five things a reader needs (claim, statistic, effect, uncertainty, threshold)."""
    blocks, na = [], []
    head = "".join(f"<th>{c}</th>" for c in _PART_COLUMNS)
    for f in findings:
        if f.verdict == NOT_APPLICABLE and not f.parts:
            na.append(
                f'<li id="finding-{_esc(f.id)}"><code>{_esc(f.id)}</code> {_esc(f.statement)} '
                f"<span class='needs'>needs: {_esc(f.needs)}</span><div class='rule'>Rule: "
                f"{_esc(f.rule)}</div></li>"
            )
            continue
        parts = "".join(_part_html(p) for p in f.parts)
        table = (
            f"<table class='parts'><thead><tr>{head}</tr></thead><tbody>{parts}</tbody></table>"
            if parts
            else ""
        )
        needs = f"<div class='needs'>needs: {_esc(f.needs)}</div>" if f.needs else ""
        blocks.append(
            f'<div class="finding {_CLASS[f.verdict]}" id="finding-{_esc(f.id)}">'
            f"<h4>{_verdict_html(f.verdict)} <code>{_esc(f.id)}</code> (paper {_esc(f.paper)}) "
            f"{_esc(f.statement)}</h4><div class='rule'>Rule: {_esc(f.rule)}</div>{needs}"
            f"{table}</div>"
        )
    return (
        f"<p>{_esc(verdict_counts(findings))}. Each part: one-sided p ≤ α = 0.05 and the "
        "minimum effect (equivalence: the 90% interval inside its bounds); a finding is "
        "reproduced when every part is. Diverged and failed runs are excluded and listed. "
        "Thresholds are constants in <code>sgdscope.report.findings</code>.</p>"
        + "".join(blocks)
        + (
            f"<details class='na'><summary>{len(na)} not applicable to these runs (what each "
            f"needs)</summary><ul>{''.join(na)}</ul></details>"
            if na
            else ""
        )
    )


def _per_seed_html(per_seed: dict[Any, list[Finding]], overall: list[Finding]) -> str:
    """One row per finding: the verdict on each seed's runs alone, and overall."""
    seeds = list(per_seed)
    head = "".join(f"<th>seed {_esc(s)}</th>" for s in seeds)
    rows = []
    for i, f in enumerate(overall):
        if all(x.verdict == NOT_APPLICABLE for x in [f, *(per_seed[s][i] for s in seeds)]):
            continue
        cells = "".join(f"<td>{_verdict_html(per_seed[s][i].verdict)}</td>" for s in seeds)
        rows.append(
            f"<tr><td><code>{_esc(f.id)}</code></td>{cells}<td>{_verdict_html(f.verdict)}</td></tr>"
        )
    return (
        "<p>Each seed's runs judged alone (a trend across seeds needs several seeds, so one seed "
        "gives insufficient evidence for it), and all seeds together; findings not applicable "
        "to these runs are left out.</p>"
        f"<table class='seeds'><thead><tr><th>finding</th>{head}<th>overall</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _published_html(runs: list[Run], published: Published) -> str:
    """paper | ours | ratio for each number the recipe quotes from the paper."""
    table = compare(runs, published)
    rows = []
    for r in table.itertuples(index=False):
        ours = format_number(float(r.ours)) if r.runs else "–"
        if r.runs > 1:
            ours += f" ± {format_number(float(r.sd))}"
        rows.append(
            f"<tr><td>{_esc(r.label)}</td><td>{_esc(r.metric)}</td>"
            f"<td>{_esc(format_number(float(r.paper)))}</td><td>{_esc(ours)}</td>"
            f"<td>{r.runs}</td><td>{_esc(format_number(float(r.ratio)))}</td>"
            f"<td>{_esc(r.status)}</td></tr>"
        )
    return (
        f"<p>Source: {_esc(published.source)}. “ours”: mean ± sd over the valid runs the row "
        "selects (seeds); ratio = ours / paper.</p><table class='published'><thead><tr>"
        "<th>paper's cell</th><th>metric</th><th>paper</th><th>ours</th><th>runs</th>"
        f"<th>ratio</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _section(title: str, body: str | list[str], anchor: str) -> str:
    """A titled section, or "" when the body is empty: the page never shows a bare heading."""
    if isinstance(body, list):
        body = "\n".join(b for b in body if b.strip())
    if not body.strip():
        return ""
    return f'<section id="{_esc(anchor)}"><h2>{_esc(title)}</h2>\n{body}\n</section>'


def _status(run: Run) -> dict[str, Any]:
    info = dict(run.info)
    for k in ("created", "started", "finished"):
        if isinstance(info.get(k), (int, float)):
            info[k] = _dt.datetime.fromtimestamp(info[k]).isoformat(timespec="seconds")
    if info.get("error"):
        info["error"] = str(info["error"]).splitlines()[0]
    return {"run": run.name, **info}


def _run_page(run: Run, out_dir: Path, published: Published | None) -> _Page:
    page = _Page(f"sgdscope report — {run.name}")
    figs_dir = out_dir / FIGURES_DIR
    findings = page.findings = judge(run)
    page.sections.append(_section("Run", _kv_table(_status(run)), "run"))
    page.sections.append(_section("Findings", _findings_html(findings), "findings"))
    if published is not None:
        page.sections.append(
            _section("The paper's numbers beside ours", _published_html([run], published), "paper")
        )
    figs = _run_figures(run, figs_dir, page)
    page.sections.append(_section("Figures", figs or ["<p>No figure data.</p>"], "figures"))
    tables = _run_tables(run)
    if tables:
        page.sections.append(_section("Tables", tables, "tables"))
    page.sections.append(_section("Configuration (resolved)", _config_html(run.config), "config"))
    page.sections.append(_section("Versions", _kv_table(run.meta), "versions"))
    return page


def _summary_frame(sweep: Any) -> pd.DataFrame:
    summary = getattr(sweep, "summary", None)
    if isinstance(summary, pd.DataFrame) and not summary.empty:
        return summary
    return sweep_frame(sweep)


def _sweep_page(sweep: Any, out_dir: Path, run_figures: bool, published: Published | None) -> _Page:
    path = Path(sweep.path)
    page = _Page(f"sgdscope sweep report — {path.name}")
    figs_dir = out_dir / FIGURES_DIR
    keys = grid_keys(sweep)
    runs: list[Run] = list(sweep.runs)
    statuses = pd.Series([r.status for r in runs]).value_counts().to_dict()
    info = {
        "sweep": str(path),
        "runs": len(runs),
        "grid keys": ", ".join(keys) or "–",
        **{f"status {k}": v for k, v in statuses.items()},
    }
    page.sections.append(_section("Sweep", _kv_table(info), "sweep"))
    findings = page.findings = judge(sweep)
    page.sections.append(_section("Findings", _findings_html(findings), "findings"))
    per_seed = judge_per_seed(sweep)
    if len(per_seed) > 1:
        page.sections.append(
            _section("Verdicts per seed", _per_seed_html(per_seed, findings), "seeds")
        )
    if published is not None:
        page.sections.append(
            _section("The paper's numbers beside ours", _published_html(runs, published), "paper")
        )
    figs = []
    for name, fn in SWEEP_FIGURES.items():
        fig = fn(sweep)
        if fig is not None:
            figs.append(_figure_html(fig, figs_dir, f"sweep_{name}", _first_line(fn), page))
    page.sections.append(_section("Figures across runs", figs or ["<p>None.</p>"], "figures"))
    page.sections.append(
        _section("Summary", _table_html(_summary_frame(sweep), "one row per run"), "summary")
    )
    tables = []
    for caption, fn in SWEEP_TABLES.items():
        df = fn(sweep)
        if df is not None and not df.empty:
            tables.append(_table_html(df, caption))
    if tables:
        page.sections.append(_section("The papers' tables", tables, "tables"))
    per_run = []
    for r in runs:
        body = _run_figures(r, figs_dir, page, prefix=f"{r.name}_") if run_figures else []
        body += _run_tables(r)
        body.append(f"<details><summary>configuration</summary>{_config_html(r.config)}</details>")
        per_run.append(
            f"<details class='run'><summary>{_esc(r.name)} — {_esc(run_label(r, keys))} "
            f"({_esc(r.status)})</summary>{''.join(body)}</details>"
        )
    page.sections.append(_section("Runs", per_run or ["<p>No runs.</p>"], "runs"))
    sweep_yaml = path / "sweep.yaml"
    if sweep_yaml.exists():
        page.sections.append(
            _section("Sweep definition", f"<pre>{_esc(sweep_yaml.read_text())}</pre>", "config")
        )
    if runs:
        page.sections.append(_section("Versions (first run)", _kv_table(runs[0].meta), "versions"))
    return page


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}h4{margin:.8em 0 .3em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.files{color:#999}
table{border-collapse:collapse;font-size:.85em;max-width:100%}td,th{padding:.25em .6em;
text-align:left;vertical-align:top;border-bottom:1px solid #eee;overflow-wrap:break-word}
table.data{font-size:.8em;margin-bottom:.8em}table.data th{font-weight:600;cursor:help}
table.data td{text-align:right;white-space:nowrap}table.data td.text,table.kv td{
text-align:left;white-space:normal;overflow-wrap:anywhere}
figure.interactive .plot{width:100%}
.finding{margin:1em 0 1.4em}.finding h4{margin:.2em 0;font-weight:500}
.rule,.needs,.excluded{color:#555;font-size:.9em;margin-top:.2em}
table.parts{margin-top:.4em;width:100%}table.parts td{font-size:.95em}
.verdict{padding:.1em .5em;border-radius:.7em;white-space:nowrap;font-weight:600}
.verdict.ok{background:#d7f2df;color:#11632c}.verdict.bad{background:#fadcd6;color:#8a2311}
.verdict.ins{background:#fdf0c9;color:#6b5200}
.verdict.na{background:#eee;color:#666}tr.na,.finding.na{color:#888}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
details.run{margin:.6em 0}details summary{cursor:pointer}nav a{margin-right:1em}
"""

# Counts images that failed to decode (naturalWidth 0) into data attributes, so a headless
# browser's DOM dump can tell whether every embedded figure rendered.
# Also records how far the page overflows sideways (0: no horizontal scroll bar) and how many
# interactive figures drew (a drawn one holds plotly's svg.main-svg).
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) { broken++; }
  }
  var root = document.documentElement;
  var plots = document.querySelectorAll("figure.interactive .plot");
  var drawn = 0;
  plots.forEach(function (p) { if (p.querySelector("svg.main-svg")) { drawn++; } });
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-broken-images", String(broken));
  document.body.setAttribute("data-overflow-x", String(root.scrollWidth - root.clientWidth));
  document.body.setAttribute("data-plots", String(plots.length));
  document.body.setAttribute("data-plots-drawn", String(drawn));
});
"""

# Draws each interactive figure from the JSON beside it. Step axes keep whole-number ticks when
# zoomed in (plotly would put ticks at 2.5): below 20 steps shown, ticks every whole step or more.
_PLOTS = """
(function () {
  function integerTicks(gd, axes) {
    var update = {};
    axes.forEach(function (a) {
      var ax = gd._fullLayout[a];
      if (!ax || !ax.range) { return; }
      var span = Math.abs(ax.range[1] - ax.range[0]);
      if (span < 20) {
        update[a + ".tickmode"] = "linear"; update[a + ".tick0"] = 0;
        update[a + ".dtick"] = Math.max(1, Math.ceil(span / 8));
      } else { update[a + ".tickmode"] = "auto"; update[a + ".dtick"] = null; }
    });
    if (Object.keys(update).length) { Plotly.relayout(gd, update); }
  }
  document.querySelectorAll("figure.interactive").forEach(function (f) {
    var gd = f.querySelector(".plot");
    var spec = JSON.parse(f.querySelector("script.spec").textContent);
    var axes = spec.layout.meta.integer_axes;
    var config = {responsive: true, displaylogo: false, scrollZoom: false,
                  modeBarButtonsToRemove: ["select2d", "lasso2d"]};
    Plotly.newPlot(gd, spec.data, spec.layout, config).then(function () {
      integerTicks(gd, axes);
      gd.on("plotly_relayout", function (ev) {
        var ranged = Object.keys(ev).some(function (k) { return /range|autorange/.test(k); });
        if (ranged) { integerTicks(gd, axes); }
      });
    });
  });
})();
"""


def _render(page: _Page) -> str:
    body = "\n".join(page.sections)
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("findings", "Findings"),
            ("paper", "Paper vs ours"),
            ("figures", "Figures"),
            ("config", "Config"),
            ("versions", "Versions"),
        )
        if f'id="{a}"' in body
    )
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    version = plotly_version() if page.interactive else None
    drawn_by = f"; interactive figures by plotly.js {version}" if version else ""
    from .._version import __version__

    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(page.title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<h1>{_esc(page.title)}</h1><nav>{nav}</nav>\n"
        + body
        + f"\n<footer><p style='color:#999;font-size:.8em'>sgdscope {_esc(__version__)}, "
        f"written {_esc(stamp)}{_esc(drawn_by)}</p></footer>"
        + _plot_scripts(page)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _plot_scripts(page: _Page) -> str:
    """plotly.js inlined (no CDN: the page opens offline) and the drawing script, when the page
    has an interactive figure."""
    js = plotly_js() if page.interactive else None
    if js is None:
        return ""
    js = js.replace("</script", "<\\/script")  # a string inside plotly.js must not end the tag
    return f"<script>{js}</script><script>{_PLOTS}</script>"


#: Sweeps with more runs than this get no per-run figures unless asked (each costs ~1 s).
MAX_RUNS_WITH_FIGURES = 16


def write_report(
    path: str | Path,
    out: str | Path | None = None,
    *,
    run_figures: bool | None = None,
    published: Published | None = None,
) -> Path:
    """Write ``report.html`` (self-contained) and ``figures/`` for a run or sweep directory.

    Args:
        path: a run directory or a sweep directory (or a folder of run directories).
        out: the output folder (default: ``path`` itself), or an ``.html`` file path (the
            ``figures/`` folder goes beside it).
        run_figures: for a sweep, also draw every run's own figures (default: when the sweep
            has at most ``MAX_RUNS_WITH_FIGURES`` runs).
        published: the paper's numbers to print beside ours (default: the ``published:``
            section of the packaged recipe the runs came from, if any).

    Returns:
        The path of the HTML page.

    Example:
        >>> write_report("runs/demo/digits-mlp")   # doctest: +SKIP
        PosixPath('runs/demo/digits-mlp/report.html')
    """
    return report_with_findings(path, out, run_figures=run_figures, published=published)[0]


def report_with_findings(
    path: str | Path,
    out: str | Path | None = None,
    *,
    run_figures: bool | None = None,
    published: Published | None = None,
) -> tuple[Path, list[Finding]]:
    """:func:`write_report`, also returning the findings the page shows (judged once), for
    callers that print them too (``sgdscope report``)."""
    target = open_target(path)
    out_path = Path(path) if out is None else Path(out)
    if out_path.suffix.lower() in (".html", ".htm"):
        out_dir, html_file = out_path.parent, out_path
    else:
        out_dir, html_file = out_path, out_path / REPORT_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = list(target.runs) if is_sweep(target) else [target]
    if published is None:
        recipe = recipe_of(runs)
        published = recipe.published if recipe is not None else None
    if is_sweep(target):
        if run_figures is None:
            run_figures = len(target.runs) <= MAX_RUNS_WITH_FIGURES
        page = _sweep_page(target, out_dir, run_figures, published)
    else:
        page = _run_page(target, out_dir, published)
    tmp = html_file.with_name(html_file.name + ".tmp")
    tmp.write_text(_render(page), encoding="utf-8")
    tmp.replace(html_file)  # atomic: a reader never sees half a page
    return html_file, page.findings


__all__ = [
    "FIGURES_DIR",
    "MAX_RUNS_WITH_FIGURES",
    "REPORT_FILE",
    "report_with_findings",
    "write_report",
]
