"""Customer message drafts: edit, approve, reject. Nothing is ever sent.

A draft that needs two approvals needs two different people (two keys):
the same key approving twice is refused.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import Reader, ReviewerCaller, ServicesDep
from api.schemas import DecisionIn, MessageEditIn, MessageOut
from engine.flow.approvals import decide_on_message, edit_message
from engine.store.messages import MessageStatus
from engine.store.models import CustomerMessage

router = APIRouter(prefix="/v1", tags=["approvals"])


@router.get("/messages")
def list_messages(
    caller: ReviewerCaller,
    session: Reader,
    status: Annotated[MessageStatus, Query()] = MessageStatus.DRAFT,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[MessageOut]:
    """The organization's customer messages with one status, oldest first."""
    rows = session.scalars(
        select(CustomerMessage)
        .where(
            CustomerMessage.org_id == caller.org_id,
            CustomerMessage.status == status.value,
        )
        .order_by(CustomerMessage.created_at, CustomerMessage.id)
        .limit(limit)
    )
    return [MessageOut.model_validate(r) for r in rows]


@router.patch("/messages/{message_id}")
def edit_draft(
    message_id: str, body: MessageEditIn, caller: ReviewerCaller, services: ServicesDep
) -> MessageOut:
    """Rewrite a draft before approving it; the original is kept."""
    with services.database.sessions.begin() as session:
        row = edit_message(
            session,
            caller.org_id,
            message_id,
            body=body.body,
            title=body.title,
            actor=caller.actor,
            now=services.runtime.clock.now(),
        )
        return MessageOut.model_validate(row)


@router.post("/messages/{message_id}/approve")
def approve_message(
    message_id: str, body: DecisionIn, caller: ReviewerCaller, services: ServicesDep
) -> MessageOut:
    """Approve a draft for a person to publish; two may be required."""
    return _decide(message_id, body, caller, services, approve=True)


@router.post("/messages/{message_id}/reject")
def reject_message(
    message_id: str, body: DecisionIn, caller: ReviewerCaller, services: ServicesDep
) -> MessageOut:
    """Reject a draft."""
    return _decide(message_id, body, caller, services, approve=False)


def _decide(
    message_id: str,
    body: DecisionIn,
    caller: ReviewerCaller,
    services: ServicesDep,
    *,
    approve: bool,
) -> MessageOut:
    with services.database.sessions.begin() as session:
        row = decide_on_message(
            session,
            caller.org_id,
            message_id,
            approve=approve,
            actor=caller.actor,
            comment=body.comment,
            ids=services.runtime.ids,
            now=services.runtime.clock.now(),
        )
        return MessageOut.model_validate(row)
