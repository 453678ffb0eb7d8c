"""Customer message drafts and the approvals they wait for.

The service drafts customer communication and never sends it: there is no
send path here or anywhere. A draft needs one or two approvals (two people,
see ``approvals``); it becomes ``approved`` when the last one needed is
given and ``rejected`` at the first rejection. Decisions on a draft that is
no longer a draft are refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import ConflictError, NotFoundError
from engine.runtime import IdGenerator
from engine.store.approvals import Subject, count_approved, record_approval
from engine.store.models import CustomerMessage
from engine.store.types import as_utc

ALREADY_DECIDED = "E712"


class MessageStatus(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # its incident was resolved first


@dataclass(frozen=True, slots=True)
class DraftIn:
    title: str
    body: str
    tone: str
    channels: Sequence[str]
    template: str
    approvals_required: int = 1  # 1 or 2


def add_draft(
    session: Session,
    draft: DraftIn,
    *,
    ids: IdGenerator,
    org_id: str,
    incident_id: str,
    now: datetime,
) -> CustomerMessage:
    row = CustomerMessage(
        id=ids.new("msg"),
        org_id=org_id,
        incident_id=incident_id,
        title=draft.title,
        body=draft.body,
        original_body=draft.body,
        tone=draft.tone,
        channels=list(draft.channels),
        status=MessageStatus.DRAFT.value,
        approvals_required=draft.approvals_required,
        template=draft.template,
        created_at=as_utc(now),
    )
    session.add(row)
    session.flush()
    return row


def decide_message(
    session: Session,
    org_id: str,
    message_id: str,
    *,
    ids: IdGenerator,
    approve: bool,
    actor: str,
    now: datetime,
    comment: str = "",
) -> CustomerMessage:
    """Record a person's decision; the draft's status follows from all of them."""
    at = as_utc(now)
    row = _locked(session, org_id, message_id)
    if row.status != MessageStatus.DRAFT.value:
        raise ConflictError(
            f"message {message_id} is already {row.status}: reload it; a "
            "decided message cannot be decided again",
            code=ALREADY_DECIDED,
        )
    record_approval(
        session,
        ids=ids,
        org_id=org_id,
        subject=Subject.MESSAGE,
        subject_id=message_id,
        approve=approve,
        actor=actor,
        now=at,
        comment=comment,
    )
    approved = count_approved(session, org_id, Subject.MESSAGE, message_id)
    if not approve:
        row.status, row.decided_at = MessageStatus.REJECTED.value, at
    elif approved >= row.approvals_required:
        row.status, row.decided_at = MessageStatus.APPROVED.value, at
    session.flush()
    return row


def _locked(session: Session, org_id: str, message_id: str) -> CustomerMessage:
    # The lock makes the count of approvals and the status change one step.
    query = (
        select(CustomerMessage)
        .where(CustomerMessage.id == message_id, CustomerMessage.org_id == org_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    row = session.scalars(query).first()
    if row is None:
        raise NotFoundError(
            f"message {message_id} does not exist in this organization: check the id"
        )
    return row
