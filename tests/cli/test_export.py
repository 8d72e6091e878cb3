"""`sgdscope export`: one run or a folder of runs; one line and exit 2 on bad input."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd

from sgdscope.cli import main
from sgdscope.store import MetricsStore, load_run


def _main(args):
    try:
        main(args)
    except SystemExit as e:
        return e.code
    return 0


def _run(path, arrays=True):
    path.mkdir(parents=True)
    s = MetricsStore(path / "metrics.sqlite")
    for t in range(4):
        s.write_step(t, 0, {"loss": 1.0 / (t + 1)}, {"eig": np.arange(3.0) * t} if arrays else {})
    s.set_status("finished")
    s.close()
    return path


def test_export_one_run(tmp_path, capsys):
    r = _run(tmp_path / "runs" / "a")
    assert _main(["export", str(r), "--format", "csv", "--out", str(tmp_path / "a.csv")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "a.csv")
    assert err.strip() == (
        "note: csv holds scalars only; arrays (eig) were left out: use --format parquet or jsonl"
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "a.csv"), load_run(r).scalars, check_dtype=False, check_exact=True
    )
    assert _main(["export", str(r), "-f", "PARQUET"]) == 0  # default: beside the run
    assert capsys.readouterr().out.strip() == str((tmp_path / "runs" / "a.parquet").resolve())


def test_export_folder_of_runs(tmp_path, capsys):
    _run(tmp_path / "sweep" / "p1")
    _run(tmp_path / "sweep" / "nested" / "p2", arrays=False)
    code = _main(["export", str(tmp_path / "sweep"), "-f", "jsonl", "-o", str(tmp_path / "x")])
    assert code == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "x/nested/p2.jsonl"), str(tmp_path / "x/p1.jsonl")]
    assert err.strip() == "exported 2 runs (jsonl)"


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    r = _run(tmp_path / "r")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    cases = {
        ("export", str(r), "-f", "parqet"): "error: unknown export format 'parqet'; did you mean "
        "'parquet'? (formats: csv, parquet, jsonl, tensorboard)",
        ("export", str(tmp_path / "nope")): f"error: '{tmp_path / 'nope'}' does not exist",
        ("export", str(tmp_path / "empty")): f"error: no runs in '{tmp_path / 'empty'}' "
        "(no folder at or below it holds a metrics.sqlite)",
        ("export", str(tmp_path / "file")): f"error: '{tmp_path / 'file'}' is not a run "
        "directory or a folder of runs",
    }
    for args, line in cases.items():
        assert _main(list(args)) == 2, args
        out, err = capsys.readouterr()
        assert err.strip() == line and not out
    assert _main(["export", str(r), "-o", str(tmp_path / "file" / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write '{tmp_path / 'file' / 'x.csv'}': ")
    assert err.endswith("; choose another --out") and "\n" not in err


def test_unwritable_out_from_a_shell(tmp_path):
    r = _run(tmp_path / "r")
    (tmp_path / "file").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "sgdscope", "export", str(r), "-f", "tensorboard", "-o",
         str(tmp_path / "file")],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: cannot write '{tmp_path / 'file'}': File exists; choose another --out"
    )


def test_help_has_an_example(capsys):
    assert _main(["export", "--help"]) == 0
    assert "Example: sgdscope export" in capsys.readouterr().out
