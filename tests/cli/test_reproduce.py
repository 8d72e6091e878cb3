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
    # Each finding is judged by the recipe designed for it (b-barriers: the two barrier rules,
    # b-cosine-vs-lr: B.cos_vs_lr), whatever its verdict; other rules go to their own table.
    assert "## Every finding, judged by the recipe designed for it" in md
    overview = md.split("## Every finding")[1].split("## Verdicts per seed")[0]
    for fid, recipe in [
        ("B.early_barriers", "b-barriers"),
        ("B.barriers_later", "b-barriers"),
        ("B.cos_vs_lr", "b-cosine-vs-lr"),
    ]:
        assert f"| `{fid}` | `{recipe}` |" in overview
    assert overview.count("| `B.") == 3
    page = (out / REPORT_HTML).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "judged by the recipe designed for it" in page
    verdicts = pd.read_csv(out / VERDICTS_CSV)
    assert set(verdicts.recipe) == set(QUICK_RECIPES)
    assert set(verdicts.seed.astype(str)) == {"0", "1", "overall"}
    # The summary table: one line per applicable finding, with per-seed marks and overall.
    assert "B.cos_vs_lr" in text and "overall" in text and "smoke test" in text
    assert text.count("reproduce finished") == 1
