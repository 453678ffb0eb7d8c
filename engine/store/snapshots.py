"""Snapshots: the facts document each evaluation of an incident used.

A snapshot is stored whole, with where each section came from and how long
each collector took, so any evaluation can be replayed later from the row.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine.facts.base import Snapshot as Taken
from engine.runtime import IdGenerator
from engine.store.models import Snapshot
from engine.store.types import as_utc


def add_snapshot(
    session: Session,
    taken: Taken,
    *,
    ids: IdGenerator,
    org_id: str,
    incident_id: str,
    purpose: str,
) -> Snapshot:
    """Store ``taken``; ``purpose`` is initial, recheck or verify."""
    row = Snapshot(
        id=ids.new("snp"),
        org_id=org_id,
        incident_id=incident_id,
        taken_at=as_utc(taken.taken_at),
        purpose=purpose,
        facts=dict(taken.facts),
        provenance=dict(taken.provenance),
        durations=dict(taken.durations_ms),
    )
    session.add(row)
    session.flush()
    return row


# Built once: the incident page runs it on every load.
_SNAPSHOTS_OF = (
    select(Snapshot)
    .where(
        Snapshot.org_id == bindparam("org_id"),
        Snapshot.incident_id == bindparam("incident_id"),
    )
    .order_by(Snapshot.taken_at, Snapshot.id)
)


def snapshots_of(session: Session, org_id: str, incident_id: str) -> list[Snapshot]:
    """The incident's snapshots, oldest first."""
    scope = {"org_id": org_id, "incident_id": incident_id}
    return list(session.scalars(_SNAPSHOTS_OF, scope))


def latest_snapshot(session: Session, org_id: str, incident_id: str) -> Snapshot | None:
    query = (
        select(Snapshot)
        .where(Snapshot.org_id == org_id, Snapshot.incident_id == incident_id)
        .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()
