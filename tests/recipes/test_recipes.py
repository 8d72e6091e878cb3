"""Every recipe validates; every small variant runs on a reduced budget; paper variants fail
cleanly while their dataset is absent."""

import pytest

from sgdscope.config import load_config
from sgdscope.errors import ConfigError, DatasetNotFoundError
from sgdscope.recipes import get_recipe, list_recipes, recipe_names, resolve_source
from sgdscope.store import load_run
from sgdscope.sweep import expand_grid, load_sweep, point_overrides, run_sweep
from sgdscope.train import build_parts

NAMES = recipe_names()
# A few steps are enough to exercise every probe and optimizer of a recipe.
REDUCED = ["train.steps=3", "train.progress=false"]


def test_recipes_cover_both_papers():
    papers = {r.paper for r in list_recipes(demo=False)}
    assert {"A", "B"} <= papers <= {"A", "B", "beyond"}  # "beyond": results after both papers
    assert len(list_recipes(demo=False)) >= 17
    # Every figure/table recipe has both variants; the demo's have small and quick.
    for r in list_recipes():
        assert set(r.variants) == ({"small", "quick"} if r.demo else {"small", "paper"}), r.name
    assert {r.name for r in list_recipes(demo=True)} == {"demo-a", "demo-b"}


@pytest.mark.parametrize(
    ("name", "variant"), [(r.name, v) for r in list_recipes() for v in r.variants]
)
def test_every_variant_and_grid_point_validates(name, variant):
    config, grid, overrides = get_recipe(name).resolve(variant)
    for point in expand_grid(grid):
        load_config(config, overrides + point_overrides(point))


@pytest.mark.parametrize("name", NAMES)
def test_small_variant_builds_every_part(name):
    config, grid, overrides = get_recipe(name).resolve("small")
    for point in expand_grid(grid):
        cfg = load_config(config, overrides + point_overrides(point) + REDUCED)
        parts = build_parts(cfg)
        assert parts.total_steps == 3
        assert {p.name for p in parts.probes.probes} >= {p.name for p in cfg.probes}


def _small_runs():
    out = []
    for r in list_recipes():
        _, grid, _ = r.resolve("small")
        out.append(pytest.param(r.name, marks=pytest.mark.slow) if grid else r.name)
    return out


@pytest.mark.parametrize("name", _small_runs())
def test_small_variant_runs_to_completion(name, tmp_path):
    config, grid, overrides = get_recipe(name).resolve("small")
    # The reduced budget wins over a grid point's own length (the demo's GD points set steps).
    points = [
        {k: v for k, v in p.items() if k not in ("train.steps", "train.epochs")}
        for p in expand_grid(grid)
    ]
    out = run_sweep(
        config, points, tmp_path / name, overrides=overrides + REDUCED, executor="serial"
    )
    summary = load_sweep(out).summary
    assert (summary.status == "finished").all(), summary[["run", "status", "error"]]
    for run in load_sweep(out).runs:
        assert run.scalar("batch_loss").index.tolist() == [0, 1, 2]


def test_paper_variant_needs_its_dataset(tmp_path):
    config, _, overrides = get_recipe("a-eigenvalues").resolve("paper")
    cfg = load_config(config, [*overrides, f"data.root={tmp_path}"])
    with pytest.raises(DatasetNotFoundError, match="sgdscope data download cifar10"):
        build_parts(cfg)


def test_unknown_recipe_suggests():
    with pytest.raises(ConfigError, match="did you mean 'a-eigenvalues'"):
        get_recipe("a-eigenvalue")
    with pytest.raises(ConfigError, match="no variant 'huge'"):
        get_recipe("b-walk-gd").resolve("huge")


def test_resolve_plain_config_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim: {lr: 0.2}\n")
    assert resolve_source(p) == (p, None, [])


def test_cli_run_recipe_with_grid_points_to_sweep(capsys):
    from sgdscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(["run", "a-peak-vs-lr"])
    assert e.value.code == 2
    assert "sgdscope sweep a-peak-vs-lr" in capsys.readouterr().err


def test_cli_recipes_lists_the_figures_then_the_demo(capsys):
    from sgdscope.cli import main

    main(["recipes"])
    out = capsys.readouterr().out
    assert "a-eigenvalues" in out and "b-walk-sgd" in out
    demo = out[out.index("the demo (sgdscope demo)") :]
    assert "demo-a" in demo and "demo-b" in demo and "3 / 3" in demo and "6 / 6" in demo
    assert "demo-a" not in out[: out.index("the demo (sgdscope demo)")]


def test_cli_run_small_recipe(tmp_path, capsys):
    from sgdscope.cli import main

    main(["run", "b-walk-gd", "train.steps=2", "--out", str(tmp_path / "r")])
    r = load_run(tmp_path / "r")
    assert r.status == "finished" and r.config["name"] == "b-walk-gd"
    assert r.array("interp_loss")[1].shape == (2, 11)
