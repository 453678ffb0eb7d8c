"""One round of the flow for a batch of incidents, in three checkpoints.

A round takes each incident from a fresh snapshot to its recommendations.
The incident's ``stage`` column is the checkpoint, committed together with
the work that moved it:

1. ``snapshot``: the host snapshot is stored, the stabilize rules plan the
   safe actions (rows ``planned``, rule matches recorded) -> ``stabilize``;
2. ``stabilize``: each planned action is guarded and started (committed
   before it runs), run, finished and verified on a fresh snapshot; decision
   1 says whether the incident is stable -> ``decide``;
3. ``decide``: classify, brief, impact (decision 2), message draft and
   recommendations (decision 3) have no side effects and commit together
   -> done.

A worker killed anywhere leaves each incident at a checkpoint; the next
worker rebuilds what it needs from the store (``IncidentRound.load``) and
goes on. A batch shares each transaction between its incidents, so a burst
of alerts costs a few commits, not a few per incident; one fresh snapshot
serves the whole batch (they are all about this host).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import ConflictError
from engine.facts.base import Snapshot as Taken
from engine.flow import audit, brief, decide, execution, impact, learning, message
from engine.flow import classify as classify_stage
from engine.flow import recommend as recommend_stage
from engine.flow import stabilize as stabilize_stage
from engine.flow import state as flow_state
from engine.flow.outcomes import ActionSummary, ClassifyOutcome, Decision, PlannedAction
from engine.flow.pipeline import with_classification, with_impact
from engine.policy.policy import Policy
from engine.store import jobs, snapshots
from engine.store.events import EventIn, append_events
from engine.store.incidents import advance_stage
from engine.store.messages import DraftIn, add_draft
from engine.store.models import (
    SEVERITY_RANK,
    ActionStatus,
    Brief,
    Impact,
    Incident,
    IncidentAction,
    IncidentStatus,
    Severity,
)
from engine.store.recommendations import RecommendationIn, add_recommendation
from engine.telemetry import STAGES

log = logging.getLogger(__name__)

SNAPSHOT, STABILIZE, DECIDE = "snapshot", "stabilize", "decide"
CHECKPOINTS = (SNAPSHOT, STABILIZE, DECIDE)
EXECUTE = "execute"


class CheckpointMoved(ConflictError):
    """Another worker moved the checkpoint: this worker's work is void."""


@dataclass
class IncidentRound:
    """What one incident's round needs, in memory between checkpoints."""

    incident_id: str
    org_id: str
    stage: str | None
    org: dict[str, Any]
    alert: dict[str, Any]
    posted: dict[str, Any]
    created_at: datetime
    first_signal_at: datetime
    snapshot_id: str | None = None
    snapshot_at: datetime | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    pending: list[execution.Pending] = field(default_factory=list)
    ran: list[execution.Ran] = field(default_factory=list)
    stable: bool | None = None
    stabilization: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, incident: Incident) -> IncidentRound:
        found = flow_state.load(session, incident)
        initial = found.initial
        stable = flow_state.decision(session, incident.id, decide.STABLE)
        return cls(
            incident_id=incident.id,
            org_id=incident.org_id,
            stage=incident.stage,
            org={"name": found.org.name, "auto_execute": found.org.auto_execute},
            alert=found.alert,
            posted=found.posted,
            created_at=incident.created_at,
            first_signal_at=incident.first_signal_at,
            snapshot_id=initial.id if initial else None,
            snapshot_at=initial.taken_at if initial else None,
            snapshot=dict(initial.facts) if initial else {},
            stable=stable.get("value"),
            stabilization=dict(stable.get("stabilization", {})),
        )

    def facts(self, session: Session, now: datetime) -> dict[str, Any]:
        incident = session.get_one(Incident, self.incident_id)
        return {
            "alert": self.alert,
            "snapshot": self.snapshot,
            "incident": flow_state.incident_facts(incident, now),
            "org": self.org,
        }


