"""One round of the flow for a batch of incidents, in three checkpoints.

A round takes each incident from a fresh snapshot to its recommendations.
The incident's ``stage`` column is the checkpoint, committed together with
the work that moved it:

1. ``snapshot``: the host snapshot is stored and the stabilize rules plan
   the safe actions (rows ``planned``, rule matches recorded) -> ``stabilize``;
2. ``stabilize``: each planned action is guarded and started (committed
   before it runs), run, finished and verified on a fresh snapshot; decision
   1 says whether the incident is stable -> ``decide``;
3. ``decide``: classify, brief, impact (decision 2), message draft and
   recommendations (decision 3) have no side effects and commit together
   -> done.

A worker killed anywhere leaves each incident at a checkpoint; the next
worker rebuilds what it needs from the store (``IncidentRound.load``) and
goes on. The incidents of a batch share each transaction, and each table's
rows are written in one statement (``engine.store.bulk``), so a burst of
alerts costs a few commits instead of dozens per incident. One fresh
snapshot serves the whole batch: they are all about this host.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
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
from engine.policy.model import Evaluation
from engine.policy.policy import Policy
from engine.store.actions import interrupt_stale
from engine.store.bulk import Rows
from engine.store.events import EventIn, append_events
from engine.store.incidents import advance_many
from engine.store.matches import MatchRecord
from engine.store.models import (
    SEVERITY_RANK,
    ActionStatus,
    Brief,
    CustomerMessage,
    Impact,
    Incident,
    IncidentAction,
    IncidentStatus,
    Job,
    JobStatus,
    Organization,
    Recommendation,
    RecommendationStatus,
    RuleMatch,
    Severity,
    Snapshot,
)
from engine.telemetry import STAGES

log = logging.getLogger(__name__)

SNAPSHOT, STABILIZE, DECIDE = "snapshot", "stabilize", "decide"
CHECKPOINTS = (SNAPSHOT, STABILIZE, DECIDE)
EXECUTE = "execute"


class CheckpointMoved(ConflictError):
    """Another worker moved a checkpoint: this worker's batch is void."""


@dataclass
class IncidentRound:
    """What one incident's round needs, in memory between checkpoints."""

    incident: Incident
    org: dict[str, Any]
    alert: dict[str, Any]
    posted: dict[str, Any]
    snapshot_id: str | None = None
    snapshot_at: datetime | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    pending: list[execution.Pending] = field(default_factory=list)
    ran: list[execution.Ran] = field(default_factory=list)
    resumed: bool = False
    stable: bool | None = None
    stabilization: dict[str, Any] = field(default_factory=dict)
    latest: dict[str, Any] | None = None  # the verify snapshot, when taken

    @property
    def incident_id(self) -> str:
        return self.incident.id

    @property
    def org_id(self) -> str:
        return self.incident.org_id

    @property
    def stage(self) -> str | None:
        return self.incident.stage

    def facts(self, now: datetime) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "snapshot": self.snapshot,
            "incident": flow_state.incident_facts(self.incident, now),
            "org": self.org,
        }


