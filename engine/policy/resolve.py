"""Conflict resolution: from a stage's matches to that stage's outcome.

The engine returns every rule that matched; each stage needs one answer.
The rules, per stage (the README's rule reference says the same):

- classify: the highest priority wins; ties go to the higher confidence, then
  to the rule earlier in its file. No match: ``unknown``. The losers are kept.
- intake, brief, messages, decisions: per field (per decision), the highest
  priority match that sets it wins, over the file's defaults.
- impact: the highest level among the matches (none < minor < major <
  critical).
- stabilize, recommend: the union of every match's items, fanned out over
  ``for_each`` lists, de-duplicated per (action, target) or per id; the
  higher-priority rule's item is kept.
- watch, learning: the union.

Matches arrive sorted by ``Rule.sort_key`` (priority, then file order), so
"first" below always means "highest priority".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.policy.model import Condition, Evaluation, Match
from engine.policy.verdicts import lookup, select

UNKNOWN = "unknown"
LEVELS = ("none", "minor", "major", "critical")

Render = Callable[[str, Mapping[str, Any]], str]
"""Renders a template text of the policy with a context."""


@dataclass(frozen=True)
class Classification:
    type: str
    confidence: float
    rule_id: str | None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    others: tuple[str, ...] = ()  # rule ids of the matches that lost


def classify(evaluation: Evaluation) -> Classification:
    if not evaluation.matches:
        return Classification(UNKNOWN, 0.0, None)
    ranked = sorted(
        evaluation.matches,
        key=lambda m: (-m.rule.priority, -float(m.then["confidence"]), m.rule.order),
    )
    winner = ranked[0]
    return Classification(
        type=str(winner.then["type"]),
        confidence=float(winner.then["confidence"]),
        rule_id=winner.rule.id,
        evidence=dict(winner.facts_used),
        others=tuple(m.rule.id for m in ranked[1:]),
    )


def first_per_field(
    matches: Sequence[Match], defaults: Mapping[str, Any], fields: Sequence[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Each field from the highest-priority match that sets it, else default.

    Returns the values and, per field, the id of the rule that set it
    ("default" when none did).
    """
    values = {name: defaults.get(name) for name in fields}
    origin = dict.fromkeys(fields, "default")
    for name in fields:
        for match in matches:
            if name in match.then:
                values[name] = match.then[name]
                origin[name] = match.rule.id
                break
    return values, origin


def decisions(
    evaluation: Evaluation, defaults: Mapping[str, bool]
) -> dict[str, tuple[bool, str]]:
    """Every decision's value and the rule that set it (or "default")."""
    result = {name: (bool(value), "default") for name, value in defaults.items()}
    decided: set[str] = set()
    for match in evaluation.matches:
        name = str(match.then["decision"])
        if name not in decided:
            decided.add(name)
            result[name] = (bool(match.then["value"]), match.rule.id)
    return result


def impact_level(evaluation: Evaluation) -> tuple[str, str | None]:
    """The highest level among the matches, and the rule that gave it."""
    best, rule_id = "none", None
    for match in evaluation.matches:
        level = str(match.then["level"])
        if LEVELS.index(level) > LEVELS.index(best):
            best, rule_id = level, match.rule.id
    return best, rule_id


@dataclass(frozen=True)
class PlannedItem:
    """One fanned-out item of a stabilize action or a recommendation."""

    rule_id: str
    fields: Mapping[str, Any]  # the item's fields, templates rendered
    item: Mapping[str, Any] | None = None  # the for_each element it came from


def fan_out(
    matches: Sequence[Match],
    key: str,
    facts: Mapping[str, Any],
    render: Render,
    rendered: Sequence[str],
) -> list[PlannedItem]:
    """Expand each match's ``then[key]`` list over its ``for_each`` facts."""
    planned: list[PlannedItem] = []
    for match in matches:
        for entry in match.then.get(key, []):
            planned.extend(_expand(match.rule.id, entry, facts, render, rendered))
    return planned


def _expand(
    rule_id: str,
    entry: Mapping[str, Any],
    facts: Mapping[str, Any],
    render: Render,
    rendered: Sequence[str],
) -> list[PlannedItem]:
    plain = {k: v for k, v in entry.items() if k not in ("for_each", "where")}
    if "for_each" not in entry:
        return [PlannedItem(rule_id, _render(plain, facts, render, rendered))]
    where: Condition | None = entry.get("where")
    items = select(lookup(facts, entry["for_each"]), where)
    return [
        PlannedItem(
            rule_id, _render(plain, {**facts, "item": item}, render, rendered), item
        )
        for item in items
    ]


def _render(
    fields: Mapping[str, Any],
    context: Mapping[str, Any],
    render: Render,
    rendered: Sequence[str],
) -> dict[str, Any]:
    return {
        name: render(value, context)
        if name in rendered and isinstance(value, str)
        else value
        for name, value in fields.items()
    }


def unique(
    items: Sequence[PlannedItem], key: Callable[[PlannedItem], Any]
) -> list[PlannedItem]:
    """Keep the first item per key (the higher-priority rule's)."""
    seen: set[Any] = set()
    kept = []
    for item in items:
        identity = key(item)
        if identity not in seen:
            seen.add(identity)
            kept.append(item)
    return kept


def union_lists(
    matches: Sequence[Match], fields: Sequence[str]
) -> dict[str, list[tuple[str, Any]]]:
    """Every match's entries of each list field, with the rule that gave them."""
    result: dict[str, list[tuple[str, Any]]] = {name: [] for name in fields}
    for match in matches:
        for name in fields:
            for entry in match.then.get(name, []):
                result[name].append((match.rule.id, entry))
    return result
