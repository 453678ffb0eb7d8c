from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.policy.logic import contradiction, implies
from engine.policy.model import ALWAYS, Condition, Group
from engine.policy.model import Test as Leaf
from engine.policy.verdicts import holds

P = "snapshot.memory.percent"


def leaf(op: str, operand: Any, path: str = P) -> Leaf:
    return Leaf(path, op, tuple(operand) if isinstance(operand, list) else operand)


def every(*children: Condition) -> Group:
    return Group("all", children)


def either(*children: Condition) -> Group:
    return Group("any", children)


@pytest.mark.parametrize(
    "condition",
    [
        every(leaf("gt", 90), leaf("lt", 50)),
        every(leaf("gte", 90), leaf("lt", 90)),
        every(leaf("gt", 90), leaf("lte", 90)),
        every(leaf("eq", 91), leaf("gte", 90), leaf("ne", 91)),
        every(leaf("eq", "a", "alert.kind"), leaf("eq", "b", "alert.kind")),
        every(leaf("eq", 5), leaf("eq", "5")),
        every(leaf("exists", True), leaf("missing", True)),
        every(leaf("missing", True), leaf("gte", 1)),
        every(leaf("in", [1, 2]), leaf("in", [3, 4])),
        every(leaf("in", [1, 2]), leaf("not_in", [2, 1])),
        every(leaf("eq", True), leaf("gt", 0)),
        every(leaf("matches", "a.*", "alert.name"), leaf("eq", "bcd", "alert.name")),
        every(leaf("gte", 90), every(leaf("lte", 80))),
        either(
            every(leaf("gt", 9), leaf("lt", 1)), every(leaf("eq", 1), leaf("eq", 2))
        ),
        Group("any", ()),
        leaf("any_item", every(leaf("gt", 9, "x"), leaf("lt", 1, "x")), "list"),
    ],
)
def test_conditions_that_can_never_hold_are_found(condition: Condition) -> None:
    assert contradiction(condition) is not None


@pytest.mark.parametrize(
    "condition",
    [
        every(leaf("gte", 90), leaf("lte", 90)),
        every(leaf("gt", 50), leaf("lt", 90), leaf("ne", 70)),
        every(leaf("ne", "a", "alert.kind"), leaf("missing", True, "alert.kind")),
        every(leaf("not_in", [1]), leaf("exists", False)),
        every(leaf("eq", 5), leaf("eq", 5.0)),
        every(leaf("in", [1, 2]), leaf("in", [2, 3])),
        either(every(leaf("gt", 9), leaf("lt", 1)), leaf("gt", 9)),
        Group("none", (leaf("gt", 1), leaf("lte", 1))),
        every(leaf("contains", "b", "alert.name"), leaf("eq", "abc", "alert.name")),
        ALWAYS,
    ],
)
def test_conditions_that_may_hold_are_left_alone(condition: Condition) -> None:
    assert contradiction(condition) is None


@pytest.mark.parametrize(
    ("stronger", "weaker"),
    [
        (leaf("gt", 95), leaf("gte", 90)),
        (leaf("gte", 95), leaf("gte", 95)),
        (leaf("gt", 95), leaf("gt", 95)),
        (leaf("gt", 95), leaf("gte", 95)),
        (leaf("lt", 10), leaf("lte", 20)),
        (leaf("eq", 97), leaf("gte", 95)),
        (leaf("in", [96, 99]), leaf("gt", 95)),
        (leaf("in", ["a"], "alert.kind"), leaf("in", ["a", "b"], "alert.kind")),
        (leaf("eq", "a", "alert.kind"), leaf("ne", "b", "alert.kind")),
        (leaf("gt", 95), leaf("ne", 90)),
        (leaf("gt", 95), leaf("exists", True)),
        (leaf("missing", True), leaf("ne", 3)),
        (leaf("not_in", [1, 2]), leaf("ne", 2)),
        (leaf("matches", "a.*", "alert.name"), leaf("ne", "bc", "alert.name")),
        (
            every(leaf("gt", 97), leaf("gte", 1, "snapshot.swap.percent")),
            leaf("gte", 95),
        ),
        (either(leaf("eq", 99), leaf("in", [96, 98])), leaf("gte", 95)),
        (leaf("gte", 96), either(leaf("lt", 10), leaf("gte", 95))),
        (
            Group("none", (leaf("gte", 90),)),
            Group("none", (leaf("gte", 95),)),
        ),
        (
            leaf("all_items", leaf("gte", 900, "memory_mb"), "snapshot.pm2.processes"),
            leaf("any_item", leaf("gte", 800, "memory_mb"), "snapshot.pm2.processes"),
        ),
        (leaf("gte", 95), ALWAYS),
    ],
)
def test_implications_that_hold_are_proved(
    stronger: Condition, weaker: Condition
) -> None:
    assert implies(stronger, weaker)


