"""Turning evaluations into audit rows a reviewer can read.

Every rule that matched is stored with the policy version, its place
(file:line), the facts it read and what it decided, and whether it was the
one selected by conflict resolution. ``where`` selectors inside a rule's
``then`` are conditions, not data: they are written out as text.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.policy.model import Evaluation, Group, Test
from engine.runtime import IdGenerator
from engine.store.matches import MatchRecord, record_matches


def describe(condition: Group | Test) -> str:
    """A condition as one line: ``memory_mb gte 900 and restart_loop ne True``."""
    if isinstance(condition, Test):
        operand = condition.operand
        if isinstance(operand, Group | Test):
            return f"{condition.path} {condition.op} ({describe(operand)})"
        shown = condition.reference or repr(operand)
        return f"{condition.path} {condition.op} {shown}"
    joiner = {"all": " and ", "any": " or ", "none": " nor "}[condition.kind]
    text = joiner.join(describe(child) for child in condition.children)
    return f"not ({text})" if condition.kind == "none" else f"({text})"


def jsonable(value: Any) -> Any:
    if isinstance(value, Group | Test):
        return describe(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def record(
    session: Session,
    evaluation: Evaluation,
    selected: Collection[str],
    *,
    ids: IdGenerator,
    org_id: str,
    incident_id: str,
    at: datetime,
) -> None:
    records = [
        MatchRecord(
            rule_id=match.rule.id,
            file=match.rule.location.file,
            line=match.rule.location.line,
            selected=match.rule.id in selected,
            facts_used=jsonable(dict(match.facts_used)),
            outcome=jsonable(dict(match.then)),
        )
        for match in evaluation.matches
    ]
    if records:
        record_matches(
            session,
            records,
            ids=ids,
            org_id=org_id,
            incident_id=incident_id,
            stage=evaluation.stage,
            policy_version=evaluation.policy_version,
            at=at,
        )
