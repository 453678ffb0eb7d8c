"""Alerts as received: one row per accepted alert, tied to its incident.

``AlertIn`` is what intake hands to the store after the intake policy has
named the severity and the dedup key. A source may send an idempotency key;
it is unique per organization, so a retried post finds the first alert
instead of storing a second (see ``incidents.open_or_fold``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine.runtime import IdGenerator
from engine.store.models import Alert
from engine.store.types import as_utc


@dataclass(frozen=True, slots=True)
class AlertIn:
    source: str  # watcher, alertmanager, grafana, api, manual
    kind: str
    fingerprint: str
    severity: str  # as the intake policy named it: info, warning, critical
    received_at: datetime
    status: str = "firing"
    starts_at: datetime | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)  # as posted
    facts: Mapping[str, Any] = field(default_factory=dict)  # the alert facts
    posted_snapshot: Mapping[str, Any] | None = None  # snapshot facts it carried
    idempotency_key: str | None = None


def add_alert(
    session: Session,
    alert: AlertIn,
    *,
    ids: IdGenerator,
    org_id: str,
    incident_id: str,
) -> Alert:
    row = Alert(
        id=ids.new("alr"),
        org_id=org_id,
        incident_id=incident_id,
        source=alert.source,
        kind=alert.kind,
        fingerprint=alert.fingerprint,
        status=alert.status,
        severity=alert.severity,
        received_at=as_utc(alert.received_at),
        starts_at=as_utc(alert.starts_at) if alert.starts_at else None,
        payload=dict(alert.payload),
        facts=dict(alert.facts),
        posted_snapshot=dict(alert.posted_snapshot) if alert.posted_snapshot else None,
        idempotency_key=alert.idempotency_key,
    )
    session.add(row)
    session.flush()
    return row


def find_by_idempotency_key(session: Session, org_id: str, key: str) -> Alert | None:
    query = select(Alert).where(Alert.org_id == org_id, Alert.idempotency_key == key)
    return session.scalars(query).first()


# Built once: the incident page runs it on every load.
_ALERTS_OF = (
    select(Alert)
    .where(
        Alert.org_id == bindparam("org_id"),
        Alert.incident_id == bindparam("incident_id"),
    )
    .order_by(Alert.received_at, Alert.id)
)


def alerts_of(session: Session, org_id: str, incident_id: str) -> list[Alert]:
    """The incident's alerts, oldest first."""
    scope = {"org_id": org_id, "incident_id": incident_id}
    return list(session.scalars(_ALERTS_OF, scope))
