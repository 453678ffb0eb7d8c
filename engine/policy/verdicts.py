"""The pure-Python evaluator: each condition's verdict and the value it saw.

durable_rules decides which rules match; this module says *why*. It walks a
condition tree against a facts document with the semantics written in
``operators``, and records for every leaf the actual value found at its path
and its verdict. ``rules explain`` prints that tree, the audit stores the
values a match used, and target selection (``for_each`` / ``where``) filters
list items with it. A property-based test keeps it in agreement with the
engine for every shipped rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from engine.policy.model import Condition, Group, Test
from engine.policy.operators import ITEM_OPERATORS, SCALAR_PREDICATES

MISSING: Any = None


def lookup(facts: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; None when any step is absent."""
    node: Any = facts
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return MISSING
        node = node.get(part)
        if node is None:
            return MISSING
    return node


def holds(condition: Condition, facts: Mapping[str, Any]) -> bool:
    if isinstance(condition, Group):
        verdicts = (holds(child, facts) for child in condition.children)
        if condition.kind == "all":
            return all(verdicts)
        if condition.kind == "any":
            return any(verdicts)
        return not any(verdicts)
    return _test(condition, lookup(facts, condition.path))


def _test(test: Test, value: Any) -> bool:
    if test.op in ITEM_OPERATORS:
        return _items(test, value)
    return SCALAR_PREDICATES[test.op](value, test.operand)


def _items(test: Test, value: Any) -> bool:
    if not isinstance(value, list):
        return False
    nested: Condition = test.operand
    verdicts = [isinstance(item, Mapping) and holds(nested, item) for item in value]
    if test.op == "any_item":
        return any(verdicts)
    return bool(verdicts) and all(verdicts)


def select(items: Any, where: Condition | None) -> Iterator[Mapping[str, Any]]:
    """The list items (mappings) that meet ``where``; all of them without it."""
    if not isinstance(items, list):
        return
    for item in items:
        if isinstance(item, Mapping) and (where is None or holds(where, item)):
            yield item


@dataclass(frozen=True)
class Verdict:
    """One node of an explanation."""

    condition: Condition
    holds: bool
    actual: Any = None  # the fact value a leaf saw
    children: tuple[Verdict, ...] = ()

    def leaves(self) -> Iterator[Verdict]:
        if isinstance(self.condition, Test) and not self.children:
            yield self
        for child in self.children:
            yield from child.leaves()


def explain(condition: Condition, facts: Mapping[str, Any]) -> Verdict:
    if isinstance(condition, Group):
        children = tuple(explain(child, facts) for child in condition.children)
        return Verdict(condition, holds(condition, facts), None, children)
    value = lookup(facts, condition.path)
    verdict = _test(condition, value)
    if condition.op in ITEM_OPERATORS and isinstance(value, list):
        return Verdict(
            condition, verdict, _summarise(value), _item_verdicts(condition, value)
        )
    return Verdict(condition, verdict, value)


def _item_verdicts(test: Test, items: list[Any]) -> tuple[Verdict, ...]:
    nested: Condition = test.operand
    return tuple(
        explain(nested, item) for item in items[:20] if isinstance(item, Mapping)
    )


def _summarise(items: list[Any]) -> str:
    return f"[{len(items)} item{'s' if len(items) != 1 else ''}]"


def facts_used(condition: Condition, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The value of every path a condition reads, for the audit record."""
    used: dict[str, Any] = {}
    for test in top_level_tests(condition):
        if test.path not in used:
            value = lookup(facts, test.path)
            used[test.path] = _summarise(value) if isinstance(value, list) else value
    return used


def top_level_tests(condition: Condition) -> Iterator[Test]:
    """The leaves whose paths are absolute (not inside an item condition)."""
    if isinstance(condition, Test):
        yield condition
        return
    for child in condition.children:
        yield from top_level_tests(child)
