"""Intake in bulk: many alerts stored in one transaction, few statements.

``store_alerts`` is ``incidents.open_or_fold`` for a batch. It reads what
exists in one query per kind (the alerts already seen under an idempotency
key, the open incidents of each dedup key, locked, and their pending flow
jobs), then writes each table once: new incidents, folded incidents'
counters, alerts, timeline events and flow jobs. A storm of alerts with one
fingerprint becomes one incident, one alert row per alert and one
``alert.folded`` event per batch (with the count), so the timeline stays
readable. Resolved alerts only touch the open incident they belong to.

The partial unique index on open incidents still guards the race with
another process: if inserting the new incidents conflicts, the savepoint is
rolled back and the batch goes through ``open_or_fold`` one alert at a time,
which resolves the race alert by alert.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.errors import ConflictError, Location
from engine.runtime import IdGenerator
from engine.store.alerts import AlertIn
from engine.store.bulk import Rows
from engine.store.events import EventIn, append_events
from engine.store.incidents import FIRST_STAGE, FLOW_JOB, open_or_fold
from engine.store.models import (
    SEVERITY_RANK,
    Alert,
    Incident,
    IncidentStatus,
    Job,
    JobStatus,
    Severity,
)
from engine.store.types import as_utc, table_of

FOLDED_IDS_KEPT = 20  # alert ids listed on one alert.folded event
FOLD_COALESCE_S = 30.0  # folds wait this long for the flow's look


@dataclass(frozen=True, slots=True)
class IntakeRow:
    org_id: str
    dedup_key: str
    severity: str
    title: str
    alert: AlertIn


@dataclass(frozen=True, slots=True)
class Stored:
    status: str  # opened, folded, replayed, resolved, unmatched
    incident_id: str | None = None
    alert_id: str | None = None
    severity: str | None = None


def store_alerts(
    session: Session, rows: Sequence[IntakeRow], *, ids: IdGenerator, now: datetime
) -> list[Stored]:
    """Store every row (caller commits); results in the order of ``rows``."""
    try:
        with session.begin_nested():
            return _store(session, rows, ids, as_utc(now))
    except IntegrityError:
        # Another process opened one of these incidents (or used one of
        # these keys) meanwhile: settle each alert on its own.
        return [_one(session, row, ids) for row in rows]


def _one(session: Session, row: IntakeRow, ids: IdGenerator) -> Stored:
    opened = open_or_fold(
        session, row.org_id, row.dedup_key, row.severity, row.title, row.alert, ids=ids
    )
    status = (
        "replayed" if opened.replayed else ("opened" if opened.created else "folded")
    )
    return Stored(status, opened.incident.id, opened.alert.id, opened.incident.severity)


def _store(
    session: Session, rows: Sequence[IntakeRow], ids: IdGenerator, now: datetime
) -> list[Stored]:
    seen, sent = _seen_keys(session, rows)
    open_ = _open_incidents(session, rows)
    writes = Rows()
    events: list[EventIn] = []
    created: dict[tuple[str, str], _Incident] = {}
    folded: dict[str, list[str]] = defaultdict(list)
    results: list[Stored] = []
    for row in rows:
        key = (row.org_id, row.alert.idempotency_key or "")
        if row.alert.idempotency_key and key in seen:
            _same_alert(row, sent[key])
            results.append(seen[key])
            continue
        stored = _place(row, open_, created, writes, ids, now)
        if stored.status == "unmatched":
            results.append(stored)
            continue
        alert_id = _add_alert(writes, row, stored.incident_id or "", ids)
        stored = Stored(stored.status, stored.incident_id, alert_id, stored.severity)
        if row.alert.idempotency_key:
            seen[key] = Stored(
                "replayed", stored.incident_id, alert_id, stored.severity
            )
            sent[key] = (row.alert.fingerprint, row.alert.status)
        if stored.status == "folded":
            folded[stored.incident_id or ""].append(alert_id)
        results.append(stored)
    _write_incidents(session, created, open_, now)
    writes.write(session)
    incidents = {i.id: i for i in (*open_.values(), *created.values())}
    events += _events(rows, results, created, folded, incidents, now)
    append_events(session, events)
    _queue_flows(session, created, folded, open_, ids, now)
    return results


def _by_org(pairs: set[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for org_id, value in pairs:
        grouped[org_id].append(value)
    return grouped


def _seen_keys(
    session: Session, rows: Sequence[IntakeRow]
) -> tuple[dict[tuple[str, str], Stored], dict[tuple[str, str], tuple[str, str]]]:
    """Alerts stored before under these idempotency keys, and what they were."""
    wanted = {
        (r.org_id, r.alert.idempotency_key) for r in rows if r.alert.idempotency_key
    }
    found: dict[tuple[str, str], Stored] = {}
    sent: dict[tuple[str, str], tuple[str, str]] = {}
    # One plain IN per organization: both databases use the unique index.
    for org_id, keys in _by_org(wanted).items():
        hits = session.execute(
            select(
                Alert.idempotency_key,
                Alert.id,
                Alert.incident_id,
                Alert.severity,
                Alert.fingerprint,
                Alert.status,
            ).where(Alert.org_id == org_id, Alert.idempotency_key.in_(keys))
        )
        for key, alert, incident, severity, fingerprint, status in hits:
            found[(org_id, key or "")] = Stored("replayed", incident, alert, severity)
            sent[(org_id, key or "")] = (fingerprint, status)
    return found, sent


def _same_alert(row: IntakeRow, first: tuple[str, str]) -> None:
    """A retry must be the same alert: a reused key for another is refused."""
    if (row.alert.fingerprint, row.alert.status) == first:
        return
    # The stored key numbers the alerts of one post ("key#0"): show the sent one.
    sent = (row.alert.idempotency_key or "").rpartition("#")[0]
    raise ConflictError(
        f"the Idempotency-Key {sent!r} was already used for "
        f"another alert (fingerprint {first[0]!r}, {first[1]}): send a new key "
        "for a new alert",
        code="E715",
        location=Location(field="Idempotency-Key"),
    )


@dataclass(slots=True)
class _Incident:
    """The columns intake reads and changes, without the ORM's bookkeeping."""

    id: str
    org_id: str
    dedup_key: str
    title: str
    severity: str
    alert_count: int
    first_signal_at: datetime
    last_alert_at: datetime
    created: bool = False
    changed: bool = False
    rose: bool = False  # its severity rose in this batch


