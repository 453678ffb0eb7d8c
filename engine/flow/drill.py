"""Replaying one alert through the whole flow, as a drill.

``replay`` takes a facts document (or a scenario file's mapped facts), opens
a temporary SQLite store, accepts the alert, and lets a worker drive the
incident through every stage in dry-run mode: actions are guarded and
recorded with the command they would run, nothing on the host is touched.
The report is the incident as a reviewer reads it: type and evidence, the
actions and why, brief, impact, message draft, recommendations and the
decision points, plus ``as_dict`` for ``--json``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.actions.registry import recording_executors
from engine.flow.accept import accept
from engine.flow.runner import FlowDeps, Worker
from engine.flow.snapshots import StaticSnapshots
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.settings import Settings
from engine.sources.alert import IncomingAlert
from engine.store.db import open_database, upgrade
from engine.store.incidents import IncidentView, load_incident
from engine.store.orgs import ensure_org

MAX_JOBS = 50


@dataclass(frozen=True)
class Report:
    view: IncidentView

    def as_dict(self) -> dict[str, Any]:
        view = self.view
        incident = view.incident
        classify = _stage_event(view, "classify")
        return {
            "incident_id": incident.id,
            "title": incident.title,
            "severity": incident.severity,
            "status": incident.status,
            "type": incident.type or "unknown",
            "confidence": incident.confidence or 0.0,
            "evidence": classify.get("evidence", {}),
            "classified_by": classify.get("rule"),
            "other_matches": classify.get("others", []),
            "actions": [
                {
                    "name": a.action,
                    "target": a.target,
                    "verdict": a.guard_verdict,
                    "status": a.status,
                    "rule": a.rule_id,
                    "command": a.command,
                    "reason": a.refusal_message,
                }
                for a in view.actions
            ],
            "brief": dict(view.briefs[-1].content) if view.briefs else None,
            "impact": dict(view.impacts[-1].content) if view.impacts else {"level": "none"},
            "message": _message(view),
            "recommendations": [
                {
                    "id": r.key,
                    "text": r.text,
                    "rationale": r.rationale,
                    "risk": r.risk,
                    "action": r.action,
                    "target": r.target,
                    "status": r.status,
                }
                for r in view.recommendations
            ],
            "decisions": _decisions(view),
            "rule_matches": len(view.rule_matches),
        }


def _stage_event(view: IncidentView, stage: str) -> dict[str, Any]:
    for event in reversed(view.events):
        if event.kind == "stage.completed" and event.stage == stage:
            return dict(event.data)
    return {}


def _message(view: IncidentView) -> dict[str, Any] | None:
    if not view.messages:
        return None
    draft = view.messages[-1]
    return {
        "title": draft.title,
        "body": draft.body,
        "tone": draft.tone,
        "channels": list(draft.channels),
        "status": draft.status,
        "approvals_required": draft.approvals_required,
    }


def _decisions(view: IncidentView) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for event in view.events:
        if event.kind.startswith("decision."):
            name = event.kind.removeprefix("decision.")
            found.setdefault(name, {"value": event.data.get("value"), "rule": event.data.get("rule")})
    return found


def replay(
    policy: Policy,
    facts: Mapping[str, Any],
    alert: IncomingAlert,
    runtime: Runtime,
    *,
    org: str = "drill",
) -> Report:
    """Run ``alert`` with ``facts`` through every stage, in dry-run."""
    with tempfile.TemporaryDirectory(prefix="incident-policy-replay-") as scratch:
        url = f"sqlite:///{Path(scratch) / 'replay.sqlite3'}"
        upgrade(url)
        database = open_database(url)
        try:
            return _run(database, policy, facts, alert, runtime, org)
        finally:
            database.dispose()


def _run(
    database: Any,
    policy: Policy,
    facts: Mapping[str, Any],
    alert: IncomingAlert,
    runtime: Runtime,
    org: str,
) -> Report:
    now = runtime.clock.now()
    with database.sessions.begin() as session:
        organization = ensure_org(session, ids=runtime.ids, name=org, now=now)
        accepted = accept(session, policy, organization.id, alert, ids=runtime.ids, now=now)
        org_id = organization.id
    deps = FlowDeps(
        sessions=database.sessions,
        policy=lambda: policy,
        snapshots=StaticSnapshots(facts.get("snapshot", {}), runtime.clock),
        executors=recording_executors(Settings()),
        runtime=runtime,
        mode_override="dry_run",
    )
    worker = Worker(deps, "replay")
    for _ in range(MAX_JOBS):
        if not worker.run_once():
            break
    with database.sessions() as session:
        assert accepted.incident_id is not None
        return Report(load_incident(session, org_id, accepted.incident_id))
