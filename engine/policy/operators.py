"""The condition operators: one registry for the schema, checker and evaluators.

Each operator names the kind of operand it takes and carries its meaning as
a pure-Python predicate. The JSON Schema of rule files, the semantic checker,
the durable_rules compiler and the explaining evaluator all read this table,
so an operator exists everywhere or nowhere.

Semantics (the README's rule reference says the same):

- A fact that is absent and a fact that is ``null`` are the same: *missing*.
- Comparisons never convert types. A number never equals a string, ``"90"``
  is not greater than ``80``; booleans are not numbers.
- Numbers compare as JSON numbers do in most tools: as 64-bit floating
  point values, so ``1 == 1.0``. An integer too large for a float, NaN and
  the infinities are not numbers.
- ``gt gte lt lte`` hold only when the fact is a number.
- ``ne`` and ``not_in`` are the negations of ``eq`` and ``in``: they hold
  when the fact is missing or of another type.
- ``matches`` holds when the fact is a string that the RE2 pattern matches
  as a whole (anchored at both ends, as Prometheus label matchers; ``.``
  also matches a newline). See ``engine.policy.patterns``.
- ``contains`` holds when the fact is a list holding the operand, or a string
  holding it as a substring.
- ``any_item`` holds when the fact is a list with at least one item meeting
  the nested condition; ``all_items`` when the list is non-empty and every
  item meets it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from engine.policy import patterns


class Operand(StrEnum):
    SCALAR = "scalar"  # string, number or boolean
    NUMBER = "number"
    SCALARS = "scalars"  # a non-empty list of scalars
    REGEX = "regex"
    FLAG = "flag"  # true (the operator holds) or false (its negation)
    CONDITION = "condition"  # a nested condition on each list item


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    operand: Operand
    summary: str


OPERATORS: Mapping[str, Operator] = {
    op.name: op
    for op in (
        Operator("eq", Operand.SCALAR, "equals, same type"),
        Operator("ne", Operand.SCALAR, "does not equal (true when missing)"),
        Operator("gt", Operand.NUMBER, "is a number greater than"),
        Operator("gte", Operand.NUMBER, "is a number greater than or equal to"),
        Operator("lt", Operand.NUMBER, "is a number less than"),
        Operator("lte", Operand.NUMBER, "is a number less than or equal to"),
        Operator("in", Operand.SCALARS, "equals one of"),
        Operator("not_in", Operand.SCALARS, "equals none of (true when missing)"),
        Operator("matches", Operand.REGEX, "is a string the pattern matches whole"),
        Operator("exists", Operand.FLAG, "is present and not null"),
        Operator("missing", Operand.FLAG, "is absent or null"),
        Operator("contains", Operand.SCALAR, "is a list or string holding"),
        Operator("any_item", Operand.CONDITION, "is a list with an item meeting"),
        Operator("all_items", Operand.CONDITION, "is a non-empty list, every item"),
    )
}

GROUPS = ("all", "any", "none")

ORDERING = frozenset({"gt", "gte", "lt", "lte"})
ITEM_OPERATORS = frozenset({"any_item", "all_items"})


def as_number(value: object) -> float | None:
    """The value as a finite 64-bit float, or None when it is not a number."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def is_number(value: object) -> bool:
    return as_number(value) is not None


def is_scalar(value: object) -> bool:
    return isinstance(value, str | bool) or is_number(value)


def same(left: object, right: object) -> bool:
    """Equality without type conversion: 1 == 1.0, but True != 1, 5 != "5"."""
    left_number, right_number = as_number(left), as_number(right)
    if left_number is not None or right_number is not None:
        return left_number == right_number
    if type(left) is not type(right):
        return False
    return left == right


def _regex_holds(value: object, pattern: object) -> bool:
    if not isinstance(value, str) or not isinstance(pattern, str):
        return False
    return patterns.fullmatch(pattern, value)


def _contains(value: object, operand: object) -> bool:
    if isinstance(value, list):
        return any(same(item, operand) for item in value)
    if isinstance(value, str) and isinstance(operand, str):
        return operand in value
    return False


def _ordered(test: Callable[[float, float], bool]) -> Callable[[object, Any], bool]:
    def holds(value: object, operand: Any) -> bool:
        number, limit = as_number(value), as_number(operand)
        return number is not None and limit is not None and test(number, limit)

    return holds


SCALAR_PREDICATES: Mapping[str, Callable[[object, Any], bool]] = {
    "eq": lambda value, operand: value is not None and same(value, operand),
    "ne": lambda value, operand: not same(value, operand),
    "gt": _ordered(lambda a, b: a > b),
    "gte": _ordered(lambda a, b: a >= b),
    "lt": _ordered(lambda a, b: a < b),
    "lte": _ordered(lambda a, b: a <= b),
    "in": lambda value, operand: any(same(value, o) for o in operand),
    "not_in": lambda value, operand: not any(same(value, o) for o in operand),
    "matches": _regex_holds,
    "exists": lambda value, operand: (value is not None) is operand,
    "missing": lambda value, operand: (value is None) is operand,
    "contains": _contains,
}
"""Predicates of the leaf operators; ``value`` is None when the fact is missing."""
