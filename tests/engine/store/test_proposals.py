from __future__ import annotations

import pytest

from engine.errors import ConflictError
from engine.runtime import FixedClock, SequentialIds
from engine.store.approvals import Subject, approvals_of
from engine.store.db import Database
from engine.store.models import ProposalStatus
from engine.store.proposals import (
    ProposalIn,
    add_proposal,
    proposals_with_status,
    settle_proposal,
)


def propose(db: Database, org_id: str, ids: SequentialIds, clock: FixedClock) -> str:
    change = ProposalIn(
        kind="threshold",
        file="rules/thresholds.yaml",
        path="memory.critical_percent",
        old_value=90,
        new_value=93.5,
        diff="-critical_percent: 90\n+critical_percent: 93.5\n",
        evidence={"incidents": 4, "false_alarms": 3},
    )
    with db.sessions.begin() as session:
        return add_proposal(session, change, ids=ids, org_id=org_id, now=clock.now()).id


def settle(
    db: Database,
    org_id: str,
    proposal_id: str,
    ids: SequentialIds,
    clock: FixedClock,
    status: ProposalStatus,
) -> None:
    with db.sessions.begin() as session:
        settle_proposal(
            session,
            org_id,
            proposal_id,
            ids=ids,
            status=status,
            actor="ana",
            now=clock.now(),
        )


def test_applied_proposal_keeps_its_values_and_the_approval(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    proposal_id = propose(db, org_id, ids, clock)

    settle(db, org_id, proposal_id, ids, clock, ProposalStatus.APPLIED)

    with db.readers() as session:
        [applied] = proposals_with_status(session, org_id, ProposalStatus.APPLIED)
        [vote] = approvals_of(session, org_id, Subject.PROPOSAL, proposal_id)
    assert (applied.old_value, applied.new_value) == (90, 93.5)
    assert (applied.decided_by, vote.decision) == ("ana", "approved")


def test_a_settled_proposal_cannot_be_settled_again(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    proposal_id = propose(db, org_id, ids, clock)
    settle(db, org_id, proposal_id, ids, clock, ProposalStatus.REJECTED)

    with pytest.raises(ConflictError) as caught:
        settle(db, org_id, proposal_id, ids, clock, ProposalStatus.APPLIED)

    assert caught.value.code == "E712"
    with db.readers() as session:
        assert proposals_with_status(session, org_id, ProposalStatus.APPLIED) == []
