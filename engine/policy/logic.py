"""Conditions as logic: which can never hold, and which imply another.

``rules check`` asks two questions of a rule's ``when``. Can it ever hold?
Within one ``all`` (a mapping is one), the leaves that test the same path
must agree: ``gt 90`` with ``lt 50``, ``eq a`` with ``eq b``, ``exists`` with
``missing`` or ``in`` sets that do not meet cannot. Does one condition imply
another? A lower-ranked rule whose condition implies a higher-ranked rule's,
with the same ``then``, never changes an outcome.

Both answers are conservative: ``contradiction`` reports only conditions that
provably never hold, and ``implies`` says yes only when the implication is
provable leaf by leaf, so a warning is never wrong, though some shadowed rules
go unreported. What is proved, with the semantics of ``operators``:

- a conjunction implies a leaf when one of its members does; a disjunction
  implies anything all its branches imply; a condition implies ``all`` when it
  implies each member and ``any`` when it implies one branch;
- ``none(X...)`` implies ``none(Y...)`` when ``any(Y...)`` implies
  ``any(X...)``;
- a leaf implies a leaf on the same path when every value it admits meets
  the other: ``eq``/``in`` values, a missing value, a number interval
  (``gt 95`` implies ``gte 90``), a regular expression or substring (same
  operand), and item conditions (``all_items C`` implies ``any_item D`` when
  ``C`` implies ``D``). ``none`` is not negated into its members.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from engine.policy.model import Condition, Group, Test
from engine.policy.operators import (
    ITEM_OPERATORS,
    ORDERING,
    SCALAR_PREDICATES,
    is_number,
    same,
)

PRESENT = frozenset({"exists", "missing"})


@dataclass(frozen=True)
class Contradiction:
    """Why a condition can never hold, and the leaf that makes it so."""

    reason: str
    test: Test | None = None


def describe(test: Test) -> str:
    """``gt 90`` or ``in [a, b]``: how a leaf reads in a message."""
    operand = test.operand
    if isinstance(operand, Group | Test):
        return f"{test.op} {{...}}"
    if isinstance(operand, tuple):
        shown = "[" + ", ".join(_show(v) for v in operand) + "]"
    else:
        shown = _show(operand)
    return f"{test.op} {shown}"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def contradiction(condition: Condition) -> Contradiction | None:
    """Why ``condition`` can never hold, or None when it may."""
    if isinstance(condition, Test):
        return _item_contradiction(condition)
    if condition.kind == "none":
        return None
    if condition.kind == "any":
        return _any_contradiction(condition)
    for child in condition.children:
        found = contradiction(child)
        if found:
            return found
    return _conjunction_conflict(list(conjuncts(condition)))


def _item_contradiction(test: Test) -> Contradiction | None:
    if test.op not in ITEM_OPERATORS:
        return None
    found = contradiction(test.operand)
    if found is None:
        return None
    return Contradiction(
        f"no item of {test.path} can meet it: {found.reason}", found.test
    )


def _any_contradiction(group: Group) -> Contradiction | None:
    if not group.children:
        return Contradiction("an empty `any` never holds")
    reasons = [contradiction(child) for child in group.children]
    if not all(reasons):
        return None
    first = reasons[0]
    assert first is not None
    return Contradiction(f"no branch of `any` can hold ({first.reason})", first.test)


def conjuncts(condition: Condition) -> Iterator[Test]:
    """The leaves that must all hold: through nested ``all`` groups only."""
    if isinstance(condition, Test):
        yield condition
    elif condition.kind == "all":
        for child in condition.children:
            yield from conjuncts(child)


def _conjunction_conflict(tests: Sequence[Test]) -> Contradiction | None:
    by_path: dict[str, list[Test]] = {}
    for test in tests:
        by_path.setdefault(test.path, []).append(test)
    for path, group in by_path.items():
        for end in range(2, len(group) + 1):
            if not _Domain.of(group[:end]).possible():
                shown = " and ".join(describe(t) for t in group[:end])
                return Contradiction(
                    f"{path} cannot be {shown} at once", group[end - 1]
                )
    return None


KINDS = frozenset({"number", "string", "boolean", "list"})


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "number"
    return "string"


@dataclass
class _Domain:
    """The values one path may take under a conjunction of its leaves."""

    present: bool | None = None  # True: must be present; False: must be missing
    kinds: set[str] = field(default_factory=lambda: set(KINDS))
    values: list[object] | None = None  # from eq / in: one of these
    excluded: list[object] = field(default_factory=list)  # from ne / not_in
    low: tuple[float, bool] = (-math.inf, False)  # bound, strict
    high: tuple[float, bool] = (math.inf, False)
    tests: list[Test] = field(default_factory=list)  # matches / contains leaves

    @classmethod
    def of(cls, tests: Sequence[Test]) -> _Domain:
        domain = cls()
        for test in tests:
            domain.add(test)
        return domain

    def add(self, test: Test) -> None:
        op, operand = test.op, test.operand
        if op in PRESENT:
            self._presence((op == "exists") is bool(operand))
        elif op in ("ne", "not_in"):
            self.excluded.extend(operand if op == "not_in" else (operand,))
        else:
            self._presence(True)
            self._narrow(test)

    def _presence(self, present: bool) -> None:
        if self.present is None:
            self.present = present
        elif self.present is not present:
            self.kinds = set()  # present and missing at once

    def _narrow(self, test: Test) -> None:
        op, operand = test.op, test.operand
        if op in ("eq", "in"):
            listed = list(operand) if op == "in" else [operand]
            self.kinds &= {_kind(v) for v in listed}
            self._intersect(listed)
        elif op in ORDERING:
            self.kinds &= {"number"}
            self._bound(op, operand)
        elif op == "matches":
            self.kinds &= {"string"}
            self.tests.append(test)
        elif op == "contains":
            self.kinds &= {"string", "list"}
            self.tests.append(test)
        else:
            self.kinds &= {"list"}

    def _intersect(self, listed: list[object]) -> None:
        if self.values is None:
            self.values = listed
        else:
            self.values = [v for v in self.values if any(same(v, w) for w in listed)]

    def _bound(self, op: str, operand: object) -> None:
        if not is_number(operand):
            return  # an unresolved reference: reported elsewhere
        bound = (float(operand), op in ("gt", "lt"))  # type: ignore[arg-type]
        if op in ("gt", "gte"):
            self.low = max(self.low, bound, key=lambda b: (b[0], b[1]))
        else:
            self.high = min(self.high, bound, key=lambda b: (b[0], not b[1]))

    def possible(self) -> bool:
        if not self.kinds:
            return False
        if self.present is False:
            return True  # only ne / not_in can accompany a missing value
        if self.values is not None:
            return any(self._admits(v) for v in self.values)
        return self._interval_possible()

    def _interval_possible(self) -> bool:
        if self.kinds != {"number"}:
            return True
        (low, low_strict), (high, high_strict) = self.low, self.high
        if low > high or (low == high and (low_strict or high_strict)):
            return False
        if low == high:
            return not any(same(low, v) for v in self.excluded)
        return True

    def _admits(self, value: object) -> bool:
        if _kind(value) not in self.kinds:
            return False
        if any(same(value, v) for v in self.excluded):
            return False
        if is_number(value) and not self._within(float(value)):  # type: ignore[arg-type]
            return False
        try:
            return all(SCALAR_PREDICATES[t.op](value, t.operand) for t in self.tests)
        except re.error:
            return True  # an invalid pattern is reported on its own; claim nothing

    def _within(self, value: float) -> bool:
        (low, low_strict), (high, high_strict) = self.low, self.high
        above = value > low if low_strict else value >= low
        below = value < high if high_strict else value <= high
        return above and below


def implies(stronger: Condition, weaker: Condition) -> bool:
    """True when ``stronger`` holding proves ``weaker`` holds (conservative)."""
    if isinstance(weaker, Group) and weaker.kind == "all":
        return all(implies(stronger, child) for child in weaker.children)
    if isinstance(stronger, Group) and stronger.kind == "any":
        return all(implies(child, weaker) for child in stronger.children)
    if isinstance(stronger, Group) and stronger.kind == "none":
        return _none_implies(stronger, weaker)
    weaker_any = isinstance(weaker, Group) and weaker.kind == "any"
    if weaker_any and any(implies(stronger, c) for c in weaker.children):  # type: ignore[union-attr]
        return True
    if isinstance(stronger, Group) and stronger.kind == "all":
        return any(implies(child, weaker) for child in stronger.children)
    if isinstance(stronger, Test) and isinstance(weaker, Test):
        return stronger.path == weaker.path and leaf_implies(stronger, weaker)
    return False


def _none_implies(stronger: Group, weaker: Condition) -> bool:
    if not (isinstance(weaker, Group) and weaker.kind == "none"):
        return False
    return implies(Group("any", weaker.children), Group("any", stronger.children))


def leaf_implies(stronger: Test, weaker: Test) -> bool:
    """Two leaves on one path: does every value ``stronger`` admits meet ``weaker``?"""
    if stronger.op == weaker.op and _same_operand(stronger.operand, weaker.operand):
        return True
    if weaker.op in ITEM_OPERATORS:
        return _items_imply(stronger, weaker)
    finite = _finite_values(stronger)
    if finite is not None:
        return all(_meets(weaker, value) for value in finite)
    if weaker.op in PRESENT and _requires_presence(stronger):
        return bool(SCALAR_PREDICATES[weaker.op](0, weaker.operand))
    if stronger.op in ORDERING:
        return _interval_implies(stronger, weaker)
    return _exclusion_implies(stronger, weaker)


def _same_operand(left: object, right: object) -> bool:
    if isinstance(left, tuple) and isinstance(right, tuple):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, Group | Test) or isinstance(right, Group | Test):
        return left == right
    return same(left, right)


def _finite_values(test: Test) -> list[object] | None:
    """The values a leaf admits when it admits few: eq, in, missing."""
    if test.op == "eq":
        return [test.operand]
    if test.op == "in":
        return list(test.operand)
    if (test.op, test.operand) in (("missing", True), ("exists", False)):
        return [None]
    return None


def _meets(test: Test, value: object) -> bool:
    if test.op in ITEM_OPERATORS:
        return False
    if test.op in ORDERING and not is_number(test.operand):
        return False
    try:
        return bool(SCALAR_PREDICATES[test.op](value, test.operand))
    except re.error:
        return False


def _requires_presence(test: Test) -> bool:
    return test.op not in ("ne", "not_in", "missing", "exists") or (
        (test.op, test.operand) in (("exists", True), ("missing", False))
    )


def _items_imply(stronger: Test, weaker: Test) -> bool:
    if stronger.op not in ITEM_OPERATORS:
        return False
    if weaker.op == "all_items" and stronger.op != "all_items":
        return False
    return implies(stronger.operand, weaker.operand)


def _interval_implies(stronger: Test, weaker: Test) -> bool:
    bound = stronger.operand
    if not is_number(bound):
        return False
    if weaker.op in ORDERING:
        return _bound_implies(stronger.op, bound, weaker.op, weaker.operand)
    excluded = _excluded(weaker)
    if excluded is None:
        return False
    probe = Test(stronger.path, stronger.op, bound)
    return all(not _meets(probe, v) for v in excluded)


def _bound_implies(op: str, bound: float, other: str, limit: object) -> bool:
    if not is_number(limit):
        return False
    value = float(limit)  # type: ignore[arg-type]
    if op[0] != other[0]:  # a lower bound never implies an upper one
        return False
    if op.startswith("g"):
        return bound > value or (bound == value and (op == "gt" or other == "gte"))
    return bound < value or (bound == value and (op == "lt" or other == "lte"))


def _excluded(test: Test) -> list[object] | None:
    if test.op == "ne":
        return [test.operand]
    if test.op == "not_in":
        return list(test.operand)
    return None


def _exclusion_implies(stronger: Test, weaker: Test) -> bool:
    """``ne``/``not_in``, ``matches`` and ``contains`` against exclusions."""
    excluded = _excluded(weaker)
    if excluded is None:
        return False
    if stronger.op in ("ne", "not_in"):
        held = _excluded(stronger) or []
        return all(any(same(v, h) for h in held) for v in excluded)
    if stronger.op == "matches":
        probe = Test(stronger.path, "matches", stronger.operand)
        return all(not _meets(probe, v) for v in excluded)
    return False