_OPEN_COLUMNS = (
    Incident.id,
    Incident.org_id,
    Incident.dedup_key,
    Incident.title,
    Incident.severity,
    Incident.alert_count,
    Incident.first_signal_at,
    Incident.last_alert_at,
)


def _open_incidents(
    session: Session, rows: Sequence[IntakeRow]
) -> dict[tuple[str, str], _Incident]:
    found: dict[tuple[str, str], _Incident] = {}
    for org_id, keys in _by_org({(r.org_id, r.dedup_key) for r in rows}).items():
        locked = session.execute(
            select(*_OPEN_COLUMNS)
            .where(
                Incident.org_id == org_id,
                Incident.dedup_key.in_(keys),
                Incident.status != IncidentStatus.RESOLVED.value,
            )
            .with_for_update()
        )
        for values in locked:
            incident = _Incident(*values)
            found[(incident.org_id, incident.dedup_key)] = incident
    return found


def _place(
    row: IntakeRow,
    open_: dict[tuple[str, str], _Incident],
    created: dict[tuple[str, str], _Incident],
    writes: Rows,
    ids: IdGenerator,
    now: datetime,
) -> Stored:
    key = (row.org_id, row.dedup_key)
    incident = open_.get(key) or created.get(key)
    received = as_utc(row.alert.received_at)
    if row.alert.status == "resolved":
        if incident is None:
            return Stored("unmatched")
        return Stored("resolved", incident.id, None, incident.severity)
    if incident is None:
        incident = _new_incident(row, ids, received)
        created[key] = incident
        return Stored("opened", incident.id, None, incident.severity)
    incident.alert_count += 1
    incident.changed = True
    if (
        SEVERITY_RANK[Severity(row.severity)]
        > SEVERITY_RANK[Severity(incident.severity)]
    ):
        incident.severity = row.severity
        incident.rose = True
    incident.last_alert_at = max(incident.last_alert_at, received)
    incident.first_signal_at = min(incident.first_signal_at, received)
    return Stored("folded", incident.id, None, incident.severity)


