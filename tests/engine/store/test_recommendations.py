from __future__ import annotations

from datetime import timedelta

import pytest

from engine.errors import ConflictError
from engine.runtime import FixedClock, SequentialIds
from engine.store.approvals import Subject, approvals_of
from engine.store.db import Database
from engine.store.recommendations import (
    RecommendationIn,
    add_recommendation,
    decide_recommendation,
    expire_due,
    get_recommendation,
    mark_executed,
    pending_recommendations,
)
from tests.engine.store.helpers import open_incident


def recommend(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock, ttl_s: int = 3600
) -> str:
    incident_id = open_incident(db, org_id, ids, clock)
    proposal = RecommendationIn(
        key="restart-web",
        text="Restart web",
        risk="low",
        action="pm2_restart",
        target="web",
        expires_at=clock.now() + timedelta(seconds=ttl_s),
    )
    with db.sessions.begin() as session:
        return add_recommendation(
            session,
            proposal,
            ids=ids,
            org_id=org_id,
            incident_id=incident_id,
            now=clock.now(),
        ).id


def decide(
    db: Database,
    org_id: str,
    rec_id: str,
    ids: SequentialIds,
    clock: FixedClock,
    *,
    approve: bool = True,
    actor: str = "ana",
) -> str:
    with db.sessions.begin() as session:
        return decide_recommendation(
            session,
            org_id,
            rec_id,
            ids=ids,
            approve=approve,
            actor=actor,
            now=clock.now(),
        ).status


def test_approval_records_who_decided(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    rec_id = recommend(db, org_id, ids, clock)

    assert decide(db, org_id, rec_id, ids, clock) == "approved"
    with db.readers() as session:
        rec = get_recommendation(session, org_id, rec_id)
        [vote] = approvals_of(session, org_id, Subject.RECOMMENDATION, rec_id)
    assert (rec.decided_by, rec.decided_at) == ("ana", clock.now())
    assert (vote.actor, vote.decision) == ("ana", "approved")
    with db.readers() as session:
        assert pending_recommendations(session, org_id) == []


def test_a_decided_recommendation_cannot_be_decided_again(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    rec_id = recommend(db, org_id, ids, clock)
    decide(db, org_id, rec_id, ids, clock, approve=False)

    with pytest.raises(ConflictError) as caught:
        decide(db, org_id, rec_id, ids, clock, actor="bo")

    assert caught.value.code == "E712"
    assert "is already rejected" in caught.value.message


def test_an_expired_recommendation_is_refused_then_swept(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    rec_id = recommend(db, org_id, ids, clock, ttl_s=60)
    clock.advance(61)

    with pytest.raises(ConflictError) as caught:
        decide(db, org_id, rec_id, ids, clock)
    with db.sessions.begin() as session:
        swept = expire_due(session, now=clock.now())

    assert caught.value.code == "E714"
    assert swept == 1
    with db.readers() as session:
        assert get_recommendation(session, org_id, rec_id).status == "expired"


def test_only_an_approved_one_is_executed_and_only_a_pending_one_auto_executed(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    rec_id = recommend(db, org_id, ids, clock)

    with db.sessions.begin() as session:
        early = mark_executed(session, org_id, rec_id, auto=False, now=clock.now())
        auto = mark_executed(session, org_id, rec_id, auto=True, now=clock.now())
        again = mark_executed(session, org_id, rec_id, auto=True, now=clock.now())

    assert (early, auto, again) == (False, True, False)
