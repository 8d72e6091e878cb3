"""The HTML report: self-contained, every expected figure present and non-blank, findings shown,
tables that fit the page, and it renders offline in headless Chromium: every figure drawn (PNG or
interactive), no console message, no sideways scroll."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from sgdscope.cli.report_cmd import report
from sgdscope.errors import SgdscopeError
from sgdscope.report import (
    RUN_FIGURES,
    RUN_TABLES,
    SWEEP_FIGURES,
    SWEEP_TABLES,
    VERDICTS,
    write_report,
)
from sgdscope.report import html as report_html
from sgdscope.report._data import open_target
from sgdscope.report.findings import judge, verdict_counts
from sgdscope.report.html import FIGURES_DIR
from sgdscope.report.interactive import plotly_js, plotly_version

from ..helpers import tiny_config
from .conftest import scalar_rows, write_run
from .test_figures import assert_not_blank, expected_run_figures

_IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def tiny_report(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(tiny_run, tmp_path_factory.mktemp("html") / "out")


_FIGURE = re.compile(r'<figure id="fig-([^"]+)"( class="interactive")?>(.*?)</figure>', re.S)
_SPEC = re.compile(r'<script type="application/json" class="spec">(.*?)</script>', re.S)


def _no_network(text: str) -> None:
    """Nothing fetched from elsewhere: no external scripts, styles, images or frames (outside
    plotly.js itself, whose strings name sites for map tiles it never loads here; the browser
    test runs the page with every host unresolvable)."""
    js = plotly_js()
    if js is not None:
        text = text.replace(js, "")
    assert not re.search(r'(src|href)=["\'](https?:)?//', text)
    assert not re.search(r"<script[^>]* src=", text) and "<link" not in text


def test_report_is_self_contained_with_every_figure(tiny_report: Path) -> None:
    assert tiny_report.name == "report.html"
    text = tiny_report.read_text(encoding="utf-8")
    figs = tiny_report.parent / FIGURES_DIR
    pngs = {p.stem for p in figs.glob("*.png")}
    assert expected_run_figures() <= pngs
    assert pngs == {p.stem for p in figs.glob("*.svg")}
    shown = {}
    for name, interactive, body in _FIGURE.findall(text):
        shown[name] = body
        if interactive:  # drawn by plotly.js from the figure's data, inlined beside it
            spec = json.loads(_SPEC.search(body).group(1))
            assert spec["data"] and spec["layout"]["height"] > 100, name
        else:
            (data,) = _IMG.findall(body)
            assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert set(shown) == pngs
    for name in pngs:
        assert_not_blank(figs / f"{name}.png")
    if plotly_js() is not None:
        assert text.count('class="interactive"') >= len(expected_run_figures())
        assert text.count(plotly_js()) == 1  # inlined once, whatever the number of figures
        assert f"plotly.js {plotly_version()}" in text  # which one, in the footer
    _no_network(text)


def test_without_plotly_every_figure_is_an_embedded_png(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extra is optional: without plotly the page shows the static figures, no script."""
    monkeypatch.setattr(report_html, "plotly_js", lambda: None)
    path = write_report(tiny_run, tmp_path / "static")
    text = path.read_text(encoding="utf-8")
    pngs = {p.stem for p in (path.parent / FIGURES_DIR).glob("*.png")}
    assert len(_IMG.findall(text)) == len(pngs) >= len(expected_run_figures())
    assert 'class="interactive"' not in text and "Plotly" not in text
    _no_network(text)
    assert path.stat().st_size < 2_000_000


def test_captions_say_the_axes_scales_and_carry_no_markup(tiny_report: Path) -> None:
    """A caption names a log axis exactly when the figure has one (read from the figure, not
    the docstring), and shows no reST backticks."""
    for fn in [*RUN_FIGURES.values(), *SWEEP_FIGURES.values()]:
        first = report_html._first_line(fn)
        assert "`" not in first and ":func:" not in first, fn.__name__
        assert "log scale" not in first, fn.__name__  # said by _scale_note from the axes
    text = tiny_report.read_text(encoding="utf-8")
    checked = 0
    for name, interactive, body in _FIGURE.findall(text):
        caption = html.unescape(re.search(r"<figcaption>(.*?)<", body, re.S).group(1))
        assert "`" not in caption, name
        if interactive:
            layout = json.loads(_SPEC.search(body).group(1))["layout"]
            log_y = any(v.get("type") == "log" for k, v in layout.items() if k.startswith("yaxis"))
            assert ("y axis log scale" in caption) == log_y, (name, caption)
            checked += 1
    assert checked or plotly_js() is None