def _new_incident(row: IntakeRow, ids: IdGenerator, at: datetime) -> _Incident:
    return _Incident(
        id=ids.new("inc"),
        org_id=row.org_id,
        dedup_key=row.dedup_key,
        title=row.title,
        severity=row.severity,
        alert_count=1,
        first_signal_at=at,
        last_alert_at=at,
        created=True,
    )


def _add_alert(writes: Rows, row: IntakeRow, incident_id: str, ids: IdGenerator) -> str:
    alert = row.alert
    alert_id = ids.new("alr")
    writes.add(
        Alert,
        id=alert_id,
        org_id=row.org_id,
        incident_id=incident_id,
        source=alert.source,
        kind=alert.kind,
        fingerprint=alert.fingerprint,
        status=alert.status,
        severity=alert.severity,
        received_at=alert.received_at,
        starts_at=alert.starts_at,
        payload=dict(alert.payload),
        facts=dict(alert.facts),
        posted_snapshot=dict(alert.posted_snapshot) if alert.posted_snapshot else None,
        idempotency_key=alert.idempotency_key,
    )
    return alert_id


def _write_incidents(
    session: Session,
    created: dict[tuple[str, str], _Incident],
    open_: dict[tuple[str, str], _Incident],
    now: datetime,
) -> None:
    if created:
        # The partial unique index on open incidents speaks here on a race.
        session.execute(
            insert(table_of(Incident)),
            [
                {
                    "id": i.id,
                    "org_id": i.org_id,
                    "dedup_key": i.dedup_key,
                    "title": i.title,
                    "severity": i.severity,
                    "status": IncidentStatus.OPEN.value,
                    "created_at": i.first_signal_at,
                    "updated_at": i.first_signal_at,
                    "first_signal_at": i.first_signal_at,
                    "alert_count": i.alert_count,
                    "last_alert_at": i.last_alert_at,
                    "stage": FIRST_STAGE,
                }
                for i in created.values()
            ],
        )
    changed = [i for i in open_.values() if i.changed]
    if changed:
        session.execute(
            update(Incident),
            [
                {
                    "id": i.id,
                    "alert_count": i.alert_count,
                    "severity": i.severity,
                    "first_signal_at": i.first_signal_at,
                    "last_alert_at": i.last_alert_at,
                    "updated_at": now,
                }
                for i in changed
            ],
        )


def _events(
    rows: Sequence[IntakeRow],
    results: Sequence[Stored],
    created: dict[tuple[str, str], _Incident],
    folded: dict[str, list[str]],
    incidents: dict[str, _Incident],
    now: datetime,
) -> list[EventIn]:
    by_id = {i.id: i for i in created.values()}
    events: list[EventIn] = []
    opened_done: set[str] = set()
    for row, stored in zip(rows, results, strict=True):
        if stored.incident_id is None or stored.alert_id is None:
            continue
        if stored.status == "opened" and stored.incident_id not in opened_done:
            opened_done.add(stored.incident_id)
            incident = by_id[stored.incident_id]
            events.append(
                EventIn(
                    org_id=row.org_id,
                    incident_id=stored.incident_id,
                    at=now,
                    kind="incident.opened",
                    actor=f"source:{row.alert.source}",
                    message=incident.title,
                    data={"alert_id": stored.alert_id, "severity": row.severity},
                )
            )
        elif stored.status == "resolved":
            events.append(
                EventIn(
                    org_id=row.org_id,
                    incident_id=stored.incident_id,
                    at=now,
                    kind="alert.resolved",
                    actor=f"source:{row.alert.source}",
                    message=f"{row.alert.fingerprint} resolved at the source",
                    data={
                        "alert_id": stored.alert_id,
                        "fingerprint": row.alert.fingerprint,
                    },
                )
            )
    events += _fold_events(rows, results, folded, incidents, now)
    return events