@dataclass
class Batch:
    """One worker's batch: policy, executors, and what it will write."""

    policy: Policy
    deps: execution.Executors
    snapshot_of: Callable[..., Taken]
    worker: str
    approval_ttl_s: int
    reevaluate_after_s: float
    rounds: list[IncidentRound] = field(default_factory=list)
    rows: Rows = field(default_factory=Rows)
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
    ) -> None:
        self.events.append(
            EventIn(
                org_id=item.org_id,
                incident_id=item.incident_id,
                at=self.now,
                kind=kind,
                actor=f"worker:{self.worker}",
                stage=stage,
                message=text[:4000],
                data=audit.jsonable(dict(data or {})),
            )
        )

    def record(
        self, item: IncidentRound, evaluation: Evaluation | None, selected: Any
    ) -> None:
        """Audit every match of ``evaluation`` (written at the checkpoint)."""
        if evaluation is None:
            return
        for match in evaluation.matches:
            record = MatchRecord(
                rule_id=match.rule.id,
                file=match.rule.location.file,
                line=match.rule.location.line,
                selected=match.rule.id in selected,
                facts_used=audit.jsonable(dict(match.facts_used)),
                outcome=audit.jsonable(dict(match.then)),
            )
            self.rows.add(
                RuleMatch,
                id=self.ids.new("rmt"),
                org_id=item.org_id,
                incident_id=item.incident_id,
                stage=evaluation.stage,
                policy_version=evaluation.policy_version,
                rule_id=record.rule_id,
                file=record.file,
                line=record.line,
                selected=record.selected,
                facts_used=dict(record.facts_used),
                outcome=dict(record.outcome),
                evaluated_at=self.now,
            )

    def _still_open(
        self, session: Session, items: Sequence[IncidentRound]
    ) -> list[IncidentRound]:
        ids = [item.incident_id for item in items]
        if not ids:
            return []
        resolved = set(
            session.scalars(
                select(Incident.id)
                .where(
                    Incident.id.in_(ids),
                    Incident.status == IncidentStatus.RESOLVED.value,
                )
                .with_for_update()
            )
        )
        for item in items:
            if item.incident_id in resolved:
                self._stop(item)
        return [item for item in items if item.incident_id not in resolved]

    def _stop(self, item: IncidentRound) -> None:
        self.rows.drop_incident(item.incident_id, keep=(IncidentAction,))
        self.events = [
            e
            for e in self.events
            if e.incident_id != item.incident_id or e.kind.startswith("action.")
        ]
        self.event(
            item,
            "flow.stopped",
            item.stage,
            "resolved by a human while the flow ran: the round stops here",
        )
        item.incident.stage = None
        item.incident.status = IncidentStatus.RESOLVED.value

    def flush(self, session: Session) -> None:
        """Write what is collected so far, in the caller's transaction."""
        self.rows.write(session)
        append_events(session, self.events)
        self.events = []

    def checkpoint(
        self, session: Session, done: str, items: Sequence[IncidentRound]
    ) -> None:
        """Write everything and move ``items`` from ``done`` to the next stage.

        An incident a human resolved meanwhile leaves the round here: what
        the round would have written for it is dropped (actions that ran stay
        recorded) and its status stays resolved.
        """
        index = CHECKPOINTS.index(done)
        following = CHECKPOINTS[index + 1] if index + 1 < len(CHECKPOINTS) else None
        items = self._still_open(session, items)
        for item in items:
            self.rows.change(Incident, item.incident_id, updated_at=self.now)
        self.rows.write(session)
        append_events(session, self.events)
        self.events = []
        moved = advance_many(
            session,
            [i.incident_id for i in items],
            done=done,
            next_stage=following,
            now=self.now,
        )
        if not moved:
            raise CheckpointMoved(
                f"an incident of this batch moved past {done} in another worker; "
                "this worker's outcome was discarded and the batch is retried",
                code="E720",
            )
        for item in items:
            item.incident.stage = following
        if items:
            STAGES.labels(done).inc(len(items))


def begin(session: Session, batch: Batch, incident_ids: Sequence[str]) -> None:
    """Load each incident; resume it, start a new round, or leave it."""
    incidents = session.scalars(
        select(Incident).where(Incident.id.in_(list(incident_ids))).with_for_update()
    ).all()
    orgs: dict[str, dict[str, Any]] = {}
    running = _running_actions(session, [i.id for i in incidents])
    for incident in incidents:
        stale = 0
        if running[incident.id]:
            stale = interrupt_stale(
                session, incident.org_id, incident.id, now=batch.now
            )
        if incident.status == IncidentStatus.RESOLVED.value:
            continue
        fresh_round = incident.stage is None
        if fresh_round and not _new_round_due(session, incident, batch):
            continue
        item = _load(session, incident, orgs)
        if fresh_round:
            incident.stage = SNAPSHOT
            batch.event(
                item,
                "round.started",
                None,
                "new alerts since the last evaluation",
                {"severity": incident.severity},
            )
        if stale:
            batch.event(
                item,
                "action.interrupted",
                item.stage,
                f"{stale} action(s) were running when a worker stopped; they are "
                "not run again: check their targets by hand",
            )
        batch.rounds.append(item)
    session.flush()
    append_events(session, batch.events)
    batch.events = []


def _running_actions(session: Session, incident_ids: Sequence[str]) -> Counter[str]:
    """Actions left running by a worker that died, per incident."""
    rows = session.execute(
        select(IncidentAction.incident_id, func.count())
        .where(
            IncidentAction.incident_id.in_(list(incident_ids)),
            IncidentAction.status == ActionStatus.RUNNING.value,
        )
        .group_by(IncidentAction.incident_id)
    )
    return Counter({incident_id: int(count) for incident_id, count in rows})


