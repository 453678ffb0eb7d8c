"""The audit of policy evaluations: every rule that matched, per stage.

Each match keeps the policy version, the rule's id and place (file:line),
the facts the rule read and what it decided, and whether it was the one
selected (classification keeps the others for the audit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from engine.runtime import IdGenerator
from engine.store.models import RuleMatch
from engine.store.types import as_utc, table_of


@dataclass(frozen=True, slots=True)
class MatchRecord:
    rule_id: str
    file: str
    line: int
    selected: bool
    facts_used: Mapping[str, Any] = field(default_factory=dict)
    outcome: Mapping[str, Any] = field(default_factory=dict)


def record_matches(
    session: Session,
    matches: Iterable[MatchRecord],
    *,
    ids: IdGenerator,
    org_id: str,
    incident_id: str,
    stage: str,
    policy_version: str,
    at: datetime,
) -> int:
    """Store the matches in one statement; return how many."""
    rows = [
        {
            "id": ids.new("rmt"),
            "org_id": org_id,
            "incident_id": incident_id,
            "stage": stage,
            "policy_version": policy_version,
            "rule_id": match.rule_id,
            "file": match.file,
            "line": match.line,
            "selected": match.selected,
            "facts_used": dict(match.facts_used),
            "outcome": dict(match.outcome),
            "evaluated_at": as_utc(at),
        }
        for match in matches
    ]
    if rows:
        session.execute(insert(table_of(RuleMatch)), rows)
    return len(rows)


# Built once: the incident page runs it on every load.
_MATCHES_OF = (
    select(RuleMatch)
    .where(
        RuleMatch.org_id == bindparam("org_id"),
        RuleMatch.incident_id == bindparam("incident_id"),
    )
    .order_by(RuleMatch.evaluated_at, RuleMatch.id)
)


def matches_of(session: Session, org_id: str, incident_id: str) -> list[RuleMatch]:
    scope = {"org_id": org_id, "incident_id": incident_id}
    return list(session.scalars(_MATCHES_OF, scope))