def _fold_events(
    rows: Sequence[IntakeRow],
    results: Sequence[Stored],
    folded: dict[str, list[str]],
    incidents: dict[str, _Incident],
    now: datetime,
) -> list[EventIn]:
    first: dict[str, tuple[IntakeRow, Stored]] = {}
    for row, stored in zip(rows, results, strict=True):
        if stored.incident_id in folded and stored.status == "folded":
            first.setdefault(stored.incident_id, (row, stored))
    events = []
    for incident_id, alert_ids in folded.items():
        if incident_id not in first:
            continue
        row, _ = first[incident_id]
        count = len(alert_ids)
        events.append(
            EventIn(
                org_id=row.org_id,
                incident_id=incident_id,
                at=now,
                kind="alert.folded",
                actor=f"source:{row.alert.source}",
                message=f"{count} alert(s) folded into this incident",
                data={
                    "count": count,
                    "alert_ids": alert_ids[:FOLDED_IDS_KEPT],
                    "severity": incidents[incident_id].severity,
                },
            )
        )
    return events


def _queue_flows(
    session: Session,
    created: dict[tuple[str, str], _Incident],
    folded: dict[str, list[str]],
    open_: dict[tuple[str, str], _Incident],
    ids: IdGenerator,
    now: datetime,
) -> None:
    """A flow job for each new incident; a check for folded ones.

    A fold asks the flow to look again (it starts a new round only when the
    severity rose or enough time passed). A fold that raised the severity is
    looked at now; other folds wait ``FOLD_COALESCE_S``, so a storm of one
    alert costs one check, not one per batch.
    """
    folded_open = [i for i in open_.values() if i.id in folded]
    pending = _pending_flows(session, [i.id for i in folded_open])
    writes = Rows()
    for incident in created.values():
        _add_flow_job(writes, ids, incident, "opened", now)
    for incident in folded_open:
        if incident.id not in pending:
            due = now if incident.rose else now + timedelta(seconds=FOLD_COALESCE_S)
            _add_flow_job(writes, ids, incident, "folded", due)
        elif incident.rose:
            session.execute(
                update(Job)
                .where(Job.id == pending[incident.id], Job.run_after > now)
                .values(run_after=now)
            )
    writes.write(session)


def _pending_flows(session: Session, incident_ids: list[str]) -> dict[str, str]:
    if not incident_ids:
        return {}
    rows = session.execute(
        select(Job.incident_id, Job.id).where(
            Job.incident_id.in_(incident_ids),
            Job.kind == FLOW_JOB,
            Job.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)),
        )
    )
    return {incident_id: job_id for incident_id, job_id in rows if incident_id}


def _add_flow_job(
    writes: Rows, ids: IdGenerator, incident: _Incident, reason: str, due: datetime
) -> None:
    writes.add(
        Job,
        id=ids.new("job"),
        org_id=incident.org_id,
        incident_id=incident.id,
        kind=FLOW_JOB,
        payload={"reason": reason},
        status=JobStatus.QUEUED.value,
        run_after=due,
        attempts=0,
        created_at=due,
    )


def describe(results: Sequence[Stored]) -> dict[str, Any]:
    """Counts per status, for logs."""
    counts: dict[str, int] = defaultdict(int)
    for stored in results:
        counts[stored.status] += 1
    return dict(counts)
