"""Incidents: open or fold at intake, load with the timeline, list, advance.

``open_or_fold`` is intake's one write. In the caller's transaction it stores
the alert and either folds it into the organization's open incident with the
same dedup key (one more alert, severity raised but never lowered) or opens a
new incident, then appends the timeline event and queues the flow job, so
the commit that accepts an alert also holds the work it calls for. Two
intakes racing on one key cannot both open an incident: the partial unique
index on open incidents refuses the second insert, whose savepoint is rolled
back and which then folds into the winner's incident. A repeated
idempotency key returns the first alert's result and stores nothing.

``advance_stage`` is the flow's checkpoint: a compare-and-set on the
incident's ``stage``, committed with the stage's outcome, so a stage whose
outcome is committed is never run again and one that is not is run again.
Every read is scoped to one organization: another organization's id is not
found.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import InstrumentedAttribute, Session

from engine.errors import InputError, NotFoundError, StoreError
from engine.runtime import IdGenerator
from engine.store import jobs
from engine.store.actions import actions_of
from engine.store.alerts import AlertIn, add_alert, alerts_of, find_by_idempotency_key
from engine.store.events import append_event, timeline
from engine.store.matches import matches_of
from engine.store.models import (
    SEVERITY_RANK,
    Alert,
    Brief,
    CustomerMessage,
    Impact,
    Incident,
    IncidentAction,
    IncidentEvent,
    IncidentStatus,
    LearningReview,
    Recommendation,
    RuleMatch,
    Severity,
    Snapshot,
)
from engine.store.snapshots import snapshots_of
from engine.store.types import as_utc

log = logging.getLogger(__name__)

FIRST_STAGE = "snapshot"
FLOW_JOB = "flow"
MAX_ATTEMPTS = 5  # one conflict per racing intake; more means something is off
MAX_PAGE = 200

INTAKE_CONFLICT = "E708"
BAD_SEVERITY = "E709"
BAD_CURSOR = "E710"
BAD_PAGE = "E711"


@dataclass(frozen=True, slots=True)
class Opened:
    """What intake did with one alert."""

    incident: Incident
    alert: Alert
    created: bool  # a new incident was opened
    replayed: bool = False  # the idempotency key was seen before: nothing stored


def open_or_fold(
    session: Session,
    org_id: str,
    dedup_key: str,
    severity: str,
    title: str,
    alert: AlertIn,
    *,
    ids: IdGenerator,
    first_stage: str = FIRST_STAGE,
) -> Opened:
    """Store ``alert`` in its open incident or a new one (caller commits)."""
    _check_severity(severity)
    for _ in range(MAX_ATTEMPTS):
        replay = _replay(session, org_id, alert.idempotency_key)
        if replay is not None:
            return replay
        try:
            with session.begin_nested():
                return _open_or_fold_once(
                    session, org_id, dedup_key, severity, title, alert, ids, first_stage
                )
        except IntegrityError:
            # Lost a race on the open-incident index or the idempotency key;
            # the savepoint is gone and the winner's row is now visible.
            log.info(
                "intake.race_lost", extra={"org_id": org_id, "dedup_key": dedup_key}
            )
    raise StoreError(
        f"the alert for dedup key {dedup_key!r} conflicted {MAX_ATTEMPTS} times "
        "with concurrent writes: post it again; if this repeats, check the "
        "database's unique indexes with `incident-policy db upgrade`",
        code=INTAKE_CONFLICT,
    )


def _check_severity(severity: str) -> None:
    if severity not in SEVERITY_RANK:
        raise StoreError(
            f"the severity {severity!r} is not one the store knows: the intake "
            "policy must map it to info, warning or critical",
            code=BAD_SEVERITY,
        )


def _replay(session: Session, org_id: str, key: str | None) -> Opened | None:
    if key is None:
        return None
    first = find_by_idempotency_key(session, org_id, key)
    if first is None:
        return None
    incident = session.get_one(Incident, first.incident_id)
    return Opened(incident, first, created=False, replayed=True)


def _open_or_fold_once(
    session: Session,
    org_id: str,
    dedup_key: str,
    severity: str,
    title: str,
    alert: AlertIn,
    ids: IdGenerator,
    first_stage: str,
) -> Opened:
    now = as_utc(alert.received_at)
    incident = _open_incident_for_update(session, org_id, dedup_key)
    created = incident is None
    if incident is None:
        incident = _insert_incident(
            session, ids, org_id, dedup_key, severity, title, now, first_stage
        )
    else:
        _fold(incident, severity, now)
    row = add_alert(session, alert, ids=ids, org_id=org_id, incident_id=incident.id)
    _record_intake(session, ids, incident, row, created, now)
    log.info(
        "intake.opened" if created else "intake.folded",
        extra={"org_id": org_id, "incident_id": incident.id, "alert_id": row.id},
    )
    return Opened(incident, row, created=created)


def _open_incident_for_update(
    session: Session, org_id: str, dedup_key: str
) -> Incident | None:
    # FOR UPDATE serialises folds into one incident on PostgreSQL; SQLite's
    # write transaction already does.
    query = (
        select(Incident)
        .where(
            Incident.org_id == org_id,
            Incident.dedup_key == dedup_key,
            Incident.status != IncidentStatus.RESOLVED.value,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(query).first()


def _insert_incident(
    session: Session,
    ids: IdGenerator,
    org_id: str,
    dedup_key: str,
    severity: str,
    title: str,
    now: datetime,
    first_stage: str,
) -> Incident:
    incident = Incident(
        id=ids.new("inc"),
        org_id=org_id,
        dedup_key=dedup_key,
        title=title,
        severity=severity,
        status=IncidentStatus.OPEN.value,
        created_at=now,
        updated_at=now,
        first_signal_at=now,
        alert_count=1,
        last_alert_at=now,
        stage=first_stage,
    )
    session.add(incident)
    session.flush()
    return incident


def _fold(incident: Incident, severity: str, now: datetime) -> None:
    incident.alert_count += 1
    if SEVERITY_RANK[Severity(severity)] > SEVERITY_RANK[Severity(incident.severity)]:
        incident.severity = severity
    incident.last_alert_at = max(incident.last_alert_at, now)
    incident.first_signal_at = min(incident.first_signal_at, now)
    incident.updated_at = now


def _record_intake(
    session: Session,
    ids: IdGenerator,
    incident: Incident,
    alert: Alert,
    created: bool,
    now: datetime,
) -> None:
    append_event(
        session,
        org_id=incident.org_id,
        incident_id=incident.id,
        at=now,
        kind="incident.opened" if created else "alert.folded",
        actor=f"source:{alert.source}",
        message=incident.title,
        data={"alert_id": alert.id, "severity": incident.severity},
    )
    # One flow job at a time per incident: a fold while one is pending adds
    # nothing, the pending run will see the new alert.
    if created or jobs.pending_job(session, incident.id, FLOW_JOB) is None:
        jobs.enqueue(
            session,
            ids=ids,
            org_id=incident.org_id,
            kind=FLOW_JOB,
            now=now,
            incident_id=incident.id,
            payload={"reason": "opened" if created else "folded"},
        )


_GET = select(Incident).where(
    Incident.id == bindparam("incident_id"), Incident.org_id == bindparam("org_id")
)
_GET_FOR_UPDATE = _GET.with_for_update().execution_options(populate_existing=True)


def get_incident(
    session: Session, org_id: str, incident_id: str, *, for_update: bool = False
) -> Incident:
    """The incident, or ``NotFoundError`` (also for another org's id)."""
    query = _GET_FOR_UPDATE if for_update else _GET
    scope = {"org_id": org_id, "incident_id": incident_id}
    incident = session.scalars(query, scope).first()
    if incident is None:
        raise NotFoundError(
            f"incident {incident_id} does not exist in this organization: check "
            "the id, or list the incidents to find it"
        )
    return incident


@dataclass(frozen=True, slots=True)
class IncidentView:
    """An incident with its timeline and every row that hangs off it."""

    incident: Incident
    events: tuple[IncidentEvent, ...]
    alerts: tuple[Alert, ...]
    actions: tuple[IncidentAction, ...]
    rule_matches: tuple[RuleMatch, ...]
    snapshots: tuple[Snapshot, ...]
    recommendations: tuple[Recommendation, ...]
    messages: tuple[CustomerMessage, ...]
    briefs: tuple[Brief, ...]
    impacts: tuple[Impact, ...]
    reviews: tuple[LearningReview, ...]


def load_incident(
    session: Session, org_id: str, incident_id: str, *, with_snapshots: bool = True
) -> IncidentView:
    """The incident and its related rows, each list oldest first."""
    incident = get_incident(session, org_id, incident_id)
    snapshots = snapshots_of(session, org_id, incident_id) if with_snapshots else []
    return IncidentView(
        incident=incident,
        events=tuple(timeline(session, org_id, incident_id)),
        alerts=tuple(alerts_of(session, org_id, incident_id)),
        actions=tuple(actions_of(session, org_id, incident_id)),
        rule_matches=tuple(matches_of(session, org_id, incident_id)),
        snapshots=tuple(snapshots),
        recommendations=_children(session, _RECOMMENDATIONS, org_id, incident_id),
        messages=_children(session, _MESSAGES, org_id, incident_id),
        briefs=_children(session, _BRIEFS, org_id, incident_id),
        impacts=_children(session, _IMPACTS, org_id, incident_id),
        reviews=_children(session, _REVIEWS, org_id, incident_id),
    )


Child = TypeVar("Child", Recommendation, CustomerMessage, Brief, Impact, LearningReview)


def _rows_of_incident(
    model: type[Child], order: InstrumentedAttribute[datetime]
) -> Select[Child]:
    # Built once per table at import: building a statement costs more than
    # running it, and the incident page runs these on every load.
    return (
        select(model)
        .where(
            model.org_id == bindparam("org_id"),
            model.incident_id == bindparam("incident_id"),
        )
        .order_by(order, model.id)
    )


_RECOMMENDATIONS = _rows_of_incident(Recommendation, Recommendation.created_at)
_MESSAGES = _rows_of_incident(CustomerMessage, CustomerMessage.created_at)
_BRIEFS = _rows_of_incident(Brief, Brief.created_at)
_IMPACTS = _rows_of_incident(Impact, Impact.assessed_at)
_REVIEWS = _rows_of_incident(LearningReview, LearningReview.created_at)


def _children(
    session: Session, query: Select[Child], org_id: str, incident_id: str
) -> tuple[Child, ...]:
    scope = {"org_id": org_id, "incident_id": incident_id}
    return tuple(session.scalars(query, scope))


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """Each field narrows the list; empty means no narrowing."""

    statuses: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    text: str = ""  # in the title, case-insensitive


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int = 50
    after: str | None = None  # the cursor of the previous page


@dataclass(frozen=True, slots=True)
class IncidentPage:
    items: tuple[Incident, ...]
    next_cursor: str | None  # None on the last page


def list_incidents(
    session: Session,
    org_id: str,
    filters: IncidentFilter = IncidentFilter(),
    page: PageRequest = PageRequest(),
) -> IncidentPage:
    """The organization's incidents, newest first, one page at a time.

    Pages are keyed on (created_at, id), so an incident opened while a
    reader pages through appears on no page twice and shifts nothing.
    """
    if not 1 <= page.limit <= MAX_PAGE:
        raise InputError(
            f"the page size {page.limit} is out of range: ask for 1 to {MAX_PAGE}",
            code=BAD_PAGE,
        )
    query = _filtered(select(Incident).where(Incident.org_id == org_id), filters)
    if page.after is not None:
        query = query.where(_after(decode_cursor(page.after)))
    query = query.order_by(Incident.created_at.desc(), Incident.id.desc())
    rows = list(session.scalars(query.limit(page.limit + 1)))
    items = tuple(rows[: page.limit])
    more = len(rows) > page.limit
    return IncidentPage(items, encode_cursor(items[-1]) if more else None)


def _filtered(query: Select[Incident], f: IncidentFilter) -> Select[Incident]:
    if f.statuses:
        query = query.where(Incident.status.in_(f.statuses))
    if f.types:
        query = query.where(Incident.type.in_(f.types))
    if f.severities:
        query = query.where(Incident.severity.in_(f.severities))
    if f.since is not None:
        query = query.where(Incident.created_at >= as_utc(f.since))
    if f.until is not None:
        query = query.where(Incident.created_at < as_utc(f.until))
    if f.text:
        query = query.where(Incident.title.ilike(f"%{_escape_like(f.text)}%", "\\"))
    return query


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _after(cursor: tuple[datetime, str]) -> ColumnElement[bool]:
    created_at, incident_id = cursor
    return or_(
        Incident.created_at < created_at,
        and_(Incident.created_at == created_at, Incident.id < incident_id),
    )


def encode_cursor(incident: Incident) -> str:
    raw = json.dumps([incident.created_at.isoformat(), incident.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, incident_id = json.loads(base64.urlsafe_b64decode(padded))
        return as_utc(datetime.fromisoformat(created_at)), str(incident_id)
    except (binascii.Error, ValueError, TypeError, StoreError) as exc:
        raise InputError(
            f"the page cursor {cursor!r} is not one this service handed out: "
            "start from the first page (leave `after` out)",
            code=BAD_CURSOR,
        ) from exc


def advance_stage(
    session: Session,
    org_id: str,
    incident_id: str,
    *,
    done: str,
    next_stage: str | None,
    now: datetime,
) -> bool:
    """Move the checkpoint from ``done`` to ``next_stage`` (None: finished).

    False when the checkpoint is no longer at ``done``: another worker has
    completed the stage, and this worker's outcome must be rolled back.
    """
    moved = session.execute(
        update(Incident)
        .where(
            Incident.id == incident_id,
            Incident.org_id == org_id,
            Incident.stage == done,
        )
        .values(stage=next_stage, updated_at=as_utc(now))
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def resolve_incident(
    session: Session,
    org_id: str,
    incident_id: str,
    *,
    by: str,
    root_cause: str | None,
    now: datetime,
    data: Mapping[str, Any] | None = None,
) -> Incident:
    """Resolve the incident; a later alert with its key opens a new one."""
    incident = get_incident(session, org_id, incident_id, for_update=True)
    if incident.status == IncidentStatus.RESOLVED.value:
        return incident
    at = as_utc(now)
    incident.status = IncidentStatus.RESOLVED.value
    incident.resolved_at = at
    incident.resolved_by = by
    incident.root_cause = root_cause
    incident.updated_at = at
    append_event(
        session,
        org_id=org_id,
        incident_id=incident_id,
        at=at,
        kind="incident.resolved",
        actor=by,
        message=root_cause or "",
        data=data,
    )
    return incident