def _load(
    session: Session, incident: Incident, orgs: dict[str, dict[str, Any]]
) -> IncidentRound:
    if incident.org_id not in orgs:
        org = session.get_one(Organization, incident.org_id)
        orgs[incident.org_id] = {"name": org.name, "auto_execute": org.auto_execute}
    alert, posted = flow_state.latest_alert_facts(session, incident.org_id, incident.id)
    item = IncidentRound(incident, orgs[incident.org_id], alert, posted)
    if incident.stage in (STABILIZE, DECIDE):
        _resume(session, item)
    return item


def _resume(session: Session, item: IncidentRound) -> None:
    """Read back what the committed checkpoints of this round hold."""
    initial = session.scalars(
        select(Snapshot)
        .where(
            Snapshot.org_id == item.org_id,
            Snapshot.incident_id == item.incident_id,
            Snapshot.purpose == "initial",
        )
        .order_by(Snapshot.taken_at.desc(), Snapshot.id.desc())
        .limit(1)
    ).first()
    if initial is not None:
        item.snapshot_id, item.snapshot_at = initial.id, initial.taken_at
        item.snapshot = dict(initial.facts)
    item.resumed = True
    stable = flow_state.decision(session, item.org_id, item.incident_id, decide.STABLE)
    item.stable = stable.get("value")
    item.stabilization = dict(stable.get("stabilization", {}))
    item.latest = flow_state.latest_snapshot_facts(
        session, item.org_id, item.incident_id
    )


def _new_round_due(session: Session, incident: Incident, batch: Batch) -> bool:
    last = flow_state.latest_event(
        session, incident.org_id, incident.id, "round.started"
    )
    last = last or flow_state.latest_event(
        session, incident.org_id, incident.id, "incident.opened"
    )
    started = last.at if last else incident.created_at
    severity = (last.data.get("severity") if last else None) or incident.severity
    rose = (
        SEVERITY_RANK[Severity(incident.severity)] > SEVERITY_RANK[Severity(severity)]
    )
    waited = (batch.now - started).total_seconds() >= batch.reevaluate_after_s
    return rose or waited


def at(batch: Batch, stage: str) -> list[IncidentRound]:
    return [item for item in batch.rounds if item.stage == stage]


# -- 1. snapshot and plan ------------------------------------------------------


def take_snapshots(batch: Batch) -> dict[str, Taken]:
    """Outside any transaction. Incidents without posted facts share one."""
    shared: Taken | None = None
    taken: dict[str, Taken] = {}
    for item in at(batch, SNAPSHOT):
        if item.posted:
            taken[item.incident_id] = batch.snapshot_of(item.posted)
            continue
        shared = shared or batch.snapshot_of(None)
        taken[item.incident_id] = shared
    return taken


def store_snapshots(session: Session, batch: Batch, taken: Mapping[str, Taken]) -> None:
    items = at(batch, SNAPSHOT)
    for item in items:
        shot = taken[item.incident_id]
        item.snapshot_id = batch.ids.new("snp")
        item.snapshot_at, item.snapshot = shot.taken_at, dict(shot.facts)
        batch.rows.add(
            Snapshot,
            id=item.snapshot_id,
            org_id=item.org_id,
            incident_id=item.incident_id,
            taken_at=shot.taken_at,
            purpose="initial",
            facts=dict(shot.facts),
            provenance=dict(shot.provenance),
            durations=dict(shot.durations_ms),
        )
        batch.rows.change(
            Incident,
            item.incident_id,
            status=IncidentStatus.STABILIZING.value,
            policy_version=batch.policy.version,
        )
        item.incident.status = IncidentStatus.STABILIZING.value
        batch.event(
            item,
            "stage.completed",
            SNAPSHOT,
            "snapshot taken",
            {
                "durations_ms": dict(shot.durations_ms),
                "provenance": dict(shot.provenance),
            },
        )
        _plan(batch, item)
    batch.checkpoint(session, SNAPSHOT, items)


def _plan(batch: Batch, item: IncidentRound) -> None:
    facts = item.facts(batch.now)
    plan = stabilize_stage.plan(batch.policy, facts)
    for planned in plan.actions:
        row_id = execution.plan_row(
            batch.rows,
            batch.deps,
            item.org_id,
            item.incident_id,
            planned,
            run_key=f"{item.incident_id}:{item.snapshot_id}:{planned.action}:{planned.target}",
            origin="stabilize",
        )
        item.pending.append(
            execution.Pending(
                row_id,
                item.org_id,
                planned,
                facts,
                item.incident_id,
                True,
                f"policy:{planned.rule_id}",
            )
        )
    batch.record(item, plan.evaluation, {m.rule.id for m in plan.evaluation.matches})
    names = [f"{p.action} {p.target}" for p in plan.actions]
    batch.event(
        item,
        "stage.planned",
        "stabilize",
        f"planned: {', '.join(names)}" if names else "no safe action applies",
        {"actions": names},
    )


