"""The compiler: shipped policy on real scenarios, packing, refusals, cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.errors import EngineLimitError
from engine.policy.compiler import DurableBackend, compile_policy, compiled_versions
from engine.policy.loader import load
from tests.engine.policy.conftest import (
    Pair,
    classify_rule,
    pair_from,
    scenarios,
    write_rules,
)

Make = Callable[..., Pair]
SCENARIOS = scenarios()


@pytest.mark.parametrize(("name", "facts"), SCENARIOS, ids=[n for n, _ in SCENARIOS])
def test_shipped_policy_matches_like_python_on_every_stage(
    shipped: Pair, name: str, facts: dict[str, Any]
) -> None:
    for stage in shipped.durable.source.rules:
        durable = shipped.durable.evaluate(stage, facts)
        python = shipped.python.evaluate(stage, facts)
        assert durable.rule_ids == python.rule_ids, stage
        assert durable.policy_version == shipped.python.version


def test_shipped_scenarios_classify_as_expected_somewhere(shipped: Pair) -> None:
    matched = [shipped.matched(facts) for _, facts in SCENARIOS]
    assert all(matched), "every scenario matches at least one classify rule"


def test_a_rule_without_when_always_matches(classify: Make) -> None:
    pair = classify(("always", None), ("manual", {"alert.kind": "manual"}))
    assert pair.matched({}) == {"always"}
    assert pair.matched({"alert": {"kind": "manual"}}) == {"always", "manual"}


def test_rule_with_too_many_groups_is_refused_with_e301(tmp_path: Path) -> None:
    when = {"all": [{"any": [{f"a.b{n}": 1}, {f"a.c{n}": 2}]} for n in range(16)]}
    with pytest.raises(EngineLimitError) as refused:
        pair_from(write_rules(tmp_path, [classify_rule("deep", when)]))
    problem = refused.value.problems[0]
    assert (problem.code, problem.location.rule_id) == ("E301", "deep")
    assert "needs 17 nested groups" in problem.message
    assert "at most 15 per rule: split it into several rules" in problem.message


def test_any_with_too_many_conditions_at_once_is_refused_with_e302(
    tmp_path: Path,
) -> None:
    when = {"any": [{f"snapshot.extra.v{n}": {"gte": n}} for n in range(70)]}
    with pytest.raises(EngineLimitError) as refused:
        pair_from(write_rules(tmp_path, [classify_rule("wide", when)]))
    problem = refused.value.problems[0]
    assert (problem.code, problem.location.rule_id) == ("E302", "wide")
    assert "up to 70 of its conditions can hold at once" in problem.message
    assert "split its `any`" in problem.message


def test_item_conditions_inside_item_conditions_are_refused_with_e305(
    tmp_path: Path,
) -> None:
    inner = {"tags": {"any_item": {"name": "x"}}}
    when = {"snapshot.pm2.processes": {"any_item": inner}}
    with pytest.raises(EngineLimitError) as refused:
        pair_from(write_rules(tmp_path, [classify_rule("nested", when)]))
    problem = refused.value.problems[0]
    assert (problem.code, problem.location.rule_id) == ("E305", "nested")
    assert "any_item inside another any_item/all_items" in problem.message


def test_a_refused_policy_creates_no_ruleset(tmp_path: Path) -> None:
    good = classify_rule("good", {"alert.kind": "manual"})
    bad = classify_rule("bad", {"snapshot.memory.percent": {"eq": float("nan")}})
    before = compiled_versions()
    with pytest.raises(EngineLimitError):
        pair_from(write_rules(tmp_path, [good, bad]))
    assert compiled_versions() == before


def test_item_quantifiers_follow_the_reference(classify: Make) -> None:
    pair = classify(
        ("any-big", {"p.items": {"any_item": {"mb": {"gte": 900}}}}),
        ("all-big", {"p.items": {"all_items": {"mb": {"gte": 900}}}}),
        ("none-big", {"none": [{"p.items": {"any_item": {"mb": {"gte": 900}}}}]}),
        ("not-all-big", {"none": [{"p.items": {"all_items": {"mb": {"gte": 900}}}}]}),
    )
    cases: list[tuple[Any, set[str]]] = [
        ([], {"none-big", "not-all-big"}),
        ([{"mb": 950}], {"any-big", "all-big"}),
        ([{"mb": 950}, {"mb": 10}], {"any-big", "not-all-big"}),
        ([{"mb": 950}, "not a mapping"], {"any-big", "not-all-big"}),
        ("not a list", {"none-big", "not-all-big"}),
    ]
    for items, expected in cases:
        assert pair.matched({"p": {"items": items}}) == expected


def test_compile_reuses_the_backend_of_an_unchanged_version(tmp_path: Path) -> None:
    directory = write_rules(tmp_path, [classify_rule("a", {"alert.kind": "x"})])
    first = compile_policy(load(directory))
    count = compiled_versions()
    second = compile_policy(load(directory))
    assert second.backend is first.backend and compiled_versions() == count
    write_rules(directory, [classify_rule("a", {"alert.kind": "y"})])
    third = compile_policy(load(directory))
    assert third.backend is not first.backend
    assert compiled_versions() == count + 1


def test_describe_reports_rulesets_and_stack_per_stage(shipped: Pair) -> None:
    described = shipped.durable.backend
    assert isinstance(described, DurableBackend)
    info = described.describe()
    assert set(info) == set(shipped.durable.source.rules)
    classify_info = info["classify"]
    assert classify_info.rules == len(shipped.durable.source.rules["classify"])
    assert classify_info.rulesets >= 1 and 0 < classify_info.stack <= 60
