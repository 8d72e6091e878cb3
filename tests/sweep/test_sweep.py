import pytest

from sgdscope.errors import ConfigError, SgdscopeError
from sgdscope.store import load_run
from sgdscope.sweep import expand_grid, grid_keys, load_sweep, point_name, run_sweep

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
    cfg = tiny_config(train__steps=2)
    run_sweep(cfg, {"seed": [0]}, tmp_path / "s", executor="serial")
    with pytest.raises(SgdscopeError, match="different sweep"):
        run_sweep(cfg, {"seed": [1]}, tmp_path / "s", executor="serial")


# --------------------------------------------------------------------------- seeds as an axis
def test_seeds_cross_every_grid_point_seed_fastest():
    pts = expand_grid({"optim.lr": [0.1, 0.2]}, seeds=[0, 1, 2])
    assert [point_name(p) for p in pts] == [
        "lr=0.1_seed=0",
        "lr=0.1_seed=1",
        "lr=0.1_seed=2",
        "lr=0.2_seed=0",
        "lr=0.2_seed=1",
        "lr=0.2_seed=2",
    ]
    explicit = expand_grid([{"optim.name": "sgd"}, {"optim.name": "nsgd"}], seeds=[4, 5])
    assert explicit == [
        {"optim.name": "sgd", "seed": 4},
        {"optim.name": "sgd", "seed": 5},
        {"optim.name": "nsgd", "seed": 4},
        {"optim.name": "nsgd", "seed": 5},
    ]
    assert expand_grid(None, seeds=[0, 1]) == [{"seed": 0}, {"seed": 1}]
    assert grid_keys({"optim.lr": [0.1]}, seeds=[0, 1]) == ["optim.lr", "seed"]


@pytest.mark.parametrize(
    "seeds, match",
    [
        ([], "non-empty list"),
        (3, "non-empty list"),
        ("0,1", "non-empty list"),
        ([0, -1], "non-negative integers, got -1"),
        ([0, 1.5], "non-negative integers, got 1.5"),
        ([True], "non-negative integers"),
        ([0, 0], "distinct"),
    ],
)
def test_bad_seeds_refused(seeds, match):
    with pytest.raises(ConfigError, match=match):
        expand_grid({"optim.lr": [0.1]}, seeds=seeds)


def test_seed_in_grid_and_seeds_conflict():
    with pytest.raises(ConfigError, match="list the seeds once"):
        expand_grid({"seed": [0, 1]}, seeds=[0, 1])


def test_parse_seeds():
    from sgdscope.config.grid import parse_seeds

    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-3, 7") == [0, 1, 2, 3, 7]
    for bad in ("a", "3-1", "0,,1", "-1", "0,0"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_sweep_over_seeds_names_runs_and_reads_back(tmp_path):
    cfg = tiny_config(train__steps=2)
    out = run_sweep(cfg, {"optim.lr": [0.1]}, tmp_path / "s", executor="serial", seeds=[0, 1])
    s = load_sweep(out)
    assert s.seeds == [0, 1]
    assert s.grid_keys == ["optim.lr", "seed"]
    assert s.summary.run.tolist() == ["lr=0.1_seed=0", "lr=0.1_seed=1"]
    assert s.summary.seed.tolist() == [0, 1]
    assert [r.config["seed"] for r in s.runs] == [0, 1]
    # Different seeds give different runs; the same sweep again skips both.
    a, b = (r.scalar("batch_loss") for r in s.runs)
    assert not a.equals(b)
    run_sweep(cfg, {"optim.lr": [0.1]}, out, executor="serial", seeds=[0, 1])
    with pytest.raises(SgdscopeError, match="seeds"):
        run_sweep(cfg, {"optim.lr": [0.1]}, out, executor="serial", seeds=[0, 1, 2])


def test_sweep_without_seeds_keeps_its_spec(tmp_path):
    """Sweeps written before seeds existed (no seeds key) still match and read back."""
    import yaml

    out = run_sweep(tiny_config(train__steps=2), {"optim.lr": [0.1]}, tmp_path / "s",
                    executor="serial")  # fmt: skip
    assert "seeds" not in yaml.safe_load((out / "sweep.yaml").read_text())
    assert load_sweep(out).seeds is None
