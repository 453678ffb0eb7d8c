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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engine.flow import intake
from engine.policy.policy import Policy
from engine.runtime import IdGenerator
from engine.sources.alert import IncomingAlert
from engine.store.alerts import AlertIn
from engine.store.intake import IntakeRow, store_alerts
from engine.telemetry import ALERTS_RECEIVED, source_label

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


@dataclass(frozen=True)
class Entry:
    """One alert to accept, for one organization."""

    org_id: str
    alert: IncomingAlert
    idempotency_key: str | None = None


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
    entry = Entry(org_id, alert, idempotency_key)
    return accept_many(session, policy, [entry], ids=ids, now=now)[0]


def accept_many(
    session: Session,
    policy: Policy,
    entries: Sequence[Entry],
    *,
    ids: IdGenerator,
    now: datetime,
) -> list[Accepted]:
    """Store many alerts in the caller's transaction; answers in order."""
    answers: list[Accepted | None] = []
    rows: list[IntakeRow] = []
    for entry in entries:
        facts = {
            "alert": entry.alert.facts(),
            "snapshot": dict(entry.alert.snapshot or {}),
        }
        outcome = intake.assess_alert(policy, facts)
        if outcome.ignore:
            log.info("intake.ignored", extra={"rule": outcome.rules})
            answers.append(Accepted("ignored", dedup_key=outcome.dedup_key))
            continue
        stored = _alert_in(entry.alert, outcome.severity, now, entry.idempotency_key)
        rows.append(
            IntakeRow(
                entry.org_id, outcome.dedup_key, outcome.severity, outcome.title, stored
            )
        )
        answers.append(None)
    results = iter(store_alerts(session, rows, ids=ids, now=now))
    keys = iter(rows)
    accepted = []
    for answer in answers:
        if answer is not None:
            accepted.append(answer)
            continue
        stored_result, row = next(results), next(keys)
        if stored_result.status not in ("replayed", "unmatched"):
            ALERTS_RECEIVED.labels(source_label(row.alert.source)).inc()
        accepted.append(
            Accepted(
                stored_result.status,
                incident_id=stored_result.incident_id,
                alert_id=stored_result.alert_id,
                severity=stored_result.severity,
                dedup_key=row.dedup_key,
            )
        )
    return accepted


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
        facts=alert.facts(),
        posted_snapshot=alert.snapshot,
        idempotency_key=key,
    )
