"""Rebuilding an incident's facts from what the store holds.

A stage never trusts memory from an earlier stage: it reads the incident,
its latest alert, the snapshot of this round and the outcomes committed so
far, and composes the facts document from them. That is what lets a worker
that took over a half-done incident carry on from the last committed stage,
and what makes every evaluation replayable from stored rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.store.models import (
    ActionStatus,
    Alert,
    Impact,
    Incident,
    IncidentAction,
    IncidentEvent,
    Organization,
    Snapshot,
)

Facts = dict[str, Any]


@dataclass(frozen=True)
class FlowState:
    incident: Incident
    org: Organization
    alert: Facts
    posted: Facts
    initial: Snapshot | None
    latest: Snapshot | None

    def base(self, now: datetime) -> Facts:
        """alert, snapshot (this round's first), incident and org facts."""
        return {
            "alert": self.alert,
            "snapshot": dict(self.initial.facts) if self.initial else {},
            "incident": incident_facts(self.incident, now),
            "org": {"name": self.org.name, "auto_execute": self.org.auto_execute},
        }


def load(session: Session, incident: Incident) -> FlowState:
    facts, posted = latest_alert_facts(session, incident.org_id, incident.id)
    return FlowState(
        incident=incident,
        org=session.get_one(Organization, incident.org_id),
        alert=facts,
        posted=posted,
        initial=_snapshot(session, incident.org_id, incident.id, "initial"),
        latest=_snapshot(session, incident.org_id, incident.id, None),
    )


def _snapshot(
    session: Session, org_id: str, incident_id: str, purpose: str | None
) -> Snapshot | None:
    # Every query names the organization: the indexes start with it.
    query = select(Snapshot).where(
        Snapshot.org_id == org_id, Snapshot.incident_id == incident_id
    )
    if purpose:
        query = query.where(Snapshot.purpose == purpose)
    ordered = query.order_by(Snapshot.taken_at.desc(), Snapshot.id.desc()).limit(1)
    return session.scalars(ordered).first()


def incident_facts(incident: Incident, now: datetime) -> Facts:
    return {
        "severity": incident.severity,
        "status": incident.status,
        "type": incident.type,
        "age_minutes": round((now - incident.created_at).total_seconds() / 60, 1),
        "alert_count": incident.alert_count,
    }


def latest_event(
    session: Session, org_id: str, incident_id: str, kind: str
) -> IncidentEvent | None:
    query = (
        select(IncidentEvent)
        .where(
            IncidentEvent.org_id == org_id,
            IncidentEvent.incident_id == incident_id,
            IncidentEvent.kind == kind,
        )
        .order_by(IncidentEvent.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def decision(
    session: Session, org_id: str, incident_id: str, name: str
) -> dict[str, Any]:
    """The last recorded value of a decision point (``value``, ``rule``)."""
    event = latest_event(session, org_id, incident_id, f"decision.{name}")
    return dict(event.data) if event else {}


def latest_impact(session: Session, org_id: str, incident_id: str) -> Impact | None:
    query = (
        select(Impact)
        .where(Impact.org_id == org_id, Impact.incident_id == incident_id)
        .order_by(Impact.assessed_at.desc(), Impact.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def round_actions(
    session: Session, org_id: str, incident_id: str, since: datetime
) -> list[IncidentAction]:
    """This round's stabilize actions (planned at or after ``since``)."""
    query = (
        select(IncidentAction)
        .where(
            IncidentAction.org_id == org_id,
            IncidentAction.incident_id == incident_id,
            IncidentAction.origin == "stabilize",
            IncidentAction.planned_at >= since,
        )
        .order_by(IncidentAction.planned_at, IncidentAction.id)
    )
    return list(session.scalars(query))


def stabilization(actions: list[IncidentAction], breaker_open: bool) -> Facts:
    statuses = [a.status for a in actions]
    return {
        "actions_planned": len(statuses),
        "actions_succeeded": statuses.count(ActionStatus.SUCCEEDED.value),
        "actions_refused": statuses.count(ActionStatus.REFUSED.value),
        "actions_failed": statuses.count(ActionStatus.FAILED.value)
        + statuses.count(ActionStatus.INTERRUPTED.value),
        "breaker_open": breaker_open,
    }


def latest_snapshot_facts(
    session: Session, org_id: str, incident_id: str
) -> Facts | None:
    latest = _snapshot(session, org_id, incident_id, None)
    return dict(latest.facts) if latest else None


def latest_alert_facts(
    session: Session, org_id: str, incident_id: str
) -> tuple[Facts, Facts]:
    """The facts of the incident's latest firing alert, and the snapshot facts
    it posted (empty when it posted none)."""
    alert = session.scalars(
        select(Alert)
        .where(
            Alert.org_id == org_id,
            Alert.incident_id == incident_id,
            Alert.status == "firing",
        )
        .order_by(Alert.received_at.desc(), Alert.id.desc())
        .limit(1)
    ).first()
    if alert is None:
        return {}, {}
    return dict(alert.facts), dict(alert.posted_snapshot or {})
