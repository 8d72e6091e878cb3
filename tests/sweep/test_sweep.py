import pytest

from sgdscope.errors import ConfigError
from sgdscope.store import load_run
from sgdscope.sweep import expand_grid, load_sweep, point_name, run_sweep

from ..helpers import tiny_config


def test_expand_grid_order_and_names():
    pts = expand_grid({"optim.lr": [0.1, 0.2], "seed": [0, 1]})
    assert pts == [
        {"optim.lr": 0.1, "seed": 0},
        {"optim.lr": 0.1, "seed": 1},
        {"optim.lr": 0.2, "seed": 0},
        {"optim.lr": 0.2, "seed": 1},
    ]
    assert point_name(pts[1]) == "lr=0.1_seed=1"
    assert expand_grid(None) == [{}]
    with pytest.raises(ConfigError, match=r"grid\.seed: must be a non-empty list"):
        expand_grid({"seed": 3})


def test_invalid_point_rejected_before_any_run(tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        run_sweep(tiny_config(), {"optim.lr": [0.1, -1.0]}, tmp_path / "s", executor="serial")
    assert not (tmp_path / "s" / "runs").exists()


def test_failure_isolated_and_finished_runs_skipped(tmp_path):
    cfg = tiny_config(train__steps=4)
    grid = {"model.options.activation": ["tanh", "bogus", "relu"]}
    out = run_sweep(cfg, grid, tmp_path / "s", executor="serial")
    s = load_sweep(out)
    summary = s.summary.set_index("model.options.activation")
    assert summary.loc["tanh", "status"] == "finished"
    assert summary.loc["relu", "status"] == "finished"
    assert summary.loc["bogus", "status"] == "failed"
    assert "activation='bogus'" in summary.loc["bogus", "error"]
    assert (out / "summary.csv").exists()
    assert s.grid_keys == ["model.options.activation"]

    # Re-running skips the finished runs (their files are untouched) and retries the failed one.
    tanh_db = out / "runs" / "activation=tanh" / "metrics.sqlite"
    before = tanh_db.stat().st_mtime_ns
    run_sweep(cfg, grid, out, executor="serial")
    assert tanh_db.stat().st_mtime_ns == before
    assert load_sweep(out).summary.set_index("run").loc["activation=bogus", "status"] == "failed"


def test_parallel_workers_match_serial(tmp_path):
    cfg = tiny_config(train__steps=5)
    grid = {"optim.lr": [0.05, 0.2]}
    a = run_sweep(cfg, grid, tmp_path / "par", workers=2, executor="local")
    b = run_sweep(cfg, grid, tmp_path / "ser", executor="serial")
    for name in ("lr=0.05", "lr=0.2"):
        ra = load_run(a / "runs" / name).scalars
        rb = load_run(b / "runs" / name).scalars
        assert ra.equals(rb)  # one torch thread everywhere: identical numbers


def test_different_sweep_in_same_dir_refused(tmp_path):
    from sgdscope.errors import SgdscopeError

    cfg = tiny_config(train__steps=2)
    run_sweep(cfg, {"seed": [0]}, tmp_path / "s", executor="serial")
    with pytest.raises(SgdscopeError, match="different sweep"):
        run_sweep(cfg, {"seed": [1]}, tmp_path / "s", executor="serial")