# -- 2. stabilize ----------------------------------------------------------------


def resume_pending(session: Session, batch: Batch) -> None:
    """Rebuild the planned actions of incidents resumed at ``stabilize``."""
    for item in at(batch, STABILIZE):
        if not item.resumed or item.snapshot_at is None:
            continue
        facts = item.facts(batch.now)
        plan = stabilize_stage.plan(batch.policy, facts)
        targets = {(p.action, p.target): p.item for p in plan.actions}
        rows = flow_state.round_actions(
            session, item.org_id, item.incident_id, item.snapshot_at
        )
        for row in rows:
            planned = PlannedAction(
                row.action,
                row.target,
                row.rule_id or "",
                targets.get((row.action, row.target)),
            )
            pending = execution.Pending(
                row.id,
                item.org_id,
                planned,
                facts,
                item.incident_id,
                True,
                f"policy:{row.rule_id}",
                status=row.status,
            )
            item.pending.append(pending)
            if row.status != ActionStatus.PLANNED.value:
                item.ran.append(
                    execution.Ran(
                        row.id,
                        item.org_id,
                        item.incident_id,
                        planned,
                        row.status,
                        row.refusal_message or "",
                    )
                )


def pending_of(batch: Batch) -> list[execution.Pending]:
    return [p for item in at(batch, STABILIZE) for p in item.pending]


def owner(batch: Batch, incident_id: str) -> IncidentRound:
    return next(item for item in batch.rounds if item.incident_id == incident_id)


def decide_stable(
    session: Session,
    batch: Batch,
    fresh: Taken | None,
    verified: Mapping[str, Any],
) -> None:
    items = at(batch, STABILIZE)
    ineffective = execution.ineffective_runs(session, [i.incident_id for i in items])
    effective: dict[str, bool] = {}
    for item in items:
        touched = any(r.status == ActionStatus.SUCCEEDED.value for r in item.ran)
        observed = item.snapshot
        if fresh is not None and touched:
            observed = dict(fresh.facts)
            item.latest = observed
            batch.rows.add(
                Snapshot,
                id=batch.ids.new("snp"),
                org_id=item.org_id,
                incident_id=item.incident_id,
                taken_at=fresh.taken_at,
                purpose="verify",
                facts=observed,
                provenance=dict(fresh.provenance),
                durations=dict(fresh.durations_ms),
            )
        effective[item.incident_id] = _decide_one(
            batch, item, observed, ineffective[item.incident_id]
        )
    ran = [r for item in items for r in item.ran]
    execution.record_verifications(
        batch.rows, batch.events, ran, verified, batch.now, effective=effective
    )
    batch.checkpoint(session, STABILIZE, items)


def _decide_one(
    batch: Batch, item: IncidentRound, observed: dict[str, Any], ineffective: int
) -> bool:
    statuses = [r.status for r in item.ran]
    breaker = batch.policy.source.catalog.breaker_ineffective_runs
    summary = stabilize_stage.summary_facts(statuses, ineffective >= breaker)
    summary["actions_failed"] += statuses.count(ActionStatus.INTERRUPTED.value)
    facts = {**item.facts(batch.now), "snapshot": observed, "stabilization": summary}
    stable = decide.decide(batch.policy, decide.STABLE, facts)
    batch.record(item, stable.evaluation, {stable.rule_id})
    if stable.value:
        batch.rows.change(Incident, item.incident_id, stabilized_at=batch.now)
    item.stable, item.stabilization = stable.value, summary
    batch.event(
        item,
        "decision.stable",
        STABILIZE,
        "stable: monitor" if stable.value else "not stable: recommend next steps",
        {"value": stable.value, "rule": stable.rule_id, "stabilization": summary},
    )
    if summary["breaker_open"] and not stable.value:
        batch.event(
            item,
            "breaker.open",
            STABILIZE,
            f"{ineffective} automatic actions did not help; automatic actions "
            "are stopped for this incident and a human is asked",
        )
    return stable.value


# -- 3. decide ---------------------------------------------------------------------


