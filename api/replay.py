"""Replay: an incident's stored facts through the running or a candidate policy.

The facts are the ones the service evaluated: the incident's first alert and
its initial snapshot. ``engine.flow.pipeline.dry_run`` decides every stage
for them without running anything, and the outcome is set beside what the
service stored (severity, type, stabilizing actions, impact level, the
decisions, recommendations, whether a customer message was drafted), field
by field, so a reviewer sees exactly what a policy change would alter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from api.schemas import Difference, ReplayOut
from engine.errors import ConflictError
from engine.flow import decide
from engine.flow.pipeline import DryRun, dry_run
from engine.policy.policy import Policy
from engine.store.incidents import IncidentView, load_incident
from engine.store.models import ActionOrigin, Organization

COMPARED = (
    "severity",
    "type",
    "actions",
    "impact",
    "decisions",
    "recommendations",
    "message_drafted",
)
DECISION_EVENTS = {
    f"decision.{decide.STABLE}": decide.STABLE,
    f"decision.{decide.CUSTOMER_IMPACT}": decide.CUSTOMER_IMPACT,
    f"decision.{decide.AUTO_EXECUTE}": decide.AUTO_EXECUTE,
}


def replay(
    session: Session, policy: Policy, org_id: str, incident_id: str, now: datetime
) -> ReplayOut:
    view = load_incident(session, org_id, incident_id)
    facts = stored_facts(view)
    org = session.get_one(Organization, org_id)
    run = dry_run(
        policy,
        facts,
        now=now,
        first_signal_at=view.incident.first_signal_at,
        org={"name": org.name, "auto_execute": org.auto_execute},
    )
    stored, replayed = stored_outcome(view), replayed_outcome(run)
    differences = [
        Difference(field=name, stored=stored[name], replayed=replayed[name])
        for name in COMPARED
        if stored[name] != replayed[name]
    ]
    return ReplayOut(
        incident_id=incident_id,
        policy_version=policy.version,
        stored_policy_version=view.incident.policy_version,
        replayed=replayed,
        stored=stored,
        differences=differences,
    )


def stored_facts(view: IncidentView) -> dict[str, Any]:
    initial = next((s for s in view.snapshots if s.purpose == "initial"), None)
    if not view.alerts or initial is None:
        raise ConflictError(
            f"incident {view.incident.id} has no initial snapshot yet: the flow "
            "has not evaluated it; replay it once its status is past open",
            code="E740",
        )
    return {"alert": dict(view.alerts[0].facts), "snapshot": dict(initial.facts)}


def stored_outcome(view: IncidentView) -> dict[str, Any]:
    actions = sorted(
        {
            f"{a.action}:{a.target}"
            for a in view.actions
            if a.origin == ActionOrigin.STABILIZE.value
        }
    )
    decisions: dict[str, Any] = {}
    for event in view.events:
        name = DECISION_EVENTS.get(event.kind)
        if name is not None and name not in decisions:
            decisions[name] = event.data.get("value")
    return {
        "severity": view.alerts[0].severity,
        "type": view.incident.type,
        "actions": actions,
        "impact": view.impacts[0].level if view.impacts else None,
        "decisions": decisions,
        "recommendations": sorted({r.key for r in view.recommendations}),
        "message_drafted": bool(view.messages),
    }


def replayed_outcome(run: DryRun) -> dict[str, Any]:
    return {
        "severity": run.intake.severity,
        "type": run.classification.type,
        "actions": sorted({f"{p.action}:{p.target}" for p in run.plan.actions}),
        "impact": run.impact.level,
        "decisions": _decisions(run.decisions),
        "recommendations": sorted({r.id for r in run.recommendations.recommendations}),
        "message_drafted": run.message is not None,
    }


def _decisions(found: Mapping[str, Any]) -> dict[str, Any]:
    return {name: decision.value for name, decision in found.items()}
