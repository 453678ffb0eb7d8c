"""People's decisions on recommendations, message drafts and proposals.

An ``Approval`` row is the record of one person's decision on one subject.
The table allows one decision per person and subject, so a draft that needs
two approvals needs two people: the same reviewer approving twice is refused
with a ``ConflictError``, not counted twice. The subject's own status change
is made by its module (``recommendations``, ``messages``, ``proposals``) in
the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.errors import ConflictError
from engine.runtime import IdGenerator
from engine.store.models import Approval
from engine.store.types import as_utc

SAME_PERSON = "E713"


class Subject(StrEnum):
    RECOMMENDATION = "recommendation"
    MESSAGE = "message"
    PROPOSAL = "proposal"


def record_approval(
    session: Session,
    *,
    ids: IdGenerator,
    org_id: str,
    subject: Subject,
    subject_id: str,
    approve: bool,
    actor: str,
    now: datetime,
    comment: str = "",
) -> Approval:
    """Store one person's decision; refuse a second one by the same person."""
    row = Approval(
        id=ids.new("apr"),
        org_id=org_id,
        subject_type=subject.value,
        subject_id=subject_id,
        decision="approved" if approve else "rejected",
        actor=actor,
        comment=comment,
        at=as_utc(now),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise ConflictError(
            f"{actor} has already decided on {subject.value} {subject_id}: "
            "a further approval must come from another person",
            code=SAME_PERSON,
        ) from exc
    return row


def approvals_of(
    session: Session, org_id: str, subject: Subject, subject_id: str
) -> list[Approval]:
    query = (
        select(Approval)
        .where(
            Approval.org_id == org_id,
            Approval.subject_type == subject.value,
            Approval.subject_id == subject_id,
        )
        .order_by(Approval.at, Approval.id)
    )
    return list(session.scalars(query))


def count_approved(
    session: Session, org_id: str, subject: Subject, subject_id: str
) -> int:
    query = select(func.count()).where(
        Approval.org_id == org_id,
        Approval.subject_type == subject.value,
        Approval.subject_id == subject_id,
        Approval.decision == "approved",
    )
    return int(session.scalar(query) or 0)
