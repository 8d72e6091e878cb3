"""One self-contained HTML page per run or sweep: figures, tables, config, versions, findings.

Figures are embedded as base64 PNG (the page needs no other file and no network) and also
written as PNG + SVG under ``figures/`` beside the page, for papers and slides.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from matplotlib.figure import Figure

from ..store import Run
from ._data import grid_keys, is_sweep, open_target, run_label, sweep_frame
from .figures import RUN_FIGURES, RUN_TABLES, SWEEP_FIGURES
from .findings import NOT_APPLICABLE, REPRODUCED, VERDICTS, Finding, format_number, judge
from .style import save_figure
from .tables import SWEEP_TABLES

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"


@dataclass
class _Page:
    """The page's sections as HTML fragments, and the figure files written."""

    title: str
    sections: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _figure_html(fig: Figure, directory: Path, name: str, caption: str, page: _Page) -> str:
    paths = save_figure(fig, directory, name)
    page.figures.extend(paths.values())
    data = base64.b64encode(paths["png"].read_bytes()).decode("ascii")
    return (
        f'<figure id="fig-{_esc(name)}"><img alt="{_esc(caption)}" '
        f'src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(caption)} "
        f'<span class="files">({_esc(FIGURES_DIR)}/{_esc(name)}.png, .svg)</span>'
        "</figcaption></figure>"
    )


def _first_line(fn: Callable[..., Any]) -> str:
    doc = (fn.__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def _table_html(df: pd.DataFrame, caption: str) -> str:
    body = df.to_html(
        index=False,
        border=0,
        classes="data",
        na_rep="–",
        float_format=lambda v: format_number(float(v)),
        escape=True,
    )
    return f'<div class="table"><h4>{_esc(caption)}</h4>{body}</div>'


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


def _findings_html(findings: list[Finding]) -> str:
    rows = []
    for f in findings:
        cls = {REPRODUCED: "ok", NOT_APPLICABLE: "na"}.get(f.verdict, "bad")
        numbers = "".join(
            f"<li>{_esc(k)} = {_esc(format_number(v))}</li>" for k, v in f.numbers.items()
        )
        rows.append(
            f'<tr class="{cls}"><td>{_esc(f.paper)}</td>'
            f"<td><b>{_esc(f.statement)}</b><div class='rule'>Rule: {_esc(f.rule)}</div></td>"
            f"<td><ul>{numbers}</ul></td>"
            f'<td><span class="verdict {cls}">{_esc(f.verdict)}</span></td></tr>'
        )
    counts = {v: sum(f.verdict == v for f in findings) for v in VERDICTS}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return (
        f"<p>{_esc(summary)}. Thresholds are constants in <code>sgdscope.report.findings</code>."
        "</p><table class='findings'><thead><tr><th>paper</th><th>finding and rule</th>"
        "<th>numbers</th><th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _section(title: str, body: str | list[str], anchor: str) -> str:
    if isinstance(body, list):
        body = "\n".join(body)
    return f'<section id="{_esc(anchor)}"><h2>{_esc(title)}</h2>\n{body}\n</section>'


def _status(run: Run) -> dict[str, Any]:
    info = dict(run.info)
    for k in ("created", "started", "finished"):
        if isinstance(info.get(k), (int, float)):
            info[k] = _dt.datetime.fromtimestamp(info[k]).isoformat(timespec="seconds")
    if info.get("error"):
        info["error"] = str(info["error"]).splitlines()[0]
    return {"run": run.name, **info}


def _run_page(run: Run, out_dir: Path) -> _Page:
    page = _Page(f"sgdscope report — {run.name}")
    figs_dir = out_dir / FIGURES_DIR
    findings = judge(run)
    page.sections.append(_section("Run", _kv_table(_status(run)), "run"))
    page.sections.append(_section("Findings", _findings_html(findings), "findings"))
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


def _sweep_page(sweep: Any, out_dir: Path, run_figures: bool) -> _Page:
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
    page.sections.append(_section("Findings", _findings_html(judge(sweep)), "findings"))
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
table{border-collapse:collapse;font-size:.85em}td,th{padding:.25em .6em;text-align:left;
vertical-align:top;border-bottom:1px solid #eee}table.data td{text-align:right}
table.findings td ul{margin:0;padding-left:1.1em}.rule{color:#555;font-size:.9em;margin-top:.2em}
.verdict{padding:.1em .5em;border-radius:.7em;white-space:nowrap;font-weight:600}
.verdict.ok{background:#d7f2df;color:#11632c}.verdict.bad{background:#fadcd6;color:#8a2311}
.verdict.na{background:#eee;color:#666}tr.na{color:#888}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
details.run{margin:.6em 0}details summary{cursor:pointer}nav a{margin-right:1em}
"""

# Counts images that failed to decode (naturalWidth 0) into data attributes, so a headless
# browser's DOM dump can tell whether every embedded figure rendered.
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.images, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) { broken++; }
  }
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-broken-images", String(broken));
});
"""


def _render(page: _Page) -> str:
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("findings", "Findings"),
            ("figures", "Figures"),
            ("config", "Config"),
            ("versions", "Versions"),
        )
    )
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    from .._version import __version__

    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(page.title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<h1>{_esc(page.title)}</h1><nav>{nav}</nav>\n"
        + "\n".join(page.sections)
        + f"\n<footer><p style='color:#999;font-size:.8em'>sgdscope {_esc(__version__)}, "
        f"written {_esc(stamp)}</p></footer>"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


#: Sweeps with more runs than this get no per-run figures unless asked (each costs ~1 s).
MAX_RUNS_WITH_FIGURES = 16


def write_report(
    path: str | Path, out: str | Path | None = None, *, run_figures: bool | None = None
) -> Path:
    """Write ``report.html`` (self-contained) and ``figures/`` for a run or sweep directory.

    Args:
        path: a run directory or a sweep directory (or a folder of run directories).
        out: the output folder (default: ``path`` itself), or an ``.html`` file path (the
            ``figures/`` folder goes beside it).
        run_figures: for a sweep, also draw every run's own figures (default: when the sweep
            has at most ``MAX_RUNS_WITH_FIGURES`` runs).

    Returns:
        The path of the HTML page.

    Example:
        >>> write_report("runs/demo/digits-mlp")   # doctest: +SKIP
        PosixPath('runs/demo/digits-mlp/report.html')
    """
    target = open_target(path)
    out_path = Path(path) if out is None else Path(out)
    if out_path.suffix.lower() in (".html", ".htm"):
        out_dir, html_file = out_path.parent, out_path
    else:
        out_dir, html_file = out_path, out_path / REPORT_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    if is_sweep(target):
        if run_figures is None:
            run_figures = len(target.runs) <= MAX_RUNS_WITH_FIGURES
        page = _sweep_page(target, out_dir, run_figures)
    else:
        page = _run_page(target, out_dir)
    tmp = html_file.with_name(html_file.name + ".tmp")
    tmp.write_text(_render(page), encoding="utf-8")
    tmp.replace(html_file)  # atomic: a reader never sees half a page
    return html_file


__all__ = ["FIGURES_DIR", "MAX_RUNS_WITH_FIGURES", "REPORT_FILE", "write_report"]
