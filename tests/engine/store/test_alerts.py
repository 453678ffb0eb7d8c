from __future__ import annotations

from engine.runtime import FixedClock, SequentialIds
from engine.store.alerts import AlertIn, alerts_of, find_by_idempotency_key
from engine.store.db import Database
from engine.store.incidents import open_or_fold


def test_alert_keeps_payload_and_facts_and_is_found_by_its_key(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    sent = AlertIn(
        source="grafana",
        kind="threshold_exceeded",
        fingerprint="abc",
        severity="critical",
        received_at=clock.now(),
        starts_at=clock.now(),
        payload={"title": "[FIRING:1] Disk", "orgId": 1},
        facts={"alert": {"name": "Disk", "value": 97}},
        idempotency_key="gf-1",
    )
    with db.sessions.begin() as session:
        incident_id = open_or_fold(
            session, org_id, "disk", "critical", "Disk", sent, ids=ids
        ).incident.id

    with db.readers() as session:
        [stored] = alerts_of(session, org_id, incident_id)
        found = find_by_idempotency_key(session, org_id, "gf-1")
        elsewhere = find_by_idempotency_key(session, "org_other", "gf-1")

    assert stored.payload == {"title": "[FIRING:1] Disk", "orgId": 1}
    assert stored.facts == {"alert": {"name": "Disk", "value": 97}}
    assert stored.starts_at == clock.now()
    assert found is not None and found.id == stored.id
    assert elsewhere is None
