from __future__ import annotations

from engine.facts.base import Snapshot as Taken
from engine.runtime import FixedClock, SequentialIds
from engine.store.db import Database
from engine.store.incidents import load_incident
from engine.store.snapshots import add_snapshot, latest_snapshot
from tests.engine.store.helpers import open_incident


def test_snapshot_is_stored_whole_and_the_latest_is_found(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = open_incident(db, org_id, ids, clock)
    first = Taken(clock.now(), {"memory": {"percent": 97.5}}, {"memory": "psutil"})
    second = Taken(
        clock.advance(90), {"memory": {"percent": 61.0}}, durations_ms={"pm2": 312.5}
    )
    with db.sessions.begin() as session:
        for taken, purpose in ((first, "initial"), (second, "verify")):
            add_snapshot(
                session,
                taken,
                ids=ids,
                org_id=org_id,
                incident_id=incident_id,
                purpose=purpose,
            )

    with db.readers() as session:
        latest = latest_snapshot(session, org_id, incident_id)
        view = load_incident(session, org_id, incident_id)

    assert latest is not None
    assert (latest.purpose, latest.facts, latest.durations) == (
        "verify",
        {"memory": {"percent": 61.0}},
        {"pm2": 312.5},
    )
    assert [s.purpose for s in view.snapshots] == ["initial", "verify"]
    assert view.snapshots[0].provenance == {"memory": "psutil"}


def test_another_organization_sees_no_snapshot(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = open_incident(db, org_id, ids, clock)
    with db.sessions.begin() as session:
        add_snapshot(
            session,
            Taken(clock.now(), {}),
            ids=ids,
            org_id=org_id,
            incident_id=incident_id,
            purpose="initial",
        )

    with db.readers() as session:
        assert latest_snapshot(session, "org_other", incident_id) is None
