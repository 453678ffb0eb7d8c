"""Accepting alerts: the intake stage's one transaction.

A firing alert is assessed by the intake rules (severity, title, dedup key)
and committed with its incident, new or folded into the open one with the
same key, together with the timeline event and the flow job: once the
caller commits, the alert is durable and the worker will pick it up. A
resolved alert only touches the open incident it belongs to (recorded and put
on the timeline, never opening an incident). A sender's test message and an
alert the intake rules ignore store nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.flow import intake
from engine.policy.policy import Policy
from engine.runtime import IdGenerator
from engine.sources.alert import IncomingAlert
from engine.store import incidents
from engine.store.alerts import AlertIn, add_alert, find_by_idempotency_key
from engine.store.events import append_event
from engine.store.models import Incident, IncidentStatus
from engine.telemetry import ALERTS_RECEIVED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    status: str  # opened, folded, resolved, ignored, replayed, unmatched
    incident_id: str | None = None
    alert_id: str | None = None
    severity: str | None = None
    dedup_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def accept(
    session: Session,
    policy: Policy,
    org_id: str,
    alert: IncomingAlert,
    *,
    ids: IdGenerator,
    now: datetime,
    idempotency_key: str | None = None,
) -> Accepted:
    """Store ``alert`` (the caller commits)."""
    facts = {"alert": alert.facts(), "snapshot": dict(alert.snapshot or {})}
    outcome = intake.assess_alert(policy, facts)
    if outcome.ignore:
        log.info("intake.ignored", extra={"org_id": org_id, "rule": outcome.rules})
        return Accepted("ignored", dedup_key=outcome.dedup_key)
    stored = _alert_in(alert, outcome.severity, now, idempotency_key)
    if alert.status == "resolved":
        return _resolved(session, org_id, outcome.dedup_key, stored, ids, now)
    opened = incidents.open_or_fold(
        session,
        org_id,
        outcome.dedup_key,
        outcome.severity,
        outcome.title,
        stored,
        ids=ids,
    )
    ALERTS_RECEIVED.labels(alert.source).inc()
    status = (
        "replayed" if opened.replayed else ("opened" if opened.created else "folded")
    )
    return Accepted(
        status,
        incident_id=opened.incident.id,
        alert_id=opened.alert.id,
        severity=opened.incident.severity,
        dedup_key=outcome.dedup_key,
    )


def _alert_in(
    alert: IncomingAlert, severity: str, now: datetime, key: str | None
) -> AlertIn:
    return AlertIn(
        source=alert.source,
        kind=alert.kind,
        fingerprint=alert.fingerprint,
        severity=severity,
        received_at=now,
        status=alert.status,
        starts_at=alert.starts_at,
        payload=dict(alert.raw),
        facts=_facts_with_snapshot(alert),
        idempotency_key=key,
    )


def _facts_with_snapshot(alert: IncomingAlert) -> Mapping[str, Any]:
    facts = alert.facts()
    if alert.snapshot:
        facts["posted_snapshot"] = dict(alert.snapshot)
    return facts


def _resolved(
    session: Session,
    org_id: str,
    dedup_key: str,
    stored: AlertIn,
    ids: IdGenerator,
    now: datetime,
) -> Accepted:
    if stored.idempotency_key:
        seen = find_by_idempotency_key(session, org_id, stored.idempotency_key)
        if seen is not None:
            return Accepted("replayed", seen.incident_id, seen.id, dedup_key=dedup_key)
    incident = session.scalars(
        select(Incident).where(
            Incident.org_id == org_id,
            Incident.dedup_key == dedup_key,
            Incident.status != IncidentStatus.RESOLVED.value,
        )
    ).first()
    if incident is None:
        return Accepted("unmatched", dedup_key=dedup_key)
    row = add_alert(session, stored, ids=ids, org_id=org_id, incident_id=incident.id)
    append_event(
        session,
        org_id=org_id,
        incident_id=incident.id,
        at=now,
        kind="alert.resolved",
        actor=f"source:{stored.source}",
        message=f"{stored.fingerprint} resolved at the source",
        data={"alert_id": row.id, "fingerprint": stored.fingerprint},
    )
    ALERTS_RECEIVED.labels(stored.source).inc()
    return Accepted("resolved", incident.id, row.id, incident.severity, dedup_key)
