"""The network model predicts the engine's stack exactly at its limit."""

from __future__ import annotations

import pytest

from engine.policy.durable import EngineCallError, EngineRuleset
from engine.policy.lowering import EQ, All, AnyOf, Cmp, Expr, to_json
from engine.policy.network import Network


def ruleset_of(exprs: list[Expr]) -> tuple[EngineRuleset, int]:
    network = Network()
    for expr in exprs:
        network.add(expr)
    definition = ",".join(
        f'"r{n}":{{"all":[{{"m":{to_json(expr)}}}]}}' for n, expr in enumerate(exprs)
    )
    return EngineRuleset(
        "{" + definition + "}", "tests.network"
    ), network.limits().stack


def thresholds(count: int) -> list[Expr]:
    return [
        All((Cmp("t", EQ, '"n"'), Cmp("l", "$gte", f"{n}.0"))) for n in range(count)
    ]


def test_64_tests_that_hold_at_once_fit_the_engine_stack() -> None:
    ruleset, stack = ruleset_of(thresholds(64))
    assert stack == 64
    assert len(ruleset.matches('"t":"n","l":100.0')) == 64


def test_65_tests_that_hold_at_once_overflow_it_as_predicted() -> None:
    ruleset, stack = ruleset_of(thresholds(65))
    assert stack == 65
    with pytest.raises(EngineCallError):
        ruleset.matches('"t":"n","l":100.0')


def test_equality_tests_of_one_slot_count_once() -> None:
    kinds = [Cmp("kind", EQ, f'"k{n}"') for n in range(200)]
    ruleset, stack = ruleset_of(list(kinds))
    assert stack == 1
    assert ruleset.matches('"kind":"k199"') == ["r199"]


def test_alternatives_count_each_branch_that_can_hold() -> None:
    branches = tuple(Cmp("l", "$gte", f"{n}.0") for n in range(65))
    fits, stack = ruleset_of([AnyOf(branches[:64])])
    assert stack == 64
    assert fits.matches('"l":100.0') == ["r0"] * 64
    overflows, stack = ruleset_of([AnyOf(branches)])
    assert stack == 65
    with pytest.raises(EngineCallError):
        overflows.matches('"l":100.0')


def test_shared_branches_widen_the_node_they_share() -> None:
    branches = tuple(Cmp("l", "$gte", f"{n}.0") for n in range(30))
    ruleset, stack = ruleset_of([AnyOf(branches), AnyOf(branches[:20])])
    assert stack == 31
    fired = ruleset.matches('"l":100.0')
    assert (fired.count("r0"), fired.count("r1")) == (30, 20)
