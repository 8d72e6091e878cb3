"""`sgdscope demo --quick`: the demo recipes run as sweeps, reports are written, the summary, the
papers' tables and the verdicts are printed, and the output says it is a smoke test."""

from sgdscope.cli import main
from sgdscope.cli.demo_cmd import SMOKE_TEST
from sgdscope.recipes import list_recipes


def test_demo_quick_end_to_end(tmp_path, capsys):
    try:
        main(["demo", "--quick", "--workers", "1", "--out", str(tmp_path)])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    (root,) = list(tmp_path.iterdir())
    demos = [r.name for r in list_recipes(demo=True)]
    assert demos == ["demo-a", "demo-b"]
    for name in demos:
        assert (root / name / "report.html").stat().st_size > 10_000
        assert (root / name / "summary.csv").exists()
        assert (root / name / "sweep.yaml").exists()
    assert "Paper A — sharpest directions" in out and "Paper B — a walk with SGD" in out
    assert "reproduced" in out  # verdict lines
    assert "height mean" in out and "barriers" in out  # the walk table
    assert "λ₁ peak" in out and "align random" in out and "ΔL(α=2)" in out  # the sharpness table
    assert "peak_lambda_1" in out and "mean_height" in out  # the summaries
    assert out.count("finished") >= 3 + 6  # every run of both sweeps
    # Said plainly, before the runs and under each part's verdicts.
    assert out.count("smoke test") >= 3 and " ".join(SMOKE_TEST.split()) in " ".join(out.split())
