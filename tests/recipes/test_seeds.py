"""Seeds in recipes (top level and per variant) and on the command line (`sweep --seeds`)."""

from __future__ import annotations

import pytest
import yaml

from sgdscope.errors import ConfigError
from sgdscope.recipes import get_recipe, resolve_seeds
from sgdscope.sweep import load_sweep

from ..helpers import tiny_config


def _recipe(tmp_path, seeds=None, small_seeds=None, grid=None):
    data = {
        "title": "t",
        "paper": "B",
        "config": tiny_config(train__steps=2),
        "variants": {"small": {}, "paper": {}},
    }
    if grid is not None:
        data["grid"] = grid
    if seeds is not None:
        data["seeds"] = seeds
    if small_seeds is not None:
        data["variants"]["small"]["seeds"] = small_seeds
    p = tmp_path / "rec.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_top_level_seeds_and_variant_override(tmp_path):
    r = get_recipe(str(_recipe(tmp_path, seeds=[0, 1, 2], small_seeds=[5, 6])))
    assert r.variant_seeds("small") == [5, 6]
    assert r.variant_seeds("paper") == [0, 1, 2]
    assert r.is_sweep
    # The config, grid and overrides a variant resolves to are unchanged by seeds.
    assert r.resolve("small") == (r.config, None, [])


def test_recipe_without_seeds(tmp_path):
    p = _recipe(tmp_path)
    assert get_recipe(str(p)).variant_seeds("small") is None
    assert resolve_seeds(p) is None
    assert get_recipe("a-eigenvalues").variant_seeds("paper") is None


def test_plain_config_has_no_seeds(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim: {lr: 0.2}\n")
    assert resolve_seeds(p) is None


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"seeds": [0, 0]}, "recipe rec: seeds: seeds must be distinct"),
        ({"seeds": "0,1"}, "recipe rec: seeds: must be a non-empty list"),
        ({"small_seeds": [-1]}, r"variants\.small\.seeds: seeds must be non-negative"),
    ],
)
def test_bad_recipe_seeds_refused_on_load(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        get_recipe(str(_recipe(tmp_path, **kw)))


def test_cli_sweep_seeds_option_replaces_recipe_seeds(tmp_path, capsys):
    from sgdscope.cli import main

    p = _recipe(tmp_path, seeds=[0, 1, 2], grid={"optim.lr": [0.1]})
    out = tmp_path / "s"
    main(["sweep", str(p), "--seeds", "3,4", "--executor", "serial", "--out", str(out)])
    s = load_sweep(out)
    assert s.summary.run.tolist() == ["lr=0.1_seed=3", "lr=0.1_seed=4"]
    assert (s.summary.status == "finished").all()


def test_cli_sweep_uses_recipe_seeds(tmp_path):
    from sgdscope.cli import main

    p = _recipe(tmp_path, small_seeds=[1, 2])
    out = tmp_path / "s"
    main(["sweep", str(p), "--executor", "serial", "--out", str(out)])
    assert load_sweep(out).summary.run.tolist() == ["seed=1", "seed=2"]


def test_cli_bad_seeds_is_one_line_error(tmp_path, capsys):
    from sgdscope.cli import main

    with pytest.raises(SystemExit) as e:
        main(["sweep", str(_recipe(tmp_path)), "--seeds", "0-", "--out", str(tmp_path / "s")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--seeds: expected comma-separated seeds" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()
