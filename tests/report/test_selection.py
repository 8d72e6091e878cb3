"""One selection of "the SGD runs of a sweep", used by the figures and the findings alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sgdscope.report import REPRODUCED, judge, peak_lambda, sgd_runs
from sgdscope.report._data import open_target

from .conftest import scalar_rows, write_run


def _run(root: Path, name: str, lr: float, peak: float, **kw: object) -> None:
    values = {
        "lambda_1": {0: 1.0, 50: peak, 100: 0.9 * peak},
        "train_loss": {0: 2.0, 100: 0.1},
        "test_acc": {0: 0.1, 100: 0.9},
    }
    write_run(root / "runs" / name, scalar_rows(values), lr=lr, **kw)  # type: ignore[arg-type]


def _sweep(root: Path) -> Path:
    # The trend of paper A holds over the usable SGD runs (three seeds): peak λ₁ lower for
    # larger η.
    for seed in (0, 1, 2):
        _run(root, f"sgd-0.01_seed={seed}", 0.01, 20.0 + seed, seed=seed)
        _run(root, f"sgd-0.1_seed={seed}", 0.1, 10.0 + seed, seed=seed)
    # Each of these would break it if it were counted.
    _run(root, "sgd-1-diverged", 1.0, 1e6, status="diverged")
    _run(root, "sgd-0.5-cyclical", 0.5, 1e5, schedule="cyclical")
    _run(root, "nsgd-0.3", 0.3, 1e4, optim="nsgd", options={"gamma": 0.5})
    return root


def test_selection_keeps_usable_plain_sgd_runs_of_the_common_schedule(tmp_path: Path) -> None:
    sel = sgd_runs(open_target(_sweep(tmp_path)))
    names = [f"sgd-{lr}_seed={s}" for lr in ("0.01", "0.1") for s in (0, 1, 2)]
    assert [r.name for r in sel.runs] == names
    assert sel.frame.run.tolist() == names
    assert sel.frame["peak_lambda_1"].tolist() == [20.0, 21.0, 22.0, 10.0, 11.0, 12.0]
    assert sel.excluded == {
        "nsgd-0.3": "optimizer nsgd, not plain SGD",
        "sgd-0.5-cyclical": "schedule cyclical, not constant",
        "sgd-1-diverged": "status diverged",
    }


def test_figure_and_finding_use_the_same_runs(tmp_path: Path) -> None:
    sweep = open_target(_sweep(tmp_path))
    finding = next(f for f in judge(sweep) if f.id == "A.peak_lower")
    assert finding.verdict == REPRODUCED, finding.text()
    (part,) = finding.parts
    assert part.result is not None and part.result.n == 3  # three seeds, one slope each
    assert {e.run for e in finding.excluded} == {"sgd-1-diverged"}
    fig = peak_lambda(sweep)
    assert fig is not None
    (bars,) = fig.axes[0].containers  # one errorbar series: the η values of the selection
    line = bars.lines[0]
    np.testing.assert_allclose(sorted(line.get_xdata()), [0.01, 0.1])
    np.testing.assert_allclose(sorted(line.get_ydata()), [11.0, 21.0])


def test_empty_selection(tmp_path: Path) -> None:
    _run(tmp_path, "nsgd", 0.1, 5.0, optim="nsgd")
    _run(tmp_path, "nsgd2", 0.2, 5.0, optim="nsgd")
    sel = sgd_runs(open_target(tmp_path))
    assert sel.runs == [] and sel.frame.empty and set(sel.excluded) == {"nsgd", "nsgd2"}
    assert peak_lambda(open_target(tmp_path)) is None
