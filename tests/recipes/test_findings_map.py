"""Each recipe names the findings it is designed to judge, and every finding has a recipe."""

from __future__ import annotations

import pytest

from sgdscope.errors import ConfigError
from sgdscope.recipes import get_recipe, list_recipes
from sgdscope.report.findings import RULES
from sgdscope.report.findings_beyond import BEYOND_RULES

RULE_IDS = {r.id for r in RULES} | {r.id for r in BEYOND_RULES}


def test_every_named_finding_is_a_rule() -> None:
    for r in list_recipes():
        unknown = set(r.findings) - RULE_IDS
        assert not unknown, (r.name, unknown)


def test_every_finding_has_a_paper_recipe_with_a_small_variant() -> None:
    covered = {f for r in list_recipes(demo=False) if "small" in r.variants for f in r.findings}
    assert RULE_IDS - covered == set()


def test_every_paper_recipe_names_its_findings() -> None:
    assert [r.name for r in list_recipes(demo=False) if not r.findings] == []


def test_beyond_rules_and_their_recipes_agree() -> None:
    for rule in BEYOND_RULES:
        assert rule.id in get_recipe(rule.recipe).findings, rule.id


def test_findings_must_be_a_list_of_ids(tmp_path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        "title: t\npaper: A\nfindings: A.alignment\nconfig: {name: x}\nvariants: {small: {}}\n"
    )
    with pytest.raises(ConfigError, match="findings: expected a list"):
        get_recipe(str(path))