def test_tables_fit_the_page(good_sweep: Path) -> None:
    """The summary (33 fields) is cut into tables of at most MAX_TABLE_COLUMNS columns, the run
    repeated first; empty columns are dropped; long names may wrap and keep their meaning."""
    frame = report_html._summary_frame(open_target(good_sweep))
    assert report_html._cell_html(pd.NA) == report_html._cell_html(np.nan) == "<td>–</td>"
    assert report_html._cell_html(np.bool_(False)) == "<td>False</td>"
    out = report_html._table_html(frame, "one row per run")
    tables = re.findall(r"<table class='data'>(.*?)</table>", out, re.S)
    assert len(tables) > 1
    kept = set()
    for t in tables:
        heads = re.findall(r'<th title="([^"]*)">(.*?)</th>', t)
        assert 1 < len(heads) <= report_html.MAX_TABLE_COLUMNS
        assert heads[0][1] == "run"
        kept |= {h.replace("<wbr>", "") for _, h in heads}
        assert len(re.findall("<tr>", t)) == len(frame) + 1  # the header row and one per run
    assert "peak_<wbr>lambda_<wbr>1_<wbr>step" in out
    assert 'title="peak_lambda_1_step: step of the largest λ₁"' in out
    empty = {c for c in frame.columns if frame[c].isna().all()}
    assert empty and not (kept & empty)  # e.g. final_hessian_trace, never measured here
    assert kept == set(frame.columns) - empty - {"error"}  # error: blank for every run


def test_no_section_without_content(tiny_report: Path) -> None:
    assert report_html._section("Tables", [], "tables") == ""
    assert report_html._section("Tables", ["", " "], "tables") == ""
    text = tiny_report.read_text(encoding="utf-8")
    for h2 in re.findall(r"</h2>\s*(.{0,20})", text):
        assert not h2.startswith("</section>"), "a section heading with nothing under it"


def test_report_sections(tiny_report: Path, tiny_run: Path) -> None:
    text = tiny_report.read_text(encoding="utf-8")
    for section in ("Findings", "Figures", "Tables", "Configuration (resolved)", "Versions"):
        assert f">{section}</h2>" in text, section
    assert "torch" in text and "sgdscope" in text  # versions from meta.yaml
    assert "lr: 0.1" in text  # the resolved config
    assert any(caption in text for caption in RUN_TABLES)
    assert "Rule:" in text
    assert any(v in text for v in VERDICTS)


def _small_run(path: Path) -> Path:
    """A run with training curves only: one figure, cheap to report."""
    vals = {"batch_loss": {t: 1.0 / (t + 1) for t in range(10)}, "train_loss": {0: 1.0, 9: 0.1}}
    return write_run(path, scalar_rows(vals))


def test_report_default_location_and_html_out(tmp_path: Path) -> None:
    run = _small_run(tmp_path / "run")
    path = write_report(run)
    assert path == run / "report.html" and (run / FIGURES_DIR / "training.svg").exists()
    other = write_report(run, tmp_path / "elsewhere" / "page.html")
    assert other.name == "page.html" and (other.parent / FIGURES_DIR / "training.png").exists()
    assert "not applicable" in other.read_text(encoding="utf-8")


def test_sweep_report(good_sweep: Path, tmp_path: Path) -> None:
    path = write_report(good_sweep, tmp_path / "sweep", run_figures=False)
    text = path.read_text(encoding="utf-8")
    for name in SWEEP_FIGURES:
        if name != "spectral_norm_runs":  # the synthetic sweep stores no ‖H‖₂
            assert f'id="fig-sweep_{name}"' in text, name
    assert ">Summary</h2>" in text and "sgd-lr0.1-S32" in text
    assert text.count('class="verdict ok">reproduced') >= 8
    # The papers' tables across runs, under their captions.
    assert "The papers&#x27; tables</h2>" in text
    for caption in SWEEP_TABLES:
        assert html.escape(caption) in text, caption


def test_real_sweep_directory(tmp_path: Path) -> None:
    """A directory written by sgdscope.sweep (sweep.yaml, runs/, summary.csv) reports too."""
    from sgdscope.sweep import run_sweep

    cfg = tiny_config(train__epochs=1)
    cfg["probes"] = [{"name": n} for n in ("distance", "grad_cosine")]
    grid = {"train.batch_size": [32, 64]}
    out = run_sweep(cfg, grid, tmp_path / "sweep", executor="serial")
    path = write_report(out, run_figures=False)
    text = path.read_text(encoding="utf-8")
    assert path == out / "report.html"
    assert "train.batch_size" in text and ">Sweep definition</h2>" in text
    assert 'id="fig-sweep_walk_vs_hparams"' in text  # distance against S
    assert "A larger batch size gives a smaller distance" in text


def test_not_a_run_or_sweep(tmp_path: Path) -> None:
    with pytest.raises(SgdscopeError, match="neither a run directory"):
        write_report(tmp_path)
    with pytest.raises(SgdscopeError, match="does not exist"):
        write_report(tmp_path / "missing")


def test_cli_prints_the_report_path(tmp_path: Path) -> None:
    run = _small_run(tmp_path / "run")
    app = typer.Typer()
    app.command()(report)
    app.command("other")(lambda: None)  # two commands: typer keeps the subcommand name
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == str(tmp_path / "r" / "report.html")  # last: scripts can take it
    # The verdicts too: here every finding is not applicable, so only their count, and no
    # heading over nothing.
    counts = verdict_counts(judge(run))
    assert counts.startswith("0 reproduced, 0 not reproduced, 0 insufficient evidence")
    assert lines[:-1] == [counts]
    assert "Example:" in (report.__doc__ or "")


