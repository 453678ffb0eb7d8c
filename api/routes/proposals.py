"""Policy change proposals from the learning loop: list, approve, reject.

Approving writes the change into the rules directory and reloads the
policy, which every organization on the service runs: only the operator
organization's reviewers and admins may approve. Any organization may
reject its own proposals.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import Reader, ReviewerCaller, ServicesDep
from api.schemas import DecisionIn, ProposalOut
from engine.errors import ConflictError
from engine.flow.approvals import decide_on_proposal
from engine.store.models import Proposal, ProposalStatus

router = APIRouter(prefix="/v1", tags=["approvals"])

NOT_APPLIED = "E722"


@router.get("/proposals")
def list_proposals(
    caller: ReviewerCaller,
    session: Reader,
    status: Annotated[ProposalStatus, Query()] = ProposalStatus.PENDING,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ProposalOut]:
    """The organization's proposals with one status, oldest first."""
    rows = session.scalars(
        select(Proposal)
        .where(Proposal.org_id == caller.org_id, Proposal.status == status.value)
        .order_by(Proposal.created_at, Proposal.id)
        .limit(limit)
    )
    return [ProposalOut.model_validate(r) for r in rows]


@router.post("/proposals/{proposal_id}/approve")
def approve_proposal(
    proposal_id: str, body: DecisionIn, caller: ReviewerCaller, services: ServicesDep
) -> ProposalOut:
    """Apply a proposal to the rules and reload the policy."""
    services.require_operator(caller, "approving a proposal")
    return _decide(proposal_id, body, caller, services, approve=True)


@router.post("/proposals/{proposal_id}/reject")
def reject_proposal(
    proposal_id: str, body: DecisionIn, caller: ReviewerCaller, services: ServicesDep
) -> ProposalOut:
    """Reject a proposal; the rules stay as they are."""
    return _decide(proposal_id, body, caller, services, approve=False)


def _decide(
    proposal_id: str,
    body: DecisionIn,
    caller: ReviewerCaller,
    services: ServicesDep,
    *,
    approve: bool,
) -> ProposalOut:
    failure: ConflictError | None = None
    with services.database.sessions.begin() as session:
        try:
            row = decide_on_proposal(
                session,
                caller.org_id,
                proposal_id,
                approve=approve,
                actor=caller.actor,
                comment=body.comment,
                rules_dir=services.policy.current.source.directory,
                reload=services.reload,
                ids=services.runtime.ids,
                now=services.runtime.clock.now(),
            )
            session.refresh(row)
            out = ProposalOut.model_validate(row)
        except ConflictError as exc:
            # The failed attempt is recorded (status failed, the reason on the
            # timeline) before the refusal is answered.
            if exc.code != NOT_APPLIED:
                raise
            failure = exc
    if failure is not None:
        raise failure
    return out
