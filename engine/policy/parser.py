"""From validated rule documents to model objects, references resolved.

The parser runs after each file passed its JSON Schema. It turns ``when``
mappings into ``Group``/``Test`` trees (a mapping means *all*, a scalar means
``eq``), resolves every ``$group.name`` threshold reference against
``thresholds.yaml`` (keeping the reference for the audit), and parses the
``where`` selectors inside ``then``. Problems are collected, not raised, so
one run reports every mistake in a file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Location, Problem
from engine.policy import patterns
from engine.policy.model import ALWAYS, Condition, Group, Rule, Test
from engine.policy.operators import GROUPS, OPERATORS, Operand
from engine.policy.schema import REFERENCE
from engine.policy.source import PathKey, Positions

_REFERENCE = re.compile(REFERENCE)


@dataclass
class Thresholds:
    """The named numbers of ``thresholds.yaml``, flattened to dotted names."""

    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> Thresholds:
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: Mapping[str, Any]) -> None:
            for key, value in node.items():
                name = f"{prefix}.{key}" if prefix else key
                if isinstance(value, Mapping):
                    walk(name, value)
                else:
                    flat[name] = value

        walk("", (document or {}).get("thresholds", {}))
        return cls(flat)

    def suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self.values), n=1)
        return f"; did you mean ${close[0]}?" if close else ""


@dataclass
class Parser:
    """Parses the rules of one file; ``problems`` collects what went wrong."""

    positions: Positions
    thresholds: Thresholds
    problems: list[Problem] = field(default_factory=list)

    def rules(self, stage: str, items: Sequence[Mapping[str, Any]], key: str) -> list[Rule]:
        parsed = []
        for index, item in enumerate(items):
            if item.get("enabled", True) is False:
                continue
            parsed.append(self.rule(stage, item, (key, index), index))
        return parsed

    def rule(self, stage: str, item: Mapping[str, Any], at: PathKey, order: int) -> Rule:
        rule_id = str(item["id"])
        when = item.get("when")
        condition = self.condition(when, (*at, "when"), rule_id) if when else ALWAYS
        return Rule(
            id=rule_id,
            stage=stage,
            when=condition,
            then=self.then(item["then"], (*at, "then"), rule_id),
            description=str(item.get("description", "")).strip(),
            priority=int(item.get("priority", 0)),
            order=order,
            location=self.positions.at(at, rule_id),
        )

    def then(self, then: Mapping[str, Any], at: PathKey, rule_id: str) -> dict[str, Any]:
        """Copy ``then``, replacing each ``where`` mapping by a condition."""
        result: dict[str, Any] = {}
        for key, value in then.items():
            if isinstance(value, list):
                result[key] = [
                    self._selector(entry, (*at, key, i), rule_id)
                    for i, entry in enumerate(value)
                ]
            else:
                result[key] = value
        return result

    def _selector(self, entry: Any, at: PathKey, rule_id: str) -> Any:
        if not isinstance(entry, Mapping) or "where" not in entry:
            return entry
        where = self.condition(entry["where"], (*at, "where"), rule_id)
        return {**entry, "where": where}

    def condition(self, data: Mapping[str, Any], at: PathKey, rule_id: str) -> Condition:
        children: list[Condition] = []
        for key, value in data.items():
            if key in GROUPS:
                members = tuple(
                    self.condition(member, (*at, key, i), rule_id)
                    for i, member in enumerate(value)
                )
                children.append(Group(key, members, self.positions.at((*at, key), rule_id)))
            elif isinstance(value, Mapping):
                for op, operand in value.items():
                    children.append(self.test(key, op, operand, (*at, key, op), rule_id))
            else:
                children.append(self.test(key, "eq", value, (*at, key), rule_id))
        if len(children) == 1:
            return children[0]
        return Group("all", tuple(children), self.positions.at(at, rule_id))

    def test(self, path: str, op: str, operand: Any, at: PathKey, rule_id: str) -> Test:
        location = self.positions.at(at, rule_id, path)
        kind = OPERATORS[op].operand
        if kind is Operand.CONDITION:
            nested = self.condition(operand, at, rule_id)
            return Test(path, op, nested, location)
        if kind is Operand.SCALARS:
            values = [self.resolve(v, location) for v in operand]
            refs = [v for v in operand if isinstance(v, str) and _REFERENCE.match(v)]
            return Test(path, op, tuple(values), location, ",".join(refs) or None)
        reference = operand if isinstance(operand, str) and _REFERENCE.match(operand) else None
        resolved = self.resolve(operand, location)
        if kind is Operand.REGEX:
            self.check_pattern(resolved, location)
        return Test(path, op, resolved, location, reference)

    def check_pattern(self, pattern: Any, location: Location) -> None:
        """Record E205 when RE2 cannot compile a ``matches`` pattern."""
        if not isinstance(pattern, str):
            return
        reason = patterns.problem(pattern)
        if reason is not None:
            self.problems.append(
                Problem(
                    "E205",
                    f"{pattern!r} is not a pattern this service can match: "
                    f"{reason}; write it in RE2 syntax (as Prometheus does: no "
                    "back-references or look-arounds), it always matches the "
                    "whole string",
                    location,
                )
            )

    def resolve(self, operand: Any, location: Location) -> Any:
        """Replace a ``$group.name`` reference by its value; unescape ``$$``."""
        if not isinstance(operand, str):
            return operand
        if operand.startswith("$$"):
            return operand[1:]
        if not _REFERENCE.match(operand):
            return operand
        name = operand[1:]
        if name not in self.thresholds.values:
            self.problems.append(
                Problem(
                    "E203",
                    f"unknown threshold reference {operand}: thresholds.yaml has no "
                    f"{name}{self.thresholds.suggest(name)} (define it under "
                    "`thresholds:` or fix the name)",
                    location,
                )
            )
            return None
        return self.thresholds.values[name]
