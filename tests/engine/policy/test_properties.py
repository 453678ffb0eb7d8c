"""Property tests: the durable_rules backend agrees with ``verdicts.holds``.

For every stage of the shipped policy (guards included), hypothesis builds
facts documents over every path the stage's rules read, biased toward each
leaf's operand and its neighbours, and toward missing, null, mistyped and
non-ASCII values; the set of rules durable_rules returns must be exactly
the set whose condition holds. A second property does the same for a
seeded corpus of random rules that uses every operator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.policy.compiler import _Draft
from engine.policy.model import Condition, Group, Rule, leaf_paths
from engine.policy.model import Test as Leaf
from engine.policy.operators import ITEM_OPERATORS
from engine.policy.verdicts import holds
from tests.engine.policy.conftest import Pair

ODD_VALUES = [None, True, False, 0, -1, 1.5, 1e300, -0.0, "", "0", "90", "é", "ü\n"]
SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def near(operand: Any) -> list[Any]:
    """The operand, its boundaries, and its look-alikes of other types."""
    if isinstance(operand, bool):
        return [operand, not operand, str(operand).lower(), int(operand)]
    if isinstance(operand, int | float):
        return [operand, operand + 1, operand - 1, operand + 0.001, str(operand)]
    if isinstance(operand, str):
        return [operand, operand.upper(), operand + "x", f"x{operand}x", ""]
    if isinstance(operand, tuple):
        return [value for item in operand for value in near(item)]
    return []


def scalar(operands: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(operands or [0]),
        st.sampled_from(ODD_VALUES),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.text(max_size=8),
    )


def value_for(tests: list[Leaf]) -> st.SearchStrategy[Any]:
    operands = [value for test in tests for value in near(test.operand)]
    item_tests = [test for test in tests if test.op in ITEM_OPERATORS]
    if not item_tests:
        return st.one_of(scalar(operands), st.lists(scalar(operands), max_size=3))
    items = st.one_of(item_strategy(item_tests), scalar(operands))
    return st.one_of(st.lists(items, max_size=4), scalar(operands))


def item_strategy(tests: list[Leaf]) -> st.SearchStrategy[Any]:
    by_path: dict[str, list[Leaf]] = {}
    for test in tests:
        for path, leaf in leaf_paths(test.operand):
            by_path.setdefault(path, []).append(leaf)
    return documents(by_path)


def documents(by_path: dict[str, list[Leaf]]) -> st.SearchStrategy[dict[str, Any]]:
    fields = {path: value_for(tests) for path, tests in by_path.items()}
    chosen = st.fixed_dictionaries({}, optional=fields)
    return chosen.map(nest)


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for path, value in flat.items():
        node = document
        *parents, last = path.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return document


def top_tests(rules: tuple[Rule, ...]) -> dict[str, list[Leaf]]:
    by_path: dict[str, list[Leaf]] = {}
    for rule in rules:
        for test in tops(rule.when):
            by_path.setdefault(test.path, []).append(test)
    return by_path


def tops(condition: Condition) -> Iterator[Leaf]:
    if isinstance(condition, Leaf):
        yield condition
    else:
        for child in condition.children:
            yield from tops(child)


STAGES = [
    "intake",
    "watch",
    "classify",
    "stabilize",
    "brief",
    "impact",
    "messages",
    "recommend",
    "decisions",
    "learning",
    "guards",
]


@pytest.mark.parametrize("stage", STAGES)
def test_every_shipped_rule_agrees_with_the_reference(
    shipped: Pair, stage: str
) -> None:
    rules = shipped.durable.source.rules[stage]
    assert rules, f"the shipped policy has {stage} rules"

    @SETTINGS
    @given(facts=documents(top_tests(rules)))
    def agree(facts: dict[str, Any]) -> None:
        found = {rule.id for rule in shipped.durable.backend.matching(stage, facts)}
        expected = {rule.id for rule in rules if holds(rule.when, facts)}
        assert found == expected

    agree()


# A seeded corpus of random rules over every operator.

PATHS = ["a", "b", "c.d", "c.e"]
ITEM_PATHS = ["x", "y", "z.w"]
CONSTANTS = [0, 1, 1.0, -1, 2.5, 5, "5", "a", "", "é", 'q"\\', True, False, 1e300]
PATTERNS = ["a.*", "[0-9]+", "(?i)A|b", "", ".*é.*", "5"]


def random_leaf(rng: random.Random, paths: list[str], items: bool) -> Leaf:
    ops = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "matches"]
    ops += ["exists", "missing", "contains"] + (["any_item", "all_items"] * items)
    op, path = rng.choice(ops), rng.choice(paths)
    if op in ITEM_OPERATORS:
        return Leaf("list", op, random_condition(rng, ITEM_PATHS, 1, False))
    if op in ("gt", "gte", "lt", "lte"):
        return Leaf(path, op, rng.choice([0, 1, 2.5, -1, "x"]))
    if op in ("in", "not_in"):
        return Leaf(path, op, tuple(rng.sample(CONSTANTS, rng.randint(1, 3))))
    if op == "matches":
        return Leaf(path, op, rng.choice(PATTERNS))
    if op in ("exists", "missing"):
        return Leaf(path, op, rng.choice([True, False]))
    return Leaf(path, op, rng.choice(CONSTANTS))


def random_condition(
    rng: random.Random, paths: list[str], depth: int, items: bool
) -> Condition:
    if depth > 2 or rng.random() < 0.5:
        return random_leaf(rng, paths, items)
    kind = rng.choice(["all", "any", "none"])
    count = rng.randint(1, 3)
    children = tuple(
        random_condition(rng, paths, depth + 1, items) for _ in range(count)
    )
    return Group(kind, children)


def corpus() -> tuple[Rule, ...]:
    rng = random.Random(20240611)
    return tuple(
        Rule(f"random-{n}", "random", random_condition(rng, PATHS, 0, True), {})
        for n in range(150)
    )


RANDOM_RULES = corpus()
RANDOM_PLAN = _Draft.of("random", RANDOM_RULES).build("tests.random")


def random_tests() -> dict[str, list[Leaf]]:
    by_path = top_tests(RANDOM_RULES)
    by_path.setdefault("c", []).append(Leaf("c", "eq", "a"))
    return by_path


@SETTINGS
@given(facts=documents(random_tests()))
def test_random_rules_over_every_operator_agree_with_the_reference(
    facts: dict[str, Any],
) -> None:
    found = {rule.id for rule in RANDOM_PLAN.matching(facts)}
    expected = {rule.id for rule in RANDOM_RULES if holds(rule.when, facts)}
    assert found == expected


def test_the_random_corpus_spans_several_rulesets() -> None:
    assert len(RANDOM_PLAN.parts) >= 2
    assert {test.op for rule in RANDOM_RULES for _, test in leaf_paths(rule.when)} >= {
        "eq",
        "ne",
        "in",
        "not_in",
        "matches",
        "contains",
        "any_item",
        "all_items",
        "exists",
        "missing",
        "gt",
        "lte",
    }
