from __future__ import annotations

import pytest

from engine.errors import ConflictError
from engine.runtime import FixedClock, SequentialIds
from engine.store.db import Database
from engine.store.messages import DraftIn, add_draft, decide_message
from tests.engine.store.helpers import open_incident


def draft(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock, needed: int
) -> str:
    incident_id = open_incident(db, org_id, ids, clock)
    text = DraftIn(
        title="Uploads are slow",
        body="We are looking into slow uploads.",
        tone="calm",
        channels=["status_page", "email"],
        template="degraded-feature",
        approvals_required=needed,
    )
    with db.sessions.begin() as session:
        return add_draft(
            session,
            text,
            ids=ids,
            org_id=org_id,
            incident_id=incident_id,
            now=clock.now(),
        ).id


def decide(
    db: Database,
    org_id: str,
    message_id: str,
    ids: SequentialIds,
    clock: FixedClock,
    actor: str,
    approve: bool = True,
) -> str:
    with db.sessions.begin() as session:
        return decide_message(
            session,
            org_id,
            message_id,
            ids=ids,
            approve=approve,
            actor=actor,
            now=clock.now(),
        ).status


def test_two_approvals_needed_means_two_people(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    message_id = draft(db, org_id, ids, clock, needed=2)

    assert decide(db, org_id, message_id, ids, clock, "ana") == "draft"
    with pytest.raises(ConflictError) as caught:
        decide(db, org_id, message_id, ids, clock, "ana")
    assert decide(db, org_id, message_id, ids, clock, "bo") == "approved"

    assert caught.value.code == "E713"
    assert "must come from another person" in caught.value.message


def test_one_rejection_rejects_the_draft_and_ends_it(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    message_id = draft(db, org_id, ids, clock, needed=2)

    assert (
        decide(db, org_id, message_id, ids, clock, "ana", approve=False) == "rejected"
    )
    with pytest.raises(ConflictError, match="is already rejected"):
        decide(db, org_id, message_id, ids, clock, "bo")
