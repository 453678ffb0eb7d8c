from __future__ import annotations

import pytest

from engine.errors import ConflictError
from engine.runtime import FixedClock, SequentialIds
from engine.store.approvals import Subject, count_approved, record_approval
from engine.store.db import Database


def vote(
    db: Database,
    org_id: str,
    ids: SequentialIds,
    clock: FixedClock,
    actor: str,
    approve: bool,
) -> None:
    with db.sessions.begin() as session:
        record_approval(
            session,
            ids=ids,
            org_id=org_id,
            subject=Subject.MESSAGE,
            subject_id="msg_1",
            approve=approve,
            actor=actor,
            now=clock.now(),
        )


def test_only_approvals_by_distinct_people_are_counted(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    vote(db, org_id, ids, clock, "ana", approve=True)
    vote(db, org_id, ids, clock, "bo", approve=False)
    with pytest.raises(ConflictError):
        vote(db, org_id, ids, clock, "ana", approve=True)

    with db.readers() as session:
        assert count_approved(session, org_id, Subject.MESSAGE, "msg_1") == 1
        assert count_approved(session, "org_other", Subject.MESSAGE, "msg_1") == 0
