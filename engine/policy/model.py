"""The parsed policy: rules and their conditions as immutable values.

The loader turns rule files into these objects; the checker inspects them,
the compiler turns them into engine rulesets and the explaining evaluator
walks them. Nothing here knows about YAML or durable_rules.

A condition is a tree: ``Group`` nodes (``all``, ``any``, ``none``) over
``Test`` leaves. A leaf tests one fact path with one operator; its operand is
already resolved (a threshold reference ``$memory.critical_percent`` is
replaced by its number, and the reference is kept for the audit). The
operand of ``any_item`` and ``all_items`` is itself a condition, whose paths
are relative to the list item.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import Location

STAGES = (
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
)
"""Stages whose rules are evaluated by the engine, in flow order.

``watch`` rules live in ``intake.yaml`` (they raise alerts from the host's own
snapshot); ``guards`` are the catalog's preconditions and verifications,
compiled from ``actions.yaml``.
"""


@dataclass(frozen=True, slots=True)
class Test:
    path: str
    op: str
    operand: Any
    location: Location = field(default_factory=Location, compare=False)
    reference: str | None = None  # "$memory.critical_percent" when one was used

    def walk(self) -> Iterator[Condition]:
        yield self
        if isinstance(self.operand, Group | Test):
            yield from self.operand.walk()


@dataclass(frozen=True, slots=True)
class Group:
    kind: str  # all | any | none
    children: tuple[Condition, ...]
    location: Location = field(default_factory=Location, compare=False)

    def walk(self) -> Iterator[Condition]:
        yield self
        for child in self.children:
            yield from child.walk()


Condition = Test | Group

ALWAYS = Group("all", ())
"""The empty condition: a rule with no ``when`` always matches."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    stage: str
    when: Condition
    then: Mapping[str, Any]
    description: str = ""
    priority: int = 0
    order: int = 0  # position in its file, for the last tie-break
    location: Location = field(default_factory=Location)

    def sort_key(self) -> tuple[int, int]:
        """Higher priority first, then file order."""
        return (-self.priority, self.order)


@dataclass(frozen=True, slots=True)
class Match:
    """One rule that matched one facts document."""

    rule: Rule
    facts_used: Mapping[str, Any]

    @property
    def then(self) -> Mapping[str, Any]:
        return self.rule.then


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Every rule of one stage that matched one facts document, in rule order.

    ``facts`` is the document the stage evaluated (stages add their own values
    to it), so ``rules explain`` can show every condition against it.
    """

    stage: str
    policy_version: str
    matches: tuple[Match, ...]
    facts: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(m.rule.id for m in self.matches)


def leaf_paths(condition: Condition, prefix: str = "") -> Iterator[tuple[str, Test]]:
    """Yield every leaf with its absolute path (item paths joined with ``[]``)."""
    if isinstance(condition, Group):
        for child in condition.children:
            yield from leaf_paths(child, prefix)
        return
    path = f"{prefix}{condition.path}"
    yield path, condition
    if isinstance(condition.operand, Group | Test):
        yield from leaf_paths(condition.operand, f"{path}[].")