def test_cli_prints_the_verdicts_of_a_sweep(good_sweep: Path, tmp_path: Path) -> None:
    """`sgdscope report` on a sweep prints what the page says: the same verdicts, by paper."""
    from sgdscope.cli import app

    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["report", str(good_sweep), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == str(out / "report.html")
    findings = judge(good_sweep)
    assert lines[-2] == verdict_counts(findings)
    for f in findings:
        if f.applicable:
            assert f"{f.verdict:<21} {f.id}: {f.statement}" in result.output, f.id
        else:
            assert f" {f.id}:" not in result.output, f.id
    page = (out / "report.html").read_text(encoding="utf-8")
    assert html.escape(verdict_counts(findings)) in page


# --------------------------------------------------------------------------- the browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        # Every host unresolvable: the page must draw offline.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=5000", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tiny_report: Path, tmp_path: Path) -> None:
    url = tiny_report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    # One launch does both: the DOM after the load event, and a screenshot.
    res = _chromium(
        tmp_path / "profile", "--window-size=1200,1600", f"--screenshot={shot}", "--dump-dom", url
    )
    assert res.returncode == 0, res.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", res.stdout)
    assert body, res.stdout[:500]
    attrs = dict(re.findall(r'data-([a-z-]+)="(-?\d+)"', body.group(1)))
    assert "images" in attrs, f"the page's load script did not run: {body.group(0)}"
    # Each figure drew: an embedded PNG decoded, or a plotly figure rendered its svg.
    figures = int(attrs["images"]) + int(attrs["plots"])
    assert figures >= len(expected_run_figures())
    assert attrs["broken-images"] == "0", "images that failed to decode"
    assert attrs["plots-drawn"] == attrs["plots"], "interactive figures that did not draw"
    if plotly_js() is not None:
        assert int(attrs["plots"]) >= len(expected_run_figures())
    assert attrs["overflow-x"] == "0", "the page scrolls sideways"
    # Step axes, as drawn by plotly: whole steps only (plotly alone would tick 2.5 when zoomed).
    steps = 0
    for name, interactive, figure in _FIGURE.findall(res.stdout):
        if not interactive:
            continue
        layout = json.loads(html.unescape(_SPEC.search(figure).group(1)))["layout"]
        for key in layout["meta"]["integer_axes"]:
            if not layout[key].get("showticklabels", True):
                continue  # a panel above another that shares its steps
            cls = key.replace("axis", "") + "tick"  # xaxis2 → x2tick
            labels = re.findall(rf'class="{cls}"[^>]*>\s*<text[^>]*>([^<]*)<', figure)
            assert labels and not any("." in t for t in labels), (name, key, labels)
            steps += 1
    assert steps >= 5 or plotly_js() is None
    # The page logs nothing: any console line (errors, uncaught exceptions) is a defect.
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console

    assert shot.exists(), res.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[:2] == (1600, 1200)
    assert len(np.unique(pixels[::4, ::4].reshape(-1, 3), axis=0)) > 10, "blank screenshot"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_sweep_report_fits_a_narrow_window_in_chromium(good_sweep: Path, tmp_path: Path) -> None:
    """The sweep page (its 33-field summary, the findings' tables, the figures across runs) in
    a 1000-pixel window: nothing scrolls sideways, every figure draws, the console stays quiet."""
    page = write_report(good_sweep, tmp_path / "sweep", run_figures=False)
    res = _chromium(tmp_path / "profile", "--window-size=1000,1200", "--dump-dom", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", res.stdout)
    assert body, res.stdout[:500]
    attrs = dict(re.findall(r'data-([a-z-]+)="(-?\d+)"', body.group(1)))
    assert attrs.get("overflow-x") == "0", attrs
    assert attrs["plots-drawn"] == attrs["plots"] and attrs["broken-images"] == "0", attrs
    assert int(attrs["images"]) + int(attrs["plots"]) >= len(SWEEP_FIGURES) - 1
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
@pytest.mark.skipif(plotly_js() is None, reason="plotly not installed (the interactive extra)")
def test_a_short_step_axis_keeps_whole_steps_in_chromium(tmp_path: Path) -> None:
    """Three steps: plotly alone ticks 0, 0.5, 1, 1.5, 2; the page's script keeps whole steps."""
    vals = {"batch_loss": {0: 1.0, 1: 0.7, 2: 0.5}, "train_loss": {0: 1.0, 2: 0.5}}
    page = write_report(write_run(tmp_path / "run", scalar_rows(vals)), tmp_path / "out")
    res = _chromium(tmp_path / "profile", "--window-size=1000,1200", "--dump-dom", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    figure = re.search(r'<figure id="fig-training".*?</figure>', res.stdout, re.S)
    assert figure, "the training figure is missing"
    labels = re.findall(r'class="xtick"[^>]*>\s*<text[^>]*>([^<]*)<', figure.group(0))
    assert labels == ["0", "1", "2"], labels
