"""`sgdscope reproduce --quick`: two recipes' small variants over two seeds, a few steps each,
end to end — sweeps, each sweep's report, the reproduction report and the verdict table."""

import pandas as pd

from sgdscope.cli import main
from sgdscope.report.reproduction import QUICK_RECIPES, REPORT_HTML, REPORT_MD, VERDICTS_CSV


def test_reproduce_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "repro"
    try:
        main(["reproduce", "--quick", "--workers", "1", "--executor", "serial", "--out", str(out)])
    except SystemExit as e:
        assert e.code in (0, None)
    text = capsys.readouterr().out
    for name in QUICK_RECIPES:
        assert (out / name / "report.html").stat().st_size > 5_000
        assert (out / name / "sweep.yaml").exists()
        assert name in text
    md = (out / REPORT_MD).read_text(encoding="utf-8")
    assert "smoke test" in md and "| recipe | finding | seed 0 | seed 1 | overall |" in md
    assert "Xing et al. 2018, Table 1" in md and "no run matches" in md  # b-barriers' paper rows
    assert (out / REPORT_HTML).read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    verdicts = pd.read_csv(out / VERDICTS_CSV)
    assert set(verdicts.recipe) == set(QUICK_RECIPES)
    assert set(verdicts.seed.astype(str)) == {"0", "1", "overall"}
    # The summary table: one line per applicable finding, with per-seed marks and overall.
    assert "B.cos_vs_lr" in text and "overall" in text and "smoke test" in text
    assert text.count("reproduce finished") == 1