@dataclass
class Batch:
    """The shared parts of one batch: policy, executors, clock, writers."""

    policy: Policy
    deps: execution.Executors
    snapshot_of: Callable[..., Taken]
    worker: str
    approval_ttl_s: int
    reevaluate_after_s: float
    rounds: list[IncidentRound] = field(default_factory=list)
    events: list[EventIn] = field(default_factory=list)

    @property
    def now(self) -> datetime:
        return self.deps.runtime.clock.now()

    @property
    def ids(self) -> Any:
        return self.deps.runtime.ids

    def event(
        self,
        item: IncidentRound,
        kind: str,
        stage: str | None,
        text: str,
        data: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        self.events.append(
            EventIn(
                org_id=item.org_id,
                incident_id=item.incident_id,
                at=self.now,
                kind=kind,
                actor=actor or f"worker:{self.worker}",
                stage=stage,
                message=text[:4000],
                data=audit.jsonable(dict(data or {})),
            )
        )

    def flush_events(self, session: Session) -> None:
        append_events(session, self.events)
        self.events = []

    def record(self, session: Session, item: IncidentRound, evaluation: Any, selected: Any) -> None:
        if evaluation is None:
            return
        audit.record(
            session,
            evaluation,
            selected,
            ids=self.ids,
            org_id=item.org_id,
            incident_id=item.incident_id,
            at=self.now,
        )

    def advance(self, session: Session, item: IncidentRound, done: str) -> None:
        index = CHECKPOINTS.index(done)
        following = CHECKPOINTS[index + 1] if index + 1 < len(CHECKPOINTS) else None
        moved = advance_stage(
            session, item.org_id, item.incident_id, done=done, next_stage=following, now=self.now
        )
        if not moved:
            raise CheckpointMoved(
                f"incident {item.incident_id} moved past {done} in another worker; "
                "this worker's outcome was discarded",
                code="E720",
            )
        item.stage = following
        STAGES.labels(done).inc()


def begin(session: Session, batch: Batch, incident_ids: Sequence[str]) -> None:
    """Load each incident; resume it, start a new round, or leave it."""
    for incident_id in incident_ids:
        incident = session.get_one(Incident, incident_id, with_for_update=True)
        stale = _interrupt_stale(session, incident, batch)
        if incident.status == IncidentStatus.RESOLVED.value:
            continue
        if incident.stage is None:
            if not _new_round_due(session, incident, batch):
                continue
            incident.stage = SNAPSHOT
            session.flush()
            item = IncidentRound.load(session, incident)
            batch.event(item, "round.started", None, "new alerts since the last evaluation",
                        {"severity": incident.severity})
        else:
            item = IncidentRound.load(session, incident)
        if stale:
            batch.event(item, "action.interrupted", item.stage,
                        f"{stale} action(s) were running when a worker stopped; they are "
                        "not run again: check their targets by hand")
        batch.rounds.append(item)
    batch.flush_events(session)


def _interrupt_stale(session: Session, incident: Incident, batch: Batch) -> int:
    from engine.store.actions import interrupt_stale

    return interrupt_stale(session, incident.org_id, incident.id, now=batch.now)


def _new_round_due(session: Session, incident: Incident, batch: Batch) -> bool:
    last = flow_state.latest_event(session, incident.id, "round.started")
    last = last or flow_state.latest_event(session, incident.id, "incident.opened")
    started = last.at if last else incident.created_at
    severity = (last.data.get("severity") if last else None) or incident.severity
    rose = SEVERITY_RANK[Severity(incident.severity)] > SEVERITY_RANK[Severity(severity)]
    waited = (batch.now - started).total_seconds() >= batch.reevaluate_after_s
    return rose or waited


def at(batch: Batch, stage: str) -> list[IncidentRound]:
    return [item for item in batch.rounds if item.stage == stage]


# -- 1. snapshot and plan ------------------------------------------------------


def take_snapshots(batch: Batch) -> dict[str, Taken]:
    """Outside any transaction: one snapshot per distinct posted facts."""
    taken: dict[str, Taken] = {}
    for item in at(batch, SNAPSHOT):
        taken[item.incident_id] = batch.snapshot_of(item.posted or None)
    return taken


def store_snapshots(session: Session, batch: Batch, taken: Mapping[str, Taken]) -> None:
    for item in at(batch, SNAPSHOT):
        shot = taken[item.incident_id]
        row = snapshots.add_snapshot(
            session, shot, ids=batch.ids, org_id=item.org_id,
            incident_id=item.incident_id, purpose="initial",
        )
        item.snapshot_id, item.snapshot_at, item.snapshot = row.id, row.taken_at, dict(row.facts)
        incident = session.get_one(Incident, item.incident_id)
        incident.status = IncidentStatus.STABILIZING.value
        incident.policy_version = batch.policy.version
        batch.event(item, "stage.completed", SNAPSHOT, "snapshot taken",
                    {"durations_ms": dict(shot.durations_ms), "provenance": dict(shot.provenance)})
        _plan(session, batch, item)
        batch.advance(session, item, SNAPSHOT)
    batch.flush_events(session)


def _plan(session: Session, batch: Batch, item: IncidentRound) -> None:
    facts = item.facts(session, batch.now)
    plan = stabilize_stage.plan(batch.policy, facts)
    for planned in plan.actions:
        row = execution.plan(
            session, batch.deps, item.org_id, item.incident_id, planned,
            run_key=f"{item.incident_id}:{item.snapshot_id}:{planned.action}:{planned.target}",
            origin="stabilize",
        )
        item.pending.append(
            execution.Pending(row.id, planned, facts, item.incident_id, True,
                              f"policy:{planned.rule_id}")
        )
    batch.record(session, item, plan.evaluation, {m.rule.id for m in plan.evaluation.matches})
    names = [f"{p.action} {p.target}" for p in plan.actions]
    batch.event(item, "stage.planned", "stabilize",
                f"planned: {', '.join(names)}" if names else "no safe action applies",
                {"actions": names})


# -- 2. stabilize ----------------------------------------------------------------


def resume_pending(session: Session, batch: Batch) -> None:
    """Rebuild the planned actions of incidents resumed at ``stabilize``."""
    for item in at(batch, STABILIZE):
        if item.pending or item.snapshot_at is None:
            continue
        facts = item.facts(session, batch.now)
        rows = session.scalars(
            select(IncidentAction).where(
                IncidentAction.incident_id == item.incident_id,
                IncidentAction.origin == "stabilize",
                IncidentAction.planned_at >= item.snapshot_at,
            ).order_by(IncidentAction.planned_at, IncidentAction.id)
        ).all()
        plan = stabilize_stage.plan(batch.policy, facts)
        items = {(p.action, p.target): p.item for p in plan.actions}
        for row in rows:
            planned = PlannedAction(row.action, row.target, row.rule_id or "",
                                    items.get((row.action, row.target)))
            item.pending.append(execution.Pending(row.id, planned, facts, item.incident_id,
                                                  True, f"policy:{row.rule_id}"))


def start_actions(
    session: Session, batch: Batch, pending: Sequence[execution.Pending], *, defer_real: bool
) -> tuple[list[execution.Started], list[execution.Pending]]:
    started, refused, deferred = execution.start(
        session, batch.deps, pending, defer_real=defer_real
    )
    by_incident = {item.incident_id: item for item in batch.rounds}
    for ran in refused:
        incident_of(by_incident, ran.row_id, pending).ran.append(ran)
    return started, deferred


def pending_of(batch: Batch) -> list[execution.Pending]:
    return [p for item in at(batch, STABILIZE) for p in item.pending]


def incident_of(
    rounds: Mapping[str, IncidentRound], row_id: str, pending: Sequence[execution.Pending]
) -> IncidentRound:
    owner = next(p.incident_id for p in pending if p.row_id == row_id)
    return rounds[owner]


def finish_actions(
    session: Session, batch: Batch, done: Sequence[tuple[Any, Any, Any, float]]
) -> None:
    ran = execution.finish(session, batch.deps, done)
    by_incident = {item.incident_id: item for item in batch.rounds}
    for started, result in zip([d[0] for d in done], ran, strict=True):
        by_incident[started.pending.incident_id].ran.append(result)


def decide_stable(
    session: Session,
    batch: Batch,
    fresh: Taken | None,
    verified: Mapping[str, Any],
) -> None:
    execution.record_verifications(session, batch.deps, verified)
    for item in at(batch, STABILIZE):
        facts = item.facts(session, batch.now)
        touched = any(r.status == ActionStatus.SUCCEEDED.value for r in item.ran)
        observed = dict(fresh.facts) if fresh is not None and touched else item.snapshot
        if fresh is not None and touched:
            snapshots.add_snapshot(session, fresh, ids=batch.ids, org_id=item.org_id,
                                   incident_id=item.incident_id, purpose="verify")
        _decide_one(session, batch, item, {**facts, "snapshot": observed})
        batch.advance(session, item, STABILIZE)
    batch.flush_events(session)


def _decide_one(session: Session, batch: Batch, item: IncidentRound, facts: dict[str, Any]) -> None:
    ineffective = execution.ineffective_runs(session, item.incident_id)
    breaker = batch.policy.source.catalog.breaker_ineffective_runs
    rows = flow_state.round_actions(session, item.incident_id, item.snapshot_at or item.created_at)
    summary = flow_state.stabilization(rows, ineffective >= breaker)
    stable = decide.decide(batch.policy, decide.STABLE, {**facts, "stabilization": summary})
    batch.record(session, item, stable.evaluation, {stable.rule_id})
    execution.mark_effect(session, [r.row_id for r in item.ran], stable.value)
    if stable.value:
        session.get_one(Incident, item.incident_id).stabilized_at = batch.now
    item.stable, item.stabilization = stable.value, summary
    batch.event(item, "decision.stable", STABILIZE,
                "stable: monitor" if stable.value else "not stable: recommend next steps",
                {"value": stable.value, "rule": stable.rule_id, "stabilization": summary})
    if summary["breaker_open"] and not stable.value:
        batch.event(item, "breaker.open", STABILIZE,
                    f"{ineffective} automatic actions did not help; automatic actions "
                    "are stopped for this incident and a human is asked")


# -- 3. decide ---------------------------------------------------------------------


def decide_rest(session: Session, batch: Batch) -> list[str]:
    """Classify, brief, impact, message and recommend; the incidents done."""
    history: dict[tuple[str, str], list[float]] = {}
    done = []
    for item in at(batch, DECIDE):
        incident = session.get_one(Incident, item.incident_id)
        _decide_incident(session, batch, item, incident, history)
        batch.advance(session, item, DECIDE)
        done.append(item.incident_id)
    batch.flush_events(session)
    return done


def _decide_incident(
    session: Session,
    batch: Batch,
    item: IncidentRound,
    incident: Incident,
    history: dict[tuple[str, str], list[float]],
) -> None:
    policy = batch.policy
    base = {**item.facts(session, batch.now), "stabilization": item.stabilization}
    classified = classify_stage.classify(policy, base)
    incident.type, incident.confidence = classified.type, classified.confidence
    stable = Decision(decide.STABLE, bool(item.stable), "stored")
    facts = with_classification(base, classified, stable)
    batch.record(session, item, classified.evaluation, {classified.rule_id})
    batch.event(item, "stage.completed", "classify",
                f"classified as {classified.label} ({classified.confidence:.0%})",
                {"type": classified.type, "confidence": classified.confidence,
                 "rule": classified.rule_id, "evidence": dict(classified.evidence),
                 "others": list(classified.others)})
    _write_brief(session, batch, item, incident, facts, classified)
    key = (item.org_id, classified.type)
    if key not in history:
        history[key] = learning.resolve_minutes(session, item.org_id, classified.type)
    assessed = impact.assess(policy, facts, classified, history[key])
    likely = decide.decide(policy, decide.CUSTOMER_IMPACT, with_impact(facts, assessed))
    _store_impact(session, batch, item, assessed, likely)
    if likely.value:
        _draft(session, batch, item, incident, with_impact(facts, assessed), classified, assessed)
    else:
        batch.event(item, "stage.completed", "message",
                    "no customer message: customers are not likely affected")
    _recommend(session, batch, item, incident, with_impact(facts, assessed))


def _write_brief(
    session: Session,
    batch: Batch,
    item: IncidentRound,
    incident: Incident,
    facts: dict[str, Any],
    classified: ClassifyOutcome,
) -> None:
    summaries = tuple(
        ActionSummary(r.planned.action, r.planned.target, r.status, r.message) for r in item.ran
    ) or _stored_summaries(session, item)
    written = brief.write_brief(
        batch.policy, facts, classified, summaries, stable=bool(item.stable),
        first_signal_at=incident.first_signal_at, now=batch.now,
    )
    latest = flow_state.latest_snapshot_facts(session, item.incident_id) or item.snapshot
    content = {**plain(written), "current_state": brief.current_state(latest)}
    session.add(Brief(id=batch.ids.new("brf"), org_id=item.org_id, incident_id=item.incident_id,
                      created_at=batch.now, policy_version=batch.policy.version, content=content))
    batch.record(session, item, written.evaluation, set(written.rules.values()))
    batch.event(item, "stage.completed", "brief", written.summary)


def _stored_summaries(session: Session, item: IncidentRound) -> tuple[ActionSummary, ...]:
    rows = flow_state.round_actions(session, item.incident_id, item.snapshot_at or item.created_at)
    return tuple(
        ActionSummary(a.action, a.target, a.status,
                      a.refusal_message or (a.verification or {}).get("message", ""))
        for a in rows
    )


def _store_impact(
    session: Session, batch: Batch, item: IncidentRound, assessed: Any, likely: Decision
) -> None:
    summary = (f"{assessed.level} impact; {len(assessed.features)} feature(s) affected; "
               f"downtime estimate {assessed.downtime_minutes:g} min ({assessed.downtime_basis})")
    session.add(Impact(id=batch.ids.new("imp"), org_id=item.org_id, incident_id=item.incident_id,
                       assessed_at=batch.now, likely=likely.value, level=assessed.level,
                       summary=summary, content=plain(assessed)))
    batch.record(session, item, assessed.evaluation, {assessed.rule_id})
    batch.record(session, item, likely.evaluation, {likely.rule_id})
    batch.event(item, "decision.customer_impact", "impact",
                f"impact {assessed.level}; customer message "
                + ("drafted" if likely.value else "not needed"),
                {"value": likely.value, "rule": likely.rule_id, "level": assessed.level})


def _draft(
    session: Session,
    batch: Batch,
    item: IncidentRound,
    incident: Incident,
    facts: dict[str, Any],
    classified: ClassifyOutcome,
    assessed: Any,
) -> None:
    draft = message.draft(batch.policy, facts, classified, assessed, incident.first_signal_at,
                          stable=bool(item.stable), org=str(item.org.get("name", "")))
    if draft is None:
        batch.event(item, "stage.completed", "message", "no message rule matched; nothing drafted")
        return
    row = add_draft(
        session,
        DraftIn(draft.title, draft.body, draft.tone, draft.channels, draft.template,
                draft.approvals_required),
        ids=batch.ids, org_id=item.org_id, incident_id=item.incident_id, now=batch.now,
    )
    batch.record(session, item, draft.evaluation, {draft.rule_id})
    batch.event(item, "message.drafted", "message",
                f"customer message drafted ({draft.tone}, {', '.join(draft.channels)}); it "
                f"waits for {draft.approvals_required} approval(s) and is never sent by this "
                "service", {"message_id": row.id})


def _recommend(
    session: Session, batch: Batch, item: IncidentRound, incident: Incident, facts: dict[str, Any]
) -> None:
    outcome = recommend_stage.recommend(batch.policy, facts)
    expires = batch.now + timedelta(seconds=batch.approval_ttl_s)
    done = {(a.action, a.target) for a in flow_state.round_actions(session, incident.id, incident.created_at)
            if a.status == ActionStatus.SUCCEEDED.value}
    added = 0
    for rec in outcome.recommendations:
        if rec.action and (rec.action, rec.target) in done:
            continue  # stabilize already did it: nothing to approve
        _add_recommendation(session, batch, item, rec, expires)
        added += 1
    batch.record(session, item, outcome.evaluation, {m.rule.id for m in outcome.evaluation.matches})
    incident.status = (IncidentStatus.MONITORING if item.stable
                       else IncidentStatus.AWAITING_APPROVAL).value
    batch.event(item, "flow.completed", "recommend",
                f"{added} recommendation(s); incident is {incident.status.replace('_', ' ')}")


def _add_recommendation(
    session: Session, batch: Batch, item: IncidentRound, rec: Any, expires: datetime
) -> None:
    row = add_recommendation(
        session,
        RecommendationIn(key=rec.id, text=rec.text, risk=rec.risk, rationale=rec.rationale,
                         action=rec.action, target=rec.target, rule_id=rec.rule_id,
                         expires_at=expires),
        ids=batch.ids, org_id=item.org_id, incident_id=item.incident_id, now=batch.now,
    )
    auto = rec.auto
    if auto is None:
        return
    batch.record(session, item, auto.evaluation, {auto.rule_id})
    batch.event(item, "decision.auto_execute", "recommend",
                f"{rec.id}: " + ("runs now (low risk, allowed)" if auto.value
                                 else "waits for a human approval"),
                {"value": auto.value, "rule": auto.rule_id, "recommendation_id": row.id})
    if auto.value:
        jobs.enqueue(session, ids=batch.ids, org_id=item.org_id, kind=EXECUTE, now=batch.now,
                     incident_id=item.incident_id,
                     payload={"recommendation_id": row.id, "automatic": True,
                              "actor": f"policy:{auto.rule_id}"})


def plain(value: Any) -> dict[str, Any]:
    data = asdict(value)
    data.pop("evaluation", None)
    result: dict[str, Any] = audit.jsonable(data)
    return result
