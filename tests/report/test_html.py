"""The HTML report: self-contained, every expected figure present and non-blank, findings shown,
and it renders in headless Chromium with no broken image and no console message."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from sgdscope.cli.report_cmd import report
from sgdscope.errors import SgdscopeError
from sgdscope.report import RUN_TABLES, SWEEP_FIGURES, SWEEP_TABLES, VERDICTS, write_report
from sgdscope.report.html import FIGURES_DIR

from ..helpers import tiny_config
from .conftest import scalar_rows, write_run
from .test_figures import assert_not_blank, expected_run_figures

_IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def tiny_report(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(tiny_run, tmp_path_factory.mktemp("html") / "out")


def test_report_is_self_contained_with_every_figure(tiny_report: Path) -> None:
    assert tiny_report.name == "report.html"
    text = tiny_report.read_text(encoding="utf-8")
    figs = tiny_report.parent / FIGURES_DIR
    pngs = {p.stem for p in figs.glob("*.png")}
    assert expected_run_figures() <= pngs
    assert pngs == {p.stem for p in figs.glob("*.svg")}
    for name in pngs:
        assert_not_blank(figs / f"{name}.png")
        assert f'id="fig-{name}"' in text
    embedded = _IMG.findall(text)
    assert len(embedded) == len(pngs)
    for data in embedded:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    # Nothing fetched from elsewhere: no external scripts, styles or images.
    assert not re.search(r'(src|href)="(https?:)?//', text)


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
    assert result.output.strip() == str(tmp_path / "r" / "report.html")
    assert "Example:" in (report.__doc__ or "")


# --------------------------------------------------------------------------- the browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
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
    images = re.search(r'data-images="(\d+)"', body.group(1))
    broken = re.search(r'data-broken-images="(\d+)"', body.group(1))
    assert images and broken, f"the page's load script did not run: {body.group(0)}"
    assert int(images.group(1)) >= len(expected_run_figures())
    assert broken.group(1) == "0", "images that failed to decode"
    # The page logs nothing: any console line (errors, uncaught exceptions) is a defect.
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]
    assert not console, console

    assert shot.exists(), res.stderr[-2000:]
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[:2] == (1600, 1200)
    assert len(np.unique(pixels[::4, ::4].reshape(-1, 3), axis=0)) > 10, "blank screenshot"
