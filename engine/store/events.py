"""The incident timeline: append a step, read the steps back in order.

Every step the service takes on an incident (opened, alert folded, stage
completed, action run, approval given) is one ``IncidentEvent`` row. The
integer id orders the timeline even when two steps share a timestamp. This
module has no update or delete path on purpose, and the model refuses to
flush one (``engine.store.models``): a correction is a new event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.models import IncidentEvent
from engine.store.types import as_utc


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


def timeline(session: Session, org_id: str, incident_id: str) -> list[IncidentEvent]:
    """The incident's events, oldest first; empty for another org's id."""
    query = (
        select(IncidentEvent)
        .where(
            IncidentEvent.incident_id == incident_id,
            IncidentEvent.org_id == org_id,
        )
        .order_by(IncidentEvent.id)
    )
    return list(session.scalars(query))
