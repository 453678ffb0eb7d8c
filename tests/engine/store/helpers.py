"""Small builders shared by the store tests."""

from __future__ import annotations

from engine.runtime import FixedClock, SequentialIds
from engine.store.alerts import AlertIn
from engine.store.db import Database
from engine.store.incidents import open_or_fold


def open_incident(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock, key: str = "k"
) -> str:
    alert = AlertIn(
        source="watcher",
        kind="threshold_exceeded",
        fingerprint=key,
        severity="warning",
        received_at=clock.now(),
    )
    with db.sessions.begin() as session:
        opened = open_or_fold(session, org_id, key, "warning", "t", alert, ids=ids)
        return opened.incident.id
