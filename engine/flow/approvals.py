"""What a human decides: recommendations, message drafts, proposals.

Every decision records who, when and why (``tms_approvals``) and lands on the
incident's timeline. Approving a recommendation with an action queues an
``execute`` job, which re-checks the action's guards on a fresh snapshot
before anything runs. Approving a message draft only marks it approved for a
person to publish: this service has no way to send it. Approving a proposal
writes ``thresholds.yaml`` (after validating the whole rules directory with
the change), reloads the policy and records the event; a proposal that fails
validation is refused with the reason and marked failed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from engine.errors import ConflictError, IncidentPolicyError, Location
from engine.policy import proposals as threshold_edits
from engine.runtime import IdGenerator
from engine.store import jobs
from engine.store.events import append_event
from engine.store.messages import decide_message
from engine.store.models import (
    CustomerMessage,
    Proposal,
    ProposalStatus,
    Recommendation,
)
from engine.store.proposals import settle_proposal
from engine.store.recommendations import decide_recommendation

MAX_BODY = 4000


def decide_on_recommendation(
    session: Session,
    org_id: str,
    recommendation_id: str,
    *,
    approve: bool,
    actor: str,
    comment: str,
    ids: IdGenerator,
    now: datetime,
) -> Recommendation:
    row = decide_recommendation(
        session,
        org_id,
        recommendation_id,
        ids=ids,
        approve=approve,
        actor=actor,
        now=now,
        comment=comment,
    )
    verdict = "approved" if approve else "rejected"
    append_event(
        session,
        org_id=org_id,
        incident_id=row.incident_id,
        at=now,
        kind=f"recommendation.{verdict}",
        actor=actor,
        message=f"{row.text} ({verdict}){': ' + comment if comment else ''}",
        data={"recommendation_id": row.id, "action": row.action, "target": row.target},
    )
    if approve and row.action:
        jobs.enqueue(
            session,
            ids=ids,
            org_id=org_id,
            kind="execute",
            now=now,
            incident_id=row.incident_id,
            payload={"recommendation_id": row.id, "automatic": False, "actor": actor},
        )
    return row


def edit_message(
    session: Session,
    org_id: str,
    message_id: str,
    *,
    body: str,
    title: str | None,
    actor: str,
    now: datetime,
) -> CustomerMessage:
    """A reviewer rewrites the draft before approving it."""
    row = session.get(CustomerMessage, message_id)
    if row is None or row.org_id != org_id:
        from engine.errors import NotFoundError

        raise NotFoundError(f"message {message_id} does not exist in this organization")
    if row.status != "draft":
        raise ConflictError(
            f"message {message_id} is already {row.status}: only a draft can be edited",
            code="E712",
        )
    row.body = body[:MAX_BODY]
    if title:
        row.title = title[:200]
    append_event(
        session,
        org_id=org_id,
        incident_id=row.incident_id,
        at=now,
        kind="message.edited",
        actor=actor,
        message="customer message draft edited",
        data={"message_id": row.id},
    )
    return row


def decide_on_message(
    session: Session,
    org_id: str,
    message_id: str,
    *,
    approve: bool,
    actor: str,
    comment: str,
    ids: IdGenerator,
    now: datetime,
) -> CustomerMessage:
    row = decide_message(
        session,
        org_id,
        message_id,
        ids=ids,
        approve=approve,
        actor=actor,
        now=now,
        comment=comment,
    )
    append_event(
        session,
        org_id=org_id,
        incident_id=row.incident_id,
        at=now,
        kind=f"message.{'approved' if approve else 'rejected'}_by",
        actor=actor,
        message=(
            f"{actor} {'approved' if approve else 'rejected'} the customer draft; "
            f"it is now {row.status} (publishing is up to a person)"
        ),
        data={"message_id": row.id, "status": row.status},
    )
    return row


def decide_on_proposal(
    session: Session,
    org_id: str,
    proposal_id: str,
    *,
    approve: bool,
    actor: str,
    comment: str,
    rules_dir: Path,
    reload: Callable[[], object],
    ids: IdGenerator,
    now: datetime,
) -> Proposal:
    row = session.get(Proposal, proposal_id)
    if row is None or row.org_id != org_id:
        from engine.errors import NotFoundError

        raise NotFoundError(
            f"proposal {proposal_id} does not exist in this organization"
        )
    if not approve:
        settle_proposal(
            session,
            org_id,
            proposal_id,
            ids=ids,
            status=ProposalStatus.REJECTED,
            actor=actor,
            now=now,
            comment=comment,
        )
        _proposal_event(
            session, row, actor, now, "proposal.rejected", comment or "rejected"
        )
        return row
    try:
        _apply(rules_dir, row)
    except IncidentPolicyError as exc:
        settle_proposal(
            session,
            org_id,
            proposal_id,
            ids=ids,
            status=ProposalStatus.FAILED,
            actor=actor,
            now=now,
            error=exc.message,
            comment=comment,
        )
        _proposal_event(session, row, actor, now, "proposal.failed", exc.message)
        raise ConflictError(
            f"proposal {proposal_id} was not applied: {exc.message}",
            code="E722",
            location=Location(row.file, field=row.path),
        ) from exc
    settle_proposal(
        session,
        org_id,
        proposal_id,
        ids=ids,
        status=ProposalStatus.APPLIED,
        actor=actor,
        now=now,
        comment=comment,
    )
    status = reload()
    _proposal_event(
        session,
        row,
        actor,
        now,
        "proposal.applied",
        f"{row.path}: {row.old_value} -> {row.new_value}; policy reloaded ({status})",
    )
    return row


def _apply(rules_dir: Path, row: Proposal) -> None:
    edit = threshold_edits.propose(rules_dir, row.path, row.new_value)
    if edit.old_value != row.old_value:
        raise ConflictError(
            f"{row.path} is {edit.old_value} now, not {row.old_value} as when "
            "proposed; reject this proposal",
            code="E409",
        )
    threshold_edits.apply(rules_dir, edit)


def _proposal_event(
    session: Session, row: Proposal, actor: str, now: datetime, kind: str, message: str
) -> None:
    if row.incident_id is None:
        return
    append_event(
        session,
        org_id=row.org_id,
        incident_id=row.incident_id,
        at=now,
        kind=kind,
        actor=actor,
        message=message,
        data={"proposal_id": row.id, "path": row.path},
    )
