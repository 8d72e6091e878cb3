"""`sgdscope demo --quick`: both papers' sweeps run, reports are written, verdicts printed."""

from sgdscope.cli import main


def test_demo_quick_end_to_end(tmp_path, capsys):
    try:
        main(["demo", "--quick", "--workers", "1", "--out", str(tmp_path)])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    (root,) = list(tmp_path.iterdir())
    for part in ("paper-a", "paper-b"):
        assert (root / part / "report.html").stat().st_size > 10_000
        assert (root / part / "summary.csv").exists()
    assert "Paper A — sharpest directions" in out and "Paper B — a walk with SGD" in out
    assert "reproduced" in out  # verdict lines
    assert "height (nats)" in out and "barriers" in out  # the walk table
    assert "λ₁ peak (step)" in out and "align random" in out  # the sharpness table
    assert out.count("finished") >= 8  # 2 + 6 runs, all finished
