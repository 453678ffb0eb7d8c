from __future__ import annotations

import pytest
from sqlalchemy import select

from engine.errors import StoreError
from engine.runtime import FixedClock, SequentialIds
from engine.store import events
from engine.store.db import Database
from engine.store.events import append_event, timeline
from engine.store.models import IncidentEvent
from tests.engine.store.helpers import open_incident


def test_changing_a_stored_event_is_refused(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = open_incident(db, org_id, ids, clock)

    with pytest.raises(StoreError) as caught, db.sessions.begin() as session:
        event = session.scalars(select(IncidentEvent)).one()
        event.message = "rewritten history"
        session.flush()

    assert caught.value.code == "E706"
    assert "append a correcting event instead" in caught.value.message
    with db.readers() as session:
        assert timeline(session, org_id, incident_id)[0].message == "t"


def test_deleting_a_stored_event_is_refused(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = open_incident(db, org_id, ids, clock)

    with pytest.raises(StoreError), db.sessions.begin() as session:
        session.delete(session.scalars(select(IncidentEvent)).one())

    with db.readers() as session:
        assert len(timeline(session, org_id, incident_id)) == 1


def test_events_module_offers_no_update_or_delete() -> None:
    public = [name for name in dir(events) if not name.startswith("_")]
    writers = [
        n for n in public if any(w in n for w in ("update", "delete", "edit", "remove"))
    ]

    assert writers == []


def test_appended_event_keeps_its_data_and_actor(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = open_incident(db, org_id, ids, clock)
    with db.sessions.begin() as session:
        append_event(
            session,
            org_id=org_id,
            incident_id=incident_id,
            at=clock.advance(5),
            kind="stage.completed",
            stage="snapshot",
            actor="worker:w1",
            data={"duration_ms": 812, "sections": ["pm2", "nginx"]},
        )

    with db.readers() as session:
        last = timeline(session, org_id, incident_id)[-1]
    assert (last.actor, last.stage, last.at) == ("worker:w1", "snapshot", clock.now())
    assert last.data == {"duration_ms": 812, "sections": ["pm2", "nginx"]}