@pytest.mark.parametrize(
    ("stronger", "weaker"),
    [
        (leaf("gte", 90), leaf("gte", 95)),
        (leaf("gte", 95), leaf("gt", 95)),
        (leaf("gt", 95), leaf("lt", 99)),
        (leaf("ne", 3), leaf("eq", 4)),
        (leaf("gte", 95), leaf("gte", 95, "snapshot.swap.percent")),
        (either(leaf("gte", 95), leaf("eq", 1)), leaf("gte", 90)),
        (leaf("missing", True), leaf("eq", 3)),
        (
            leaf("any_item", leaf("gte", 900, "memory_mb"), "snapshot.pm2.processes"),
            leaf("all_items", leaf("gte", 800, "memory_mb"), "snapshot.pm2.processes"),
        ),
        (Group("none", (leaf("gte", 95),)), Group("none", (leaf("gte", 90),))),
        (ALWAYS, leaf("gte", 95)),
    ],
)
def test_implications_that_do_not_hold_are_not_claimed(
    stronger: Condition, weaker: Condition
) -> None:
    assert not implies(stronger, weaker)


# Soundness against the evaluator: a claimed contradiction has no witness
# among many values, and a claimed implication has no counterexample.
VALUES: list[Any] = [None, True, False, "a", "b", "abc"]
VALUES += [n / 2 for n in range(-4, 25)]
NUMBERS = st.integers(min_value=-1, max_value=11)
SCALARS = st.one_of(NUMBERS, st.sampled_from(["a", "b", True]))


@st.composite
def leaves(draw: st.DrawFn) -> Leaf:
    op = draw(
        st.sampled_from(
            [
                "eq",
                "ne",
                "gt",
                "gte",
                "lt",
                "lte",
                "in",
                "not_in",
                "exists",
                "missing",
                "matches",
                "contains",
            ]
        )
    )
    if op in ("gt", "gte", "lt", "lte"):
        return leaf(op, draw(NUMBERS), "v")
    if op in ("in", "not_in"):
        return leaf(op, draw(st.lists(SCALARS, min_size=1, max_size=3)), "v")
    if op in ("exists", "missing"):
        return leaf(op, draw(st.booleans()), "v")
    if op == "matches":
        return leaf(op, draw(st.sampled_from(["a.*", "b", "[ab]+"])), "v")
    return leaf(op, draw(SCALARS), "v")


def conditions(depth: int = 2) -> st.SearchStrategy[Condition]:
    if depth == 0:
        return leaves()
    inner = conditions(depth - 1)
    groups = st.builds(
        Group,
        st.sampled_from(["all", "any", "none"]),
        st.lists(inner, min_size=1, max_size=3).map(tuple),
    )
    return st.one_of(leaves(), groups)


def outcome(condition: Condition, value: Any) -> bool:
    return holds(condition, {} if value is None else {"v": value})


@settings(max_examples=400, deadline=None)
@given(conditions())
def test_a_claimed_contradiction_never_holds(condition: Condition) -> None:
    if contradiction(condition) is not None:
        assert not any(outcome(condition, v) for v in VALUES)


@settings(max_examples=400, deadline=None)
@given(conditions(), conditions())
def test_a_claimed_implication_has_no_counterexample(
    stronger: Condition, weaker: Condition
) -> None:
    if implies(stronger, weaker):
        for value in VALUES:
            assert not outcome(stronger, value) or outcome(weaker, value), value
