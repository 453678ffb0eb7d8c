"""Policy change proposals from the learning loop, and their outcome.

A proposal (a threshold or rule change, with its diff and evidence) stays
``pending`` until a person decides. A rejection settles it as ``rejected``;
an approval lets the caller apply the change and settle it as ``applied`` or
``failed`` with the error. Settling stores the person's ``Approval`` and is
a compare-and-set from ``pending``, so a proposal is settled at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.errors import ConflictError
from engine.runtime import IdGenerator
from engine.store.approvals import Subject, record_approval
from engine.store.models import Proposal, ProposalStatus
from engine.store.types import as_utc

ALREADY_DECIDED = "E712"


@dataclass(frozen=True, slots=True)
class ProposalIn:
    kind: str  # threshold, rule
    file: str
    path: str  # where in the file: "memory.critical_percent"
    old_value: Any  # any JSON value: 90, or a rule mapping
    new_value: Any
    diff: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    incident_id: str | None = None
    review_id: str | None = None


def add_proposal(
    session: Session,
    proposal: ProposalIn,
    *,
    ids: IdGenerator,
    org_id: str,
    now: datetime,
) -> Proposal:
    p = proposal
    row = Proposal(
        id=ids.new("prp"),
        org_id=org_id,
        incident_id=p.incident_id,
        review_id=p.review_id,
        kind=p.kind,
        file=p.file,
        path=p.path,
        old_value=p.old_value,
        new_value=p.new_value,
        diff=p.diff,
        evidence=dict(p.evidence),
        status=ProposalStatus.PENDING.value,
        created_at=as_utc(now),
    )
    session.add(row)
    session.flush()
    return row


def settle_proposal(
    session: Session,
    org_id: str,
    proposal_id: str,
    *,
    ids: IdGenerator,
    status: ProposalStatus,
    actor: str,
    now: datetime,
    error: str | None = None,
    comment: str = "",
) -> None:
    """Move a pending proposal to applied, rejected or failed, once."""
    at = as_utc(now)
    settled = session.execute(
        update(Proposal)
        .where(
            Proposal.id == proposal_id,
            Proposal.org_id == org_id,
            Proposal.status == ProposalStatus.PENDING.value,
        )
        .values(status=status.value, error=error, decided_by=actor, decided_at=at)
        .execution_options(synchronize_session=False)
    )
    if not settled.rowcount:  # type: ignore[attr-defined]
        raise ConflictError(
            f"proposal {proposal_id} is not pending (or does not exist in this "
            "organization): reload it; a settled proposal cannot change",
            code=ALREADY_DECIDED,
        )
    record_approval(
        session,
        ids=ids,
        org_id=org_id,
        subject=Subject.PROPOSAL,
        subject_id=proposal_id,
        approve=status is not ProposalStatus.REJECTED,
        actor=actor,
        now=at,
        comment=comment,
    )


def proposals_with_status(
    session: Session, org_id: str, status: ProposalStatus
) -> list[Proposal]:
    query = (
        select(Proposal)
        .where(Proposal.org_id == org_id, Proposal.status == status.value)
        .order_by(Proposal.created_at, Proposal.id)
    )
    return list(session.scalars(query))
