"""The learning loop: a review of a resolved incident, and proposals.

Review facts are derived from the incident's timeline and the organization's
history (``derive``): how often the alert fired and cleared, whether a person
reported it first, how long a warning preceded the critical signal, how
often the same recommendation was approved unchanged, how long approvals
waited, how much of the customer draft people rewrote, how many similar
incidents the last 30 days saw. Decision 4 says whether the root cause is
identified (prevention steps) or the incident is flagged for review. The
learning rules turn the facts into prevention steps, alert improvements,
automation and UX suggestions, and threshold proposals; a proposal is only a
proposal until a human approves it (``engine.policy.proposals``).
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.flow import decide
from engine.flow.outcomes import TYPE_LABELS, Proposal, Review
from engine.policy import resolve
from engine.policy.policy import Policy

LISTS = ("prevention", "alert_improvements", "automation", "ux")


@dataclass(frozen=True)
class AlertEvent:
    at: datetime
    status: str  # firing | resolved
    kind: str
    source: str


@dataclass(frozen=True)
class ApprovalRecord:
    requested_at: datetime
    decided_at: datetime | None
    subject: str  # recommendation id or "message"


@dataclass(frozen=True)
class History:
    """What the review needs beyond the incident's own rows."""

    alerts: Sequence[AlertEvent] = ()
    approvals: Sequence[ApprovalRecord] = ()
    severity_raised_at: datetime | None = None  # first rise to critical
    draft_original: str | None = None
    draft_final: str | None = None
    same_approval_count: int = 0
    same_approval_text: str | None = None
    similar_incidents_30d: int = 0
    timeline: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def derive(
    history: History,
    opened_at: datetime,
    first_signal_at: datetime,
    resolved_at: datetime,
) -> dict[str, Any]:
    """The ``review`` facts the learning rules read."""
    statuses = [a.status for a in sorted(history.alerts, key=lambda a: a.at)]
    flaps = sum(
        1
        for before, after in itertools.pairwise(statuses)
        if before == "resolved" and after == "firing"
    )
    first = min(history.alerts, key=lambda a: a.at, default=None)
    waits = [
        (a.decided_at - a.requested_at).total_seconds() / 60
        for a in history.approvals
        if a.decided_at is not None
    ]
    facts: dict[str, Any] = {
        "alert_flaps": flaps,
        "detected_by_hand": bool(first and first.kind == "manual"),
        "same_approval_count": history.same_approval_count,
        "same_approval_text": history.same_approval_text,
        "similar_incidents_30d": history.similar_incidents_30d,
        "time_to_detect_minutes": _minutes(first_signal_at, opened_at),
        "time_to_resolve_minutes": _minutes(opened_at, resolved_at),
    }
    if history.severity_raised_at is not None:
        facts["threshold_lead_minutes"] = _minutes(
            opened_at, history.severity_raised_at
        )
    if waits:
        facts["approval_wait_minutes"] = round(max(waits), 1)
    if history.draft_original and history.draft_final is not None:
        same = difflib.SequenceMatcher(
            None, history.draft_original, history.draft_final
        )
        facts["draft_edit_ratio"] = round(1 - same.ratio(), 3)
    return facts


def _minutes(start: datetime, end: datetime) -> float:
    return round(max((end - start).total_seconds(), 0.0) / 60, 1)


def review(
    policy: Policy,
    facts: Mapping[str, Any],
    review_facts: Mapping[str, Any],
    timeline: Sequence[Mapping[str, Any]],
) -> Review:
    context = _context(policy, facts, review_facts)
    root = decide.decide(policy, decide.ROOT_CAUSE, context)
    evaluation = policy.evaluate("learning", context)
    lists = resolve.union_lists(evaluation.matches, (*LISTS, "proposals"))
    rendered = {name: _texts(policy, lists[name], context) for name in LISTS}
    if not root.value:
        rendered["prevention"] = ()
    return Review(
        root_cause=(facts.get("resolution") or {}).get("root_cause"),
        root_cause_identified=root,
        flagged_for_review=not root.value,
        timeline=tuple(timeline),
        prevention=rendered["prevention"],
        alert_improvements=rendered["alert_improvements"],
        automation=rendered["automation"],
        ux=rendered["ux"],
        proposals=_proposals(policy, lists["proposals"], context),
        facts=dict(review_facts),
        evaluation=evaluation,
    )


def _context(
    policy: Policy, facts: Mapping[str, Any], review_facts: Mapping[str, Any]
) -> dict[str, Any]:
    kind = (facts.get("classification") or {}).get("type", "unknown")
    return {
        **facts,
        "review": dict(review_facts),
        "type_label": TYPE_LABELS.get(kind, kind),
        "thresholds": policy.source.documents.get("thresholds", {}).get(
            "thresholds", {}
        ),
    }


def _texts(
    policy: Policy, entries: Sequence[tuple[str, Any]], context: Mapping[str, Any]
) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for _, text in entries:
        seen.setdefault(policy.render(str(text), context), None)
    return tuple(t for t in seen if t)


def _proposals(
    policy: Policy, entries: Sequence[tuple[str, Any]], context: Mapping[str, Any]
) -> tuple[Proposal, ...]:
    values = policy.source.thresholds.values
    found: dict[str, Proposal] = {}
    for rule_id, entry in entries:
        name = str(entry["threshold"])
        new = _number(policy, entry["value"], context)
        old = values.get(name)
        if (
            new is None
            or name in found
            or not isinstance(old, int | float)
            or new == old
        ):
            continue
        reason = policy.render(str(entry["reason"]), context)
        found[name] = Proposal(name, old, new, reason, rule_id)
    return tuple(found.values())


def _number(
    policy: Policy, value: Any, context: Mapping[str, Any]
) -> float | int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = policy.render(str(value), context)
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else round(number, 4)
