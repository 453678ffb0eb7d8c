"""The incident timeline: append a step, read the steps back in order.

Every step the service takes on an incident (opened, alert folded, stage
completed, action run, approval given) is one ``IncidentEvent`` row. The
integer id orders the timeline even when two steps share a timestamp. This
module has no update or delete path on purpose, and the model refuses to
flush one (``engine.store.models``): a correction is a new event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from engine.store.models import IncidentEvent
from engine.store.types import as_utc, table_of


def append_event(
    session: Session,
    *,
    org_id: str,
    incident_id: str,
    at: datetime,
    kind: str,
    actor: str = "system",
    stage: str | None = None,
    message: str = "",
    data: Mapping[str, Any] | None = None,
) -> IncidentEvent:
    """Add one step to an incident's timeline (flushed, not committed)."""
    row = IncidentEvent(
        org_id=org_id,
        incident_id=incident_id,
        at=as_utc(at),
        kind=kind,
        actor=actor,
        stage=stage,
        message=message,
        data=dict(data or {}),
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class EventIn:
    org_id: str
    incident_id: str
    at: datetime
    kind: str
    actor: str = "system"
    stage: str | None = None
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


def append_events(session: Session, events: Sequence[EventIn]) -> None:
    """Add many steps in one statement (the flow writes a stage's at once).

    Ids follow the order of ``events``, so the timeline reads as written.
    """
    if not events:
        return
    rows = [
        {
            "org_id": e.org_id,
            "incident_id": e.incident_id,
            "at": as_utc(e.at),
            "kind": e.kind,
            "actor": e.actor,
            "stage": e.stage,
            "message": e.message,
            "data": dict(e.data),
        }
        for e in events
    ]
    session.execute(insert(table_of(IncidentEvent)), rows)


# Built once: the incident page runs it on every load.
_TIMELINE = (
    select(IncidentEvent)
    .where(
        IncidentEvent.org_id == bindparam("org_id"),
        IncidentEvent.incident_id == bindparam("incident_id"),
    )
    .order_by(IncidentEvent.id)
)


def timeline(session: Session, org_id: str, incident_id: str) -> list[IncidentEvent]:
    """The incident's events, oldest first; empty for another org's id."""
    scope = {"org_id": org_id, "incident_id": incident_id}
    return list(session.scalars(_TIMELINE, scope))
