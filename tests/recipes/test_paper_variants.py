"""The paper variants hold the papers' settings: one row per quoted value (recipe, key, expected),
every grid point resolves, validates and builds its model, probes and schedule, and the
``published:`` numbers point at runs the paper variant makes.

Values are read from the validated config of each grid point of a recipe's paper variant. A row
whose key varies over the grid compares the set of values; ``where`` restricts a row to the points
whose config matches (e.g. one panel of a figure).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from sgdscope import metrics as M
from sgdscope.config import load_config
from sgdscope.config.grid import expand_grid, point_overrides
from sgdscope.models import build_model
from sgdscope.optim.schedules import make_schedule
from sgdscope.recipes import get_recipe, list_recipes
from sgdscope.store.summary import SUMMARY_FIELDS
from sgdscope.train.build import build_probes

PAPER_RECIPES = [r.name for r in list_recipes(demo=False)]

# Input shape and class count of each dataset a paper variant names (for building its models
# without the files): CIFAR-10, MNIST, Tiny-ImageNet (all 200 classes), PTB (20-token windows,
# 10 000 words).
SHAPES = {
    "cifar10": ((3, 32, 32), 10),
    "mnist": ((1, 28, 28), 10),
    "tinyimagenet": ((3, 64, 64), 200),
    "ptb": ((20,), 10000),
}


@dataclass(frozen=True)
class Row:
    recipe: str
    key: str
    expected: Any
    where: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def V(*values: Any) -> frozenset:
    """The set of values a key takes over the (matching) grid points."""
    return frozenset(values)


A, AP, AC = "paper A", "paper A poster", "paper A code"
B, BC = "paper B", "paper B code"
CIFAR_A = {"data.name": "cifar10"}
ROWS = [
    # ---- paper A, Fig. 1
    Row("a-eigenvalues-top30", "model.name", "simplecnn", source=A + " Fig. 1"),
    Row("a-eigenvalues-top30", "data.name", "cifar10", source=A + " Fig. 1"),
    Row("a-eigenvalues-top30", "optim.lr", 0.005, source=A + " Fig. 1 caption"),
    Row("a-eigenvalues-top30", "eigenbasis.k", 30, source=A + " Fig. 1 caption: top 30"),
    Row("a-eigenvalues-top30", "data.probe_fraction", 0.05, source=AP + ": ~5% of train"),
    Row("a-eigenvalues-top30", "data.probe_size", None, source=AP),
    Row("a-eigenvalues-top30", "optim.momentum", 0.0, source=AP + ": no momentum"),
    # ---- paper A, Fig. 2 (both panels)
    Row("a-eigenvalues", "model.name", V("simplecnn", "resnet32"), source=A + " Fig. 2"),
    Row("a-eigenvalues", "optim.lr", 0.1, source=A + " Fig. 2 caption"),
    Row("a-eigenvalues", "train.batch_size", 128, source=A + " Fig. 2 caption"),
    Row("a-eigenvalues", "eigenbasis.k", 10, source=A + " Fig. 2: top 10"),
    Row("a-eigenvalues", "data.probe_fraction", 0.05, source=AP),
    Row("a-eigenvalues", "optim.momentum", 0.0, source=AP),
    # ---- paper A, Fig. 3
    Row("a-full-batch", "model.name", "resnet32", source=A + " Fig. 3"),
    Row("a-full-batch", "data.subset", 2500, source=A + " Fig. 3: 2500 points"),
    Row("a-full-batch", "train.batch_size", "full", source=A + " Fig. 3: full batch"),
    Row("a-full-batch", "optim.lr", V(0.01, 0.05), source=A + " Fig. 3"),
    Row("a-full-batch", "eigenbasis.k", 10, source=A + " Fig. 3: top 10"),
    # ---- paper A, Fig. 4 (top: learning rate; bottom: batch size)
    Row("a-peak-vs-lr", "model.name", V("resnet32", "simplecnn", "lstm_lm"), source=A + " Fig. 4"),
    Row("a-peak-vs-lr", "optim.lr", V(0.1, 0.01, 0.001), {"model.name": "resnet32"}, AC),
    Row("a-peak-vs-lr", "optim.lr", V(0.1, 0.01, 0.001), {"model.name": "simplecnn"}, AC),
    Row("a-peak-vs-lr", "train.batch_size", 128, CIFAR_A, AC + " noise_grid: bs=128"),
    Row("a-peak-vs-lr", "train.batch_size", 20, {"model.name": "lstm_lm"}, AC + " ptb.sh"),
    Row("a-peak-vs-lr", "eigenbasis.k", 2, source=A + " Fig. 4: two largest"),
    Row("a-peak-vs-batch", "model.name", V("resnet32", "simplecnn", "lstm_lm"), source=A),
    Row("a-peak-vs-batch", "train.batch_size", V(8, 128, 1024), {"model.name": "resnet32"}, AC),
    Row("a-peak-vs-batch", "train.batch_size", V(8, 128, 1024), {"model.name": "simplecnn"}, AC),
    Row("a-peak-vs-batch", "optim.lr", 0.05, CIFAR_A, AC + " noise_grid: lr=0.05"),
    Row("a-peak-vs-batch", "optim.lr", 1.0, {"model.name": "lstm_lm"}, AC + " ptb.sh: lr=1.0"),
    Row("a-peak-vs-batch", "train.batch_size", V(20, 64, 256), {"model.name": "lstm_lm"}, AC),
    # ---- paper A, Fig. 5
    Row("a-alignment", "eigenbasis.k", 5, source=A + " Fig. 5: top 5"),
    Row("a-alignment", "probes.1.options.k", 5, source=A + " Fig. 5: top 5"),
    Row("a-alignment", "optim.lr", V(0.1, 0.01, 0.001), {"model.name": "resnet32"}, AC),
    Row("a-alignment", "train.batch_size", 128, source=AC),
    # ---- paper A, alpha test and loss along e_1
    Row("a-alpha-test", "probes.1.options.alphas", [0.5, 1, 2], source=AP + ": alpha 0.5, 1, 2"),
    Row("a-alpha-test", "optim.lr", 0.01, source=AC + " sharp_analysis_early.sh"),
    Row("a-alpha-test", "eigenbasis.k", 5, source=AC),
    Row("a-eigen-loss", "optim.lr", 0.005, {"model.name": "simplecnn"}, AP),
    Row("a-eigen-loss", "optim.lr", 0.025, {"model.name": "resnet32"}, AP),
    Row("a-eigen-loss", "train.batch_size", 128, source=AP + ": S = 128"),
    Row("a-eigen-loss", "eigenbasis.k", 1, source=AP + ": the top eigenvector"),
    # ---- paper A, top-only / remove-top
    Row("a-projected", "eigenbasis.k", 1, source=AP + ": the top eigenvector"),
    Row("a-projected", "optim.options.k", 1, {"optim.name": "projected_sgd"}, AP),
    Row(
        "a-projected",
        "optim.options.mode",
        V("top_only", "remove_top"),
        {"optim.name": "projected_sgd"},
        AP,
    ),
    Row("a-projected", "model.name", "simplecnn", source=AC + " escaping_ablation"),
    Row("a-projected", "optim.lr", 0.005, source=AC + " escaping_ablation"),
    Row("a-projected", "eigenbasis.every", 1, source=AC + ": Lanczos after every step"),
    # ---- paper A, NSGD table
    Row("a-nsgd", "model.name", "resnet32", source=AP + ": Results for Resnet-32"),
    Row(
        "a-nsgd",
        "optim.options.gamma",
        V(0.01, 0.1, 1.0, 10.0),
        {"optim.name": "nsgd", "optim.options.subspace": "top"},
        AP + " table",
    ),
    Row("a-nsgd", "optim.options.k", 5, {"optim.name": "nsgd"}, AP + ": 5 sharpest directions"),
    Row("a-nsgd", "optim.lr", 0.01, {"optim.name": "nsgd"}, AC + " csgd/resnet.sh"),
    Row("a-nsgd", "optim.lr", V(0.1, 0.0025, 0.005), {"optim.name": "sgd"}, AP + " table"),
    Row("a-nsgd", "eigenbasis.every", "epoch", source=AC + ": once per epoch"),
    Row("a-nsgd", "optim.momentum", 0.0, source=AP),
    Row("a-nsgd", "train.eval_every", 1, source=AP + ": val. acc. at epoch 50"),
    # ---- paper B, Table 1
    Row("b-barriers", "model.name", V("vgg11", "resnet56", "mlp"), source=B + " Table 1"),
    Row("b-barriers", "optim.lr", 0.1, source=B + " §3: learning rate 0.1"),
    Row("b-barriers", "train.batch_size", 100, source=B + " §3: batch size 100"),
    Row("b-barriers", "train.epochs", 100, {"data.name": "cifar10"}, B + " §3.1"),
    Row("b-barriers", "train.epochs", 40, {"model.name": "mlp"}, B + " §3.1: 40 epochs"),
    Row("b-barriers", "probes.0.epochs", [0, 9, 24, 99], {"data.name": "cifar10"}, B + " Table 1"),
    Row("b-barriers", "model.options.widths", [500, 350], {"model.name": "mlp"}, BC),
    # ---- paper B, Tables 2 and 3
    Row("b-height", "optim.lr", V(0.1, 0.05), {"model.name": "vgg11", "data.name": "cifar10"}, B),
    Row("b-height", "optim.lr", V(0.3, 0.15), {"model.name": "resnet56"}, B + " Table 2"),
    Row("b-height", "optim.lr", V(0.5, 0.1), {"data.name": "tinyimagenet"}, B + " Table 3"),
    Row("b-height", "train.batch_size", 100, source=B + " §3"),
    Row("b-height", "probes.0.epochs", [0, 9, 24, 99], source=B + " Tables 2-3"),
    # ---- paper B, figures
    Row("b-walk-gd", "train.batch_size", "full", source=B + " Fig. 1: GD"),
    Row("b-walk-gd", "optim.lr", 0.1, source=BC + " README: gd.py --lr 0.1"),
    Row("b-walk-gd", "model.name", V("vgg11", "resnet56", "mlp"), source=B + " Figs. 1, 10, 18"),
    Row("b-walk-sgd", "optim.lr", 0.1, source=B + " §3"),
    Row("b-walk-sgd", "train.batch_size", 100, source=B + " §3"),
    Row("b-walk-sgd", "probes.0.epochs", [0, 1, 24, 99], {"model.name": "resnet56"}, B + " App. A"),
    Row("b-cosine-vs-batch", "optim.lr", 0.1, source=B + " §3: learning rate 0.1"),
    Row("b-cosine-vs-lr", "train.batch_size", 100, source=B + " §3: batch size 100"),
    Row("b-noisy-gd", "train.batch_size", "full", {"optim.name": "noisy_gd"}, B + " §4"),
    Row("b-noisy-gd", "optim.options.c", V(0.02, 0.3), {"optim.name": "noisy_gd"}, BC),
    Row("b-noisy-gd", "optim.lr", 0.1, source=BC + " isotropic_noise.py"),
    Row("b-spectral-norm", "model.name", V("vgg11", "resnet56"), source=B + " Figs. 3, 6"),
    Row("b-spectral-norm", "eigenbasis.bn_mode", "ghost", source=B + " fn. 5 + code"),
    Row("b-spectral-norm", "eigenbasis.ghost_batch_size", 500, source=BC + " spectral_norm.py"),
    Row("b-spectral-norm", "eigenbasis.lambda_min", True, source=B + " fn. 5: spectral norm"),
    Row("b-spectral-norm", "optim.lr", 0.1, source=B + " §3"),
    Row("b-spectral-norm", "train.batch_size", 100, source=B + " §3"),
    Row("b-spectral-norm", "train.epochs", 100, source=B + " §3.1"),
    Row("b-schedules", "train.batch_size", 100, source=B + " App. C: batch size 100"),
    Row("b-schedules", "model.name", V("vgg11", "resnet56"), source=B + " Figs. 7-8"),
    Row(
        "b-schedules",
        "schedule.name",
        V("step_decay", "cyclical", "trapezoid"),
        {"model.name": "vgg11"},
        B + " App. C",
    ),
    Row(
        "b-schedules",
        "schedule.name",
        V("step_decay", "cyclical", "trapezoid"),
        {"model.name": "resnet56"},
        B + " App. C",
    ),
    # ---- beyond the papers
    Row("eos-gd", "train.batch_size", "full", source="Cohen et al. 2021: full-batch GD"),
    Row("eos-gd", "data.subset", 5000, source="Cohen et al. 2021: a 5k subset of CIFAR-10"),
    Row("eos-gd", "model.options.widths", [200, 200], source="Cohen et al. 2021: FC, 2 x 200"),
    Row("eos-gd", "model.options.activation", "tanh", source="Cohen et al. 2021: tanh"),
    Row("eos-adam", "optim.name", "adam", source="Cohen et al. 2022: Adam"),
    Row("eos-adam", "train.batch_size", "full", source="Cohen et al. 2022: full batch"),
    Row("eoss-sgd", "optim.name", "sgd", source="Andreyev & Beneventano 2024: plain SGD"),
    Row("dom-bulk", "optim.name", V("sgd", "projected_sgd"), source="Song, Ahn & Yun 2024"),
    Row("dom-bulk", "eigenbasis.k", 10, source="Song, Ahn & Yun 2024: k = number of classes"),
]
# Paper B's measurements are in BatchNorm train mode (B §3.1 fn. 5); its weight decay is 1e-4.
for _name in ("b-barriers", "b-height", "b-walk-gd", "b-walk-sgd"):
    ROWS.append(Row(_name, "probes.0.options.bn_mode", "train", source=B + " fn. 5"))
for _name in PAPER_RECIPES:
    if _name.startswith("b-"):
        ROWS.append(Row(_name, "optim.weight_decay", 0.0001, source=BC + " --wdecay 1e-4"))


def _get(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


@functools.cache
def _paper_configs(name: str) -> tuple[dict[str, Any], ...]:
    """The validated config (as a dict) of every grid point of the paper variant."""
    config, grid, overrides = get_recipe(name).resolve("paper")
    return tuple(
        load_config(config, overrides + point_overrides(p)).model_dump() for p in expand_grid(grid)
    )


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b)
    return a == b


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.recipe}:{r.key}:{r.where or ''}")
def test_paper_variant_holds_the_quoted_value(row):
    configs = _paper_configs(row.recipe)
    matching = [c for c in configs if all(_same(_get(c, k), v) for k, v in row.where.items())]
    assert matching, f"no paper grid point of {row.recipe} matches {row.where}"
    values = [_get(c, row.key) for c in matching]
    if isinstance(row.expected, frozenset):
        got = {_hashable(v) for v in values}
        assert len(got) == len(row.expected), (row, got)
        for e in row.expected:
            assert any(_same(g, e) for g in got), (row, got)
    else:
        for v in values:
            assert _same(v, row.expected), f"{row.recipe} {row.key}: {v!r} != {row.expected!r}"


def test_every_recipe_has_quoted_rows():
    assert {r.recipe for r in ROWS} == set(PAPER_RECIPES)


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_points_build_their_model_probes_and_schedule(name):
    for cfg in _paper_configs(name):
        shape, classes = SHAPES[cfg["data"]["name"]]
        model = cfg["model"]
        build_model(model["name"], shape, classes, **model["options"])
        rc = load_config(cfg)
        build_probes(rc, total_steps=100)
        sched = cfg["schedule"]
        make_schedule(
            sched["name"],
            lr=cfg["optim"]["lr"],
            steps_per_epoch=10,
            total_steps=1000,
            **sched["options"],
        )


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_paper_variant_says_whether_it_is_complete(name):
    r = get_recipe(name)
    assert r.paper_complete is not None, f"{name}: add paper_variant: complete or a list"
    if not r.paper_complete:
        assert all(len(d) > 20 for d in r.paper_variant)


@pytest.mark.parametrize("name", PAPER_RECIPES)
def test_small_variant_sweeps_at_least_three_seeds(name):
    seeds = get_recipe(name).variant_seeds("small")
    assert seeds is not None and len(seeds) >= 3


def _published(name: str) -> list[dict[str, Any]]:
    import yaml

    data = yaml.safe_load(get_recipe(name).path.read_text())
    pub = data.get("published")
    if pub is None:
        return []
    assert isinstance(pub["source"], str) and pub["source"]
    return pub["rows"]


WALK_EPOCH_METRICS = {M.EPOCH_BARRIERS, M.EPOCH_HEIGHT_MEAN, M.EPOCH_HEIGHT_STD}
PUBLISHED = [(n, i) for n in PAPER_RECIPES for i in range(len(_published(n)))]


def test_tables_carry_the_papers_numbers():
    """Each recipe of a table (and Fig. 1's stated lambda_max) carries published rows."""
    counts = {n: len(_published(n)) for n in PAPER_RECIPES}
    assert counts["b-barriers"] == 11  # Table 1: 4 + 4 + 3 cells
    assert counts["b-height"] == 48  # Tables 2-3: 6 rows x 4 epochs x (mean, spread)
    assert counts["a-nsgd"] == 42  # NSGD table: 7 rows x 6 columns
    assert counts["a-eigenvalues-top30"] == 1


@pytest.mark.parametrize(("name", "i"), PUBLISHED, ids=lambda x: str(x))
def test_published_row_points_at_a_run_of_the_paper_variant(name, i):
    row = _published(name)[i]
    assert set(row) <= {"label", "metric", "at", "value", "unit", "note"}, row
    assert isinstance(row["label"], str) and row["label"]
    assert isinstance(row["value"], (int, float)) and not isinstance(row["value"], bool)
    metric = row["metric"]
    assert metric in SUMMARY_FIELDS or M.describe(metric) is not None, metric
    at = dict(row["at"])
    epoch, step = at.pop("epoch", None), at.pop("step", None)
    points = [c for c in _paper_configs(name) if all(_same(_get(c, k), v) for k, v in at.items())]
    assert points, f"{name}: no paper grid point matches {row['at']}"
    if epoch is not None:
        assert isinstance(epoch, int) and epoch >= 1
        for c in points:
            assert epoch <= c["train"]["epochs"], (row, c["train"])
            if metric in WALK_EPOCH_METRICS:
                walked = c["probes"][0]["epochs"]
                assert epoch - 1 in walked, f"{row['label']}: epoch {epoch} is not walked"
    if step is not None:
        assert isinstance(step, int) and step >= 0


def test_published_rows_of_a_table_are_distinct():
    for name in PAPER_RECIPES:
        keys = [(r["metric"], tuple(sorted(r["at"].items()))) for r in _published(name)]
        assert len(keys) == len(set(keys)), name


def test_cli_recipes_lists_completeness(tmp_path, capsys):
    from sgdscope.cli import _completeness, main

    r = get_recipe("b-barriers")
    assert _completeness(r) == f"{len(r.paper_variant)} differences"
    p = tmp_path / "rec.yaml"
    p.write_text(r.path.read_text().replace("paper_variant:", "paper_variant: complete\nold:"))
    assert _completeness(get_recipe(str(p))) == "complete"
    main(["recipes"])
    out = capsys.readouterr().out
    # Rich wraps the table to the terminal: look for the column's words, not whole cells.
    assert "paper" in out and "variant" in out and "differen" in out


def test_readme_lists_every_recipe():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in PAPER_RECIPES:
        r = get_recipe(name)
        status = "complete" if r.paper_complete else "differs (listed in the recipe)"
        assert f"| {r.paper} | `{name}` | {r.reproduces} — {r.title} | {status} |" in readme, name