def decide_rest(session: Session, batch: Batch) -> None:
    """Classify, brief, impact, message and recommend every incident."""
    items = at(batch, DECIDE)
    history: dict[tuple[str, str], list[float]] = {}
    for item in items:
        if item.resumed and not item.ran:
            _resume_ran(session, item)
        _decide_incident(session, batch, item, history)
    batch.checkpoint(session, DECIDE, items)


def _resume_ran(session: Session, item: IncidentRound) -> None:
    since = item.snapshot_at or item.incident.created_at
    for row in flow_state.round_actions(session, item.org_id, item.incident_id, since):
        planned = PlannedAction(row.action, row.target, row.rule_id or "")
        message = row.refusal_message or (row.verification or {}).get("message", "")
        item.ran.append(
            execution.Ran(
                row.id, item.org_id, item.incident_id, planned, row.status, message
            )
        )


def _decide_incident(
    session: Session,
    batch: Batch,
    item: IncidentRound,
    history: dict[tuple[str, str], list[float]],
) -> None:
    policy = batch.policy
    base = {**item.facts(batch.now), "stabilization": item.stabilization}
    classified = classify_stage.classify(policy, base)
    batch.rows.change(
        Incident,
        item.incident_id,
        type=classified.type,
        confidence=classified.confidence,
    )
    item.incident.type = classified.type
    stable = Decision(decide.STABLE, bool(item.stable), "stored")
    facts = with_classification(base, classified, stable)
    batch.record(item, classified.evaluation, {classified.rule_id})
    batch.event(
        item,
        "stage.completed",
        "classify",
        f"classified as {classified.label} ({classified.confidence:.0%})",
        {
            "type": classified.type,
            "confidence": classified.confidence,
            "rule": classified.rule_id,
            "evidence": dict(classified.evidence),
            "others": list(classified.others),
        },
    )
    _write_brief(batch, item, facts, classified)
    key = (item.org_id, classified.type)
    if key not in history:
        history[key] = learning.resolve_minutes(session, item.org_id, classified.type)
    assessed = impact.assess(policy, facts, classified, history[key])
    likely = decide.decide(policy, decide.CUSTOMER_IMPACT, with_impact(facts, assessed))
    _store_impact(batch, item, assessed, likely)
    impacted = with_impact(facts, assessed)
    if likely.value:
        _draft(batch, item, impacted, classified, assessed)
    else:
        batch.event(
            item,
            "stage.completed",
            "message",
            "no customer message: customers are not likely affected",
        )
    _recommend(batch, item, impacted)


def _write_brief(
    batch: Batch,
    item: IncidentRound,
    facts: dict[str, Any],
    classified: ClassifyOutcome,
) -> None:
    summaries = tuple(
        ActionSummary(r.planned.action, r.planned.target, r.status, r.message)
        for r in item.ran
    )
    written = brief.write_brief(
        batch.policy,
        facts,
        classified,
        summaries,
        stable=bool(item.stable),
        first_signal_at=item.incident.first_signal_at,
        now=batch.now,
    )
    content = {
        **plain(written),
        "current_state": brief.current_state(item.latest or item.snapshot),
    }
    batch.rows.add(
        Brief,
        id=batch.ids.new("brf"),
        org_id=item.org_id,
        incident_id=item.incident_id,
        created_at=batch.now,
        policy_version=batch.policy.version,
        content=content,
    )
    batch.record(item, written.evaluation, set(written.rules.values()))
    batch.event(item, "stage.completed", "brief", written.summary)


def _store_impact(
    batch: Batch, item: IncidentRound, assessed: Any, likely: Decision
) -> None:
    summary = (
        f"{assessed.level} impact; {len(assessed.features)} feature(s) affected; "
        f"downtime estimate {assessed.downtime_minutes:g} min "
        f"({assessed.downtime_basis})"
    )
    batch.rows.add(
        Impact,
        id=batch.ids.new("imp"),
        org_id=item.org_id,
        incident_id=item.incident_id,
        assessed_at=batch.now,
        likely=likely.value,
        level=assessed.level,
        summary=summary,
        content=plain(assessed),
    )
    batch.record(item, assessed.evaluation, {assessed.rule_id})
    batch.record(item, likely.evaluation, {likely.rule_id})
    batch.event(
        item,
        "decision.customer_impact",
        "impact",
        f"impact {assessed.level}; customer message "
        + ("drafted" if likely.value else "not needed"),
        {"value": likely.value, "rule": likely.rule_id, "level": assessed.level},
    )


