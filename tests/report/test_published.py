"""The papers' numbers beside ours: recipes' ``published:`` sections parsed and validated, "ours"
computed from the runs each row selects, and printed as paper | ours | ratio."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from sgdscope.errors import ConfigError
from sgdscope.recipes import Published, get_recipe, list_recipes, parse_published
from sgdscope.report import write_report
from sgdscope.report._published import NO_MATCH, compare, compare_text
from sgdscope.store import load_run

from .conftest import write_run

ROW = {"label": "VGG-11, epoch 1", "metric": "epoch_barriers",
       "at": {"model.name": "vgg11", "epoch": 1}, "value": 0}  # fmt: skip


def test_every_packaged_recipe_parses_its_published_section() -> None:
    for r in list_recipes():
        assert r.published is None or isinstance(r.published, Published)
    table = get_recipe("b-barriers").published
    assert table is not None and table.source == "Xing et al. 2018, Table 1"
    vgg = {r.at["epoch"]: r.value for r in table.rows if r.at.get("model.name") == "vgg11"}
    assert vgg == {1: 0, 10: 0, 25: 5, 100: 13}  # paper B, Table 1


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"rows": [ROW]}, "exactly 'source' and 'rows'"),
        ({"source": "x", "rows": []}, "non-empty list"),
        ({"source": "x", "rows": [{**ROW, "metric": "barriers_per_epoch"}]}, "neither a metric"),
        ({"source": "x", "rows": [{**ROW, "value": "zero"}]}, "finite number"),
        ({"source": "x", "rows": [{**ROW, "at": {"epoch": 0}}]}, "1-based"),
        ({"source": "x", "rows": [{**ROW, "colour": "red"}]}, "unknown keys ['colour']"),
        ({"source": "x", "rows": [{**ROW, "at": {"epoch": 1, "step": 3}}]}, "not both"),
    ],
)
def test_bad_sections_say_what_is_wrong(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_published(section, "recipe x")


def test_summary_fields_and_metric_families_are_accepted() -> None:
    p = parse_published(
        {"source": "s", "rows": [{"label": "a", "metric": "final_test_acc", "value": 0.9},
                                 {"label": "b", "metric": "lambda_1", "value": 5, "unit": "x",
                                  "at": {"step": 10}, "note": "read off Fig. 2"}]},
        "r",
    )  # fmt: skip
    assert p is not None and [r.metric for r in p.rows] == ["final_test_acc", "lambda_1"]
    assert p.rows[1].step == 10 and p.rows[1].selectors == {}


def _walk_run(path: Path, seed: int, barriers: dict[int, float], status: str = "finished") -> Path:
    rows = [(10 * (e + 1) - 1, e, {"epoch_barriers": b}, {}) for e, b in barriers.items()]
    run = write_run(path, rows, seed=seed, status=status)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["name"] = "b-barriers"
    cfg["model"] = {"name": "vgg11"}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


def test_ours_is_the_mean_over_matching_valid_runs(tmp_path: Path) -> None:
    runs = [load_run(_walk_run(tmp_path / f"s{s}", s, {0: s, 24: 4.0 + 2 * s})) for s in (0, 1, 2)]
    runs.append(load_run(_walk_run(tmp_path / "bad", 3, {0: 99.0, 24: 99.0}, "diverged")))
    table = compare(runs, get_recipe("b-barriers").published)
    row = table.set_index("label")
    assert row.at["VGG-11, epoch 1", "ours"] == pytest.approx(1.0)  # mean of 0, 1, 2
    assert row.at["VGG-11, epoch 1", "runs"] == 3  # the diverged run is not evidence
    assert math.isnan(row.at["VGG-11, epoch 1", "ratio"])  # the paper says 0
    assert row.at["VGG-11, epoch 25", "ours"] == pytest.approx(6.0)
    assert row.at["VGG-11, epoch 25", "ratio"] == pytest.approx(6.0 / 5.0)
    assert row.at["VGG-11, epoch 25", "sd"] == pytest.approx(2.0)
    assert row.at["VGG-11, epoch 10", "status"] == "not measured in the matching runs"
    assert row.at["ResNet-56, epoch 1", "status"] == NO_MATCH
    text = compare_text(table, "Xing et al. 2018, Table 1")
    assert "VGG-11, epoch 25" in text and "6 ± 2 (n=3)" in text and "1.2" in text
    assert NO_MATCH in text


def test_report_prints_paper_ours_ratio(tmp_path: Path) -> None:
    for s in (0, 1, 2):
        _walk_run(tmp_path / "sweep" / "runs" / f"s{s}", s, {0: 0.0, 24: 5.0})
    page = write_report(tmp_path / "sweep", tmp_path / "out", run_figures=False)
    text = page.read_text(encoding="utf-8")
    assert "The paper&#x27;s numbers beside ours</h2>" in text
    assert "Xing et al. 2018, Table 1" in text and "VGG-11, epoch 100" in text
    assert NO_MATCH in text and "Verdicts per seed</h2>" in text
