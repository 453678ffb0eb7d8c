"""From a rule's condition tree to one durable_rules expression over slots.

Negation is pushed down to the leaves (``none`` and ``ne``/``not_in`` become
tests that hold for missing and mistyped values, through the slots of
``encoding``), so the expression is made only of comparisons against
constants, ``$and``, ``$or`` and the item quantifiers ``$iany``/``$iall``;
no arithmetic, no ``$neq`` on a value that may be absent, no regular
expression, no ``pri``. Each rule becomes a single fact pattern: the
engine never joins one fact with itself.

Two engine defects shape the output. Inside ``$iany``/``$iall`` the engine
keeps only the verdict of the last property it scanned, so an ``$or`` whose
branches start on different properties loses matches depending on key
order: every such branch is made to start with its own always-true test on
the item's kind key. And each ``$and``/``$or`` takes two of the 31 places a
rule's expression sequence has, so ``count_groups`` lets the compiler refuse
a rule that needs more than ``MAX_GROUPS``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import Location, Problem
from engine.policy import wire
from engine.policy.encoding import ITEM_PREFIX, KIND_NAME, Kind, Scope
from engine.policy.model import Condition, Group, Test
from engine.policy.operators import ITEM_OPERATORS, as_number

MAX_GROUPS = 15
EQ, NE = "$eq", "$neq"
NEGATED = {"$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt"}


@dataclass(frozen=True, slots=True)
class Cmp:
    """One test of one slot against a constant (the engine's alpha node)."""

    ref: str
    op: str
    value: str  # wire text


@dataclass(frozen=True, slots=True)
class All:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Each:
    op: str  # $iany | $iall
    ref: str
    inner: Expr


@dataclass(frozen=True, slots=True)
class Const:
    value: bool


Expr = Cmp | All | AnyOf | Each | Const
TRUE, FALSE = Const(True), Const(False)
IS_MAPPING = Cmp(ITEM_PREFIX + KIND_NAME, EQ, '"o"')
NOT_MAPPING = Cmp(ITEM_PREFIX + KIND_NAME, NE, '"o"')


def _order(expr: Expr) -> tuple[int, str]:
    # Equality tests first: they are shared between rules and exclusive of
    # each other, which keeps the engine's network narrow.
    if isinstance(expr, Cmp):
        return (0 if expr.op == EQ else 1, f"{expr.ref}\0{expr.op}\0{expr.value}")
    return (2, repr(expr))


def _unique(parts: Iterable[Expr]) -> list[Expr]:
    return sorted(dict.fromkeys(parts), key=_order)


def conjoin(parts: Iterable[Expr]) -> Expr:
    flat: list[Expr] = []
    for part in parts:
        if part == FALSE:
            return FALSE
        if isinstance(part, All):
            flat.extend(part.parts)
        elif part != TRUE:
            flat.append(part)
    unique = _unique(flat)
    if not unique:
        return TRUE
    return unique[0] if len(unique) == 1 else All(tuple(unique))


def disjoin(parts: Iterable[Expr]) -> Expr:
    flat: list[Expr] = []
    for part in parts:
        if part == TRUE:
            return TRUE
        if isinstance(part, AnyOf):
            flat.extend(part.parts)
        elif part != FALSE:
            flat.append(part)
    unique = _unique(flat)
    if not unique:
        return FALSE
    return unique[0] if len(unique) == 1 else AnyOf(tuple(unique))


def _first(head: Cmp, expr: Expr) -> Expr:
    """``head`` and ``expr``, with ``head`` kept as the first test."""
    if expr == TRUE:
        return head
    if expr == FALSE:
        return FALSE
    rest = expr.parts if isinstance(expr, All) else (expr,)
    return All((head, *rest))


def guard_alternatives(expr: Expr, guards: Iterator[int]) -> Expr:
    """Start each branch of every ``$or`` with its own test on the kind key."""
    if isinstance(expr, All):
        return All(tuple(guard_alternatives(part, guards) for part in expr.parts))
    if isinstance(expr, AnyOf):
        branches = []
        for part in expr.parts:
            guard = Cmp(ITEM_PREFIX + KIND_NAME, NE, f'"#{next(guards)}"')
            branches.append(_first(guard, guard_alternatives(part, guards)))
        return AnyOf(tuple(branches))
    return expr


def count_groups(expr: Expr) -> int:
    if isinstance(expr, All | AnyOf):
        return 1 + sum(count_groups(part) for part in expr.parts)
    if isinstance(expr, Each):
        return count_groups(expr.inner)
    return 0


def to_json(expr: Expr) -> str:
    if isinstance(expr, Cmp):
        return f'{{"{expr.op}":{{"{expr.ref}":{expr.value}}}}}'
    if isinstance(expr, All | AnyOf):
        word = "$and" if isinstance(expr, All) else "$or"
        return f'{{"{word}":[' + ",".join(to_json(p) for p in expr.parts) + "]}"
    if isinstance(expr, Each):
        return f'{{"{expr.op}":{{"{expr.ref}":{to_json(expr.inner)}}}}}'
    raise ValueError(f"a constant has no engine form: {expr}")


class Lowerer:
    """Lowers the conditions of one stage's rules onto one layout's slots."""

    def __init__(self, top: Scope, item_scope: Callable[[str], Scope]) -> None:
        self._top = top
        self._item_scope = item_scope
        self.problems: list[Problem] = []
        self._guards = itertools.count(1)

    def rule(self, condition: Condition) -> Expr:
        return self.lower(condition, False, self._top)

    def lower(self, condition: Condition, negated: bool, scope: Scope) -> Expr:
        if isinstance(condition, Group):
            return self._group(condition, negated, scope)
        return self._test(condition, negated, scope)

    def _group(self, group: Group, negated: bool, scope: Scope) -> Expr:
        # none = all of the negations; De Morgan takes negation to the leaves.
        inverted = negated != (group.kind == "none")
        children = [self.lower(child, inverted, scope) for child in group.children]
        conjunctive = (group.kind in ("all", "none")) != negated
        return conjoin(children) if conjunctive else disjoin(children)

    def _test(self, test: Test, negated: bool, scope: Scope) -> Expr:
        if test.op in ITEM_OPERATORS:
            return self._items(test, negated, scope)
        if test.op in ("eq", "ne"):
            inverted = negated != (test.op == "ne")
            return self._equal(test.path, test.operand, inverted, scope, test)
        if test.op in ("in", "not_in"):
            return self._member(test, negated != (test.op == "not_in"), scope)
        if test.op in ("gt", "gte", "lt", "lte"):
            return self._ordered(test, negated, scope)
        if test.op in ("exists", "missing"):
            return self._presence(test, negated, scope)
        if test.op in ("matches", "contains"):
            slot = scope.slot(test.path, Kind.PREDICATE, test.op, test.operand)
            return Cmp(slot.ref, EQ, wire.boolean(not negated))
        self._refuse(test, "E309", f"operator {test.op!r} has no engine form")
        return FALSE

    def _equal(
        self, path: str, operand: Any, negated: bool, scope: Scope, test: Test
    ) -> Expr:
        op = NE if negated else EQ
        if isinstance(operand, bool):
            slot = scope.slot(path, Kind.TAG)
            return Cmp(slot.ref, op, '"T"' if operand else '"F"')
        if isinstance(operand, str):
            text = wire.string(operand)
            if not wire.fits(text):
                self._refuse(test, "E304", _too_long(operand))
            return Cmp(scope.slot(path, Kind.TEXT).ref, op, text)
        number = as_number(operand)
        if number is None:
            self._refuse(test, "E304", _not_a_number(operand))
            return FALSE
        return Cmp(scope.slot(path, Kind.LOW).ref, op, wire.number(number))

    def _member(self, test: Test, negated: bool, scope: Scope) -> Expr:
        tests = [
            self._equal(test.path, value, negated, scope, test)
            for value in test.operand
        ]
        return conjoin(tests) if negated else disjoin(tests)

    def _ordered(self, test: Test, negated: bool, scope: Scope) -> Expr:
        limit = as_number(test.operand)
        if limit is None:
            # Nothing is ordered against a non-number: always false.
            return TRUE if negated else FALSE
        op = "$" + test.op
        kind = Kind.LOW if test.op in ("gt", "gte") else Kind.HIGH
        final = NEGATED[op] if negated else op
        return Cmp(scope.slot(test.path, kind).ref, final, wire.number(limit))

    def _presence(self, test: Test, negated: bool, scope: Scope) -> Expr:
        is_missing = (test.op == "missing") == bool(test.operand)
        op = EQ if is_missing != negated else NE
        return Cmp(scope.slot(test.path, Kind.TAG).ref, op, '"m"')

    def _items(self, test: Test, negated: bool, scope: Scope) -> Expr:
        if scope is not self._top:
            self._refuse(test, "E305", _nested_items(test))
            return FALSE
        items = scope.slot(test.path, Kind.ITEMS)
        inner_scope = self._item_scope(test.path)
        inner = self.lower(test.operand, negated, inner_scope)
        if not negated:
            body = _first(IS_MAPPING, inner)
            if body == FALSE:
                return FALSE
            quantifier = "$iany" if test.op == "any_item" else "$iall"
            return Each(quantifier, items.ref, self._guarded(body))
        # not any: every item fails; not all: some item fails; both hold
        # when the value is no list or an empty one.
        failing = disjoin([NOT_MAPPING, inner])
        if failing == TRUE:
            return TRUE
        quantifier = "$iall" if test.op == "any_item" else "$iany"
        each = Each(quantifier, items.ref, self._guarded(failing))
        not_a_list = Cmp(scope.slot(test.path, Kind.TAG).ref, NE, '"l"')
        return disjoin([not_a_list, each])

    def _guarded(self, body: Expr) -> Expr:
        return guard_alternatives(body, self._guards)

    def _refuse(self, test: Test, code: str, message: str) -> None:
        self.problems.append(Problem(code, message, test.location))


def _too_long(operand: str) -> str:
    return (
        f"the string {operand[:40]!r}... is longer than {wire.MAX_STRING_BYTES} "
        "bytes, more than the engine compares: test a shorter value (or use "
        "`matches` with a pattern)"
    )


def _not_a_number(operand: Any) -> str:
    return (
        f"{operand!r} is not a finite number the engine can compare: use a "
        "number between -1.7e308 and 1.7e308"
    )


def _nested_items(test: Test) -> str:
    return (
        f"{test.op} inside another any_item/all_items is not supported by the "
        "engine adapter: give the list a derived fact (a count or a flag) in "
        "the collector, or split the rule"
    )


def locate(problems: list[Problem], rule_id: str, fallback: Location) -> list[Problem]:
    """Give every problem the rule's id (the leaves know file and line)."""
    located = []
    for problem in problems:
        where = problem.location if problem.location.file else fallback
        if not where.rule_id:
            where = Location(where.file, where.line, where.column, rule_id, where.field)
        located.append(Problem(problem.code, problem.message, where))
    return located
