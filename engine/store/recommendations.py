"""Recommendations: next steps that wait for a person, or run when allowed.

A recommendation is born ``pending``. A reviewer approves or rejects it
(``decide_recommendation``, which also stores the ``Approval``); one past its
``expires_at`` can no longer be decided and ``expire_due`` marks it
``expired``. The executor then marks an approved one ``executed``, or a
pending one ``auto_executed`` when the policy allowed it to run without a
person. Every change is a compare-and-set on the status under a row lock, so
two reviewers deciding at once cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.errors import ConflictError, NotFoundError
from engine.runtime import IdGenerator
from engine.store.approvals import Subject, record_approval
from engine.store.models import Recommendation, RecommendationStatus
from engine.store.types import as_utc

ALREADY_DECIDED = "E712"
EXPIRED = "E714"

PENDING = RecommendationStatus.PENDING.value


@dataclass(frozen=True, slots=True)
class RecommendationIn:
    key: str  # the recommendation's id in recommend.yaml
    text: str
    risk: str  # low, medium, high
    rationale: str = ""
    action: str | None = None  # a catalog action, when the step is one
    target: str | None = None
    rule_id: str | None = None
    expires_at: datetime | None = None


def add_recommendation(
    session: Session,
    recommendation: RecommendationIn,
    *,
    ids: IdGenerator,
    org_id: str,
    incident_id: str,
    now: datetime,
) -> Recommendation:
    rec = recommendation
    row = Recommendation(
        id=ids.new("rec"),
        org_id=org_id,
        incident_id=incident_id,
        key=rec.key,
        text=rec.text,
        rationale=rec.rationale,
        risk=rec.risk,
        action=rec.action,
        target=rec.target,
        status=PENDING,
        rule_id=rec.rule_id,
        created_at=as_utc(now),
        expires_at=as_utc(rec.expires_at) if rec.expires_at else None,
    )
    session.add(row)
    session.flush()
    return row


def get_recommendation(
    session: Session, org_id: str, recommendation_id: str, *, for_update: bool = False
) -> Recommendation:
    query = select(Recommendation).where(
        Recommendation.id == recommendation_id, Recommendation.org_id == org_id
    )
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = session.scalars(query).first()
    if row is None:
        raise NotFoundError(
            f"recommendation {recommendation_id} does not exist in this "
            "organization: check the id"
        )
    return row


def decide_recommendation(
    session: Session,
    org_id: str,
    recommendation_id: str,
    *,
    ids: IdGenerator,
    approve: bool,
    actor: str,
    now: datetime,
    comment: str = "",
) -> Recommendation:
    """Approve or reject a pending recommendation, recording who did."""
    at = as_utc(now)
    row = get_recommendation(session, org_id, recommendation_id, for_update=True)
    _require_pending(row, at)
    record_approval(
        session,
        ids=ids,
        org_id=org_id,
        subject=Subject.RECOMMENDATION,
        subject_id=row.id,
        approve=approve,
        actor=actor,
        now=at,
        comment=comment,
    )
    row.status = (
        RecommendationStatus.APPROVED if approve else RecommendationStatus.REJECTED
    ).value
    row.decided_by = actor
    row.decided_at = at
    session.flush()
    return row


def _require_pending(row: Recommendation, now: datetime) -> None:
    if row.status != PENDING:
        raise ConflictError(
            f"recommendation {row.id} is already {row.status}: reload it; "
            "a decision cannot be changed",
            code=ALREADY_DECIDED,
        )
    if row.expires_at is not None and row.expires_at <= now:
        raise ConflictError(
            f"recommendation {row.id} expired at {row.expires_at.isoformat()}: "
            "it can no longer be approved; ask for a fresh evaluation",
            code=EXPIRED,
        )


def mark_executed(
    session: Session, org_id: str, recommendation_id: str, *, auto: bool, now: datetime
) -> bool:
    """Approved to executed, or pending to auto_executed; False otherwise."""
    start, end = (
        (PENDING, RecommendationStatus.AUTO_EXECUTED)
        if auto
        else (RecommendationStatus.APPROVED.value, RecommendationStatus.EXECUTED)
    )
    changed = session.execute(
        update(Recommendation)
        .where(
            Recommendation.id == recommendation_id,
            Recommendation.org_id == org_id,
            Recommendation.status == start,
        )
        .values(status=end.value, decided_at=as_utc(now))
        .execution_options(synchronize_session=False)
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]


def expire_due(session: Session, *, now: datetime) -> int:
    """Mark every pending recommendation past its expiry; return how many."""
    expired = session.execute(
        update(Recommendation)
        .where(
            Recommendation.status == PENDING,
            Recommendation.expires_at <= as_utc(now),
        )
        .values(status=RecommendationStatus.EXPIRED.value)
        .execution_options(synchronize_session=False)
    )
    return int(expired.rowcount)  # type: ignore[attr-defined]


def pending_recommendations(session: Session, org_id: str) -> list[Recommendation]:
    """The organization's recommendations waiting for a person, oldest first."""
    query = (
        select(Recommendation)
        .where(Recommendation.org_id == org_id, Recommendation.status == PENDING)
        .order_by(Recommendation.created_at, Recommendation.id)
    )
    return list(session.scalars(query))