def _draft(
    batch: Batch,
    item: IncidentRound,
    facts: dict[str, Any],
    classified: ClassifyOutcome,
    assessed: Any,
) -> None:
    draft = message.draft(
        batch.policy,
        facts,
        classified,
        assessed,
        item.incident.first_signal_at,
        stable=bool(item.stable),
        org=str(item.org.get("name", "")),
    )
    if draft is None:
        batch.event(
            item,
            "stage.completed",
            "message",
            "no message rule matched; nothing drafted",
        )
        return
    message_id = batch.ids.new("msg")
    batch.rows.add(
        CustomerMessage,
        id=message_id,
        org_id=item.org_id,
        incident_id=item.incident_id,
        title=draft.title,
        body=draft.body,
        original_body=draft.body,
        tone=draft.tone,
        channels=list(draft.channels),
        status="draft",
        approvals_required=draft.approvals_required,
        template=draft.template,
        created_at=batch.now,
    )
    batch.record(item, draft.evaluation, {draft.rule_id})
    batch.event(
        item,
        "message.drafted",
        "message",
        f"customer message drafted ({draft.tone}, {', '.join(draft.channels)}); it "
        f"waits for {draft.approvals_required} approval(s) and is never sent by this "
        "service",
        {"message_id": message_id},
    )


def _recommend(batch: Batch, item: IncidentRound, facts: dict[str, Any]) -> None:
    outcome = recommend_stage.recommend(batch.policy, facts)
    expires = batch.now + timedelta(seconds=batch.approval_ttl_s)
    done = {
        (r.planned.action, r.planned.target)
        for r in item.ran
        if r.status == ActionStatus.SUCCEEDED.value
    }
    added = 0
    for rec in outcome.recommendations:
        if rec.action and (rec.action, rec.target) in done:
            continue  # stabilize already did it: nothing to approve
        _add_recommendation(batch, item, rec, expires)
        added += 1
    batch.record(
        item, outcome.evaluation, {m.rule.id for m in outcome.evaluation.matches}
    )
    status = (
        IncidentStatus.MONITORING if item.stable else IncidentStatus.AWAITING_APPROVAL
    ).value
    batch.rows.change(Incident, item.incident_id, status=status)
    item.incident.status = status
    batch.event(
        item,
        "flow.completed",
        "recommend",
        f"{added} recommendation(s); incident is {status.replace('_', ' ')}",
    )


def _add_recommendation(
    batch: Batch, item: IncidentRound, rec: Any, expires: datetime
) -> None:
    rec_id = batch.ids.new("rec")
    batch.rows.add(
        Recommendation,
        id=rec_id,
        org_id=item.org_id,
        incident_id=item.incident_id,
        key=rec.id,
        text=rec.text,
        rationale=rec.rationale,
        risk=rec.risk,
        action=rec.action,
        target=rec.target,
        status=RecommendationStatus.PENDING.value,
        rule_id=rec.rule_id,
        created_at=batch.now,
        expires_at=expires,
        decided_by=None,
        decided_at=None,
    )
    auto = rec.auto
    if auto is None:
        return
    batch.record(item, auto.evaluation, {auto.rule_id})
    batch.event(
        item,
        "decision.auto_execute",
        "recommend",
        f"{rec.id}: "
        + (
            "runs now (low risk, allowed)"
            if auto.value
            else "waits for a human approval"
        ),
        {"value": auto.value, "rule": auto.rule_id, "recommendation_id": rec_id},
    )
    if auto.value:
        batch.rows.add(
            Job,
            id=batch.ids.new("job"),
            org_id=item.org_id,
            incident_id=item.incident_id,
            kind=EXECUTE,
            status=JobStatus.QUEUED.value,
            run_after=batch.now,
            attempts=0,
            created_at=batch.now,
            payload={
                "recommendation_id": rec_id,
                "automatic": True,
                "actor": f"policy:{auto.rule_id}",
            },
        )


def plain(value: Any) -> dict[str, Any]:
    """A stage outcome as stored: its fields, without the evaluation."""
    data = {
        f.name: getattr(value, f.name) for f in fields(value) if f.name != "evaluation"
    }
    result: dict[str, Any] = audit.jsonable(_dataclasses_to_dicts(data))
    return result


def _dataclasses_to_dicts(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _dataclasses_to_dicts(getattr(value, f.name)) for f in fields(value)
        }
    if isinstance(value, dict):
        return {k: _dataclasses_to_dicts(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dataclasses_to_dicts(v) for v in value]
    return value
