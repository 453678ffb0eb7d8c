"""The worker: claims durable jobs and drives incidents through the stages.

A ``flow`` job takes an incident through snapshot, stabilize, classify,
brief, impact, message and recommend. Each stage reads what earlier stages
committed (``engine.flow.state``), decides with the policy, and commits its
outcome, its rule matches and its timeline events **together with** the move
of the incident's checkpoint to the next stage. A worker killed at any point
leaves either the whole stage or none of it; whoever claims the job next
(after its lease lapses) resumes at the checkpoint. Actions are the one
side effect a stage cannot roll back; ``engine.flow.execution`` makes them
run at most once.

Other jobs: ``execute`` runs an approved (or auto-approved) recommendation
after re-checking its guards on a fresh snapshot; ``learn`` undoes what can
be undone and writes the learning review when a human resolves an incident.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.actions.base import Executor
from engine.actions.locks import TargetLocks
from engine.errors import ConflictError, IncidentPolicyError
from engine.facts.base import Snapshot as Taken
from engine.flow import audit, brief, decide, execution, impact, learning, message
from engine.flow import classify as classify_stage
from engine.flow import recommend as recommend_stage
from engine.flow import stabilize as stabilize_stage
from engine.flow import state as flow_state
from engine.flow.outcomes import ActionSummary, ClassifyOutcome, PlannedAction
from engine.flow.pipeline import with_classification, with_impact, with_stabilization
from engine.flow.snapshots import SnapshotSource
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.store import actions as action_rows
from engine.store import jobs, snapshots
from engine.store.events import append_event
from engine.store.incidents import advance_stage
from engine.store.messages import DraftIn, add_draft
from engine.store.models import (
    SEVERITY_RANK,
    Incident,
    IncidentAction,
    IncidentStatus,
    Job,
    Recommendation,
    RecommendationStatus,
    Severity,
)
from engine.store.recommendations import (
    RecommendationIn,
    add_recommendation,
    mark_executed,
)
from engine.telemetry import STAGES

log = logging.getLogger(__name__)

STAGE_ORDER = (
    "snapshot",
    "stabilize",
    "classify",
    "brief",
    "impact",
    "message",
    "recommend",
)
FLOW, EXECUTE, LEARN = "flow", "execute", "learn"
KINDS = (FLOW, EXECUTE, LEARN)


class StageConflict(ConflictError):
    """Another worker moved the checkpoint: this worker's stage is void."""


@dataclass
class FlowDeps:
    sessions: sessionmaker[Session]
    policy: Callable[[], Policy]
    snapshots: SnapshotSource
    executors: Mapping[str, Executor]
    runtime: Runtime
    locks: TargetLocks | None = None
    mode_override: str | None = None
    approval_ttl_s: int = 3600
    reevaluate_after_s: float = 300.0
    wake: threading.Event = field(default_factory=threading.Event)


class Worker:
    def __init__(
        self, deps: FlowDeps, worker_id: str, *, lease_s: float = 120.0
    ) -> None:
        self.deps = deps
        self.worker_id = worker_id
        self.lease_s = lease_s
        self._handlers: Mapping[str, Callable[[Job], None]] = {
            FLOW: self._flow,
            EXECUTE: self._execute,
            LEARN: self._learn,
        }

    @property
    def now(self) -> datetime:
        return self.deps.runtime.clock.now()

    def run(self, stop: threading.Event, idle_s: float = 0.5) -> None:
        """Work until ``stop`` is set; sleep on the wake event when idle."""
        log.info("worker.started", extra={"worker": self.worker_id})
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("worker.loop_failed", extra={"worker": self.worker_id})
                busy = False
            if not busy:
                self.deps.wake.wait(idle_s)
                self.deps.wake.clear()
        log.info("worker.stopped", extra={"worker": self.worker_id})

    def run_once(self) -> bool:
        """Claim and finish one job; False when there was none."""
        with self.deps.sessions.begin() as session:
            job = jobs.claim_job(
                session, self.worker_id, self.lease_s, KINDS, now=self.now
            )
            if job is None:
                return False
            session.expunge(job)
        try:
            self._handlers[job.kind](job)
        except IncidentPolicyError as exc:
            self._settle(job, error=exc.message)
            log.warning("job.failed", extra={"job_id": job.id, "code": exc.code})
            return True
        except Exception as exc:
            self._settle(job, error=f"{type(exc).__name__}: {exc}", retry=True)
            log.exception("job.crashed", extra={"job_id": job.id, "kind": job.kind})
            return True
        self._settle(job)
        return True

    def _settle(
        self, job: Job, *, error: str | None = None, retry: bool = False
    ) -> None:
        with self.deps.sessions.begin() as session:
            if error is None:
                jobs.complete_job(session, job.id, self.worker_id, now=self.now)
            else:
                retry_at = self.now + timedelta(seconds=10) if retry else None
                jobs.fail_job(
                    session,
                    job.id,
                    self.worker_id,
                    error,
                    now=self.now,
                    retry_at=retry_at,
                )

    def _heartbeat(self, job: Job) -> None:
        with self.deps.sessions.begin() as session:
            jobs.heartbeat(session, job.id, self.worker_id, self.lease_s, now=self.now)

    # -- flow ---------------------------------------------------------------

    def _flow(self, job: Job) -> None:
        policy = self.deps.policy()
        if not self._begin_round(job):
            return
        while True:
            with self.deps.sessions() as session:
                incident = session.get_one(Incident, job.incident_id)
                stage = incident.stage
            if stage is None:
                return
            STAGE_HANDLERS[stage](self, policy, job.incident_id or "")
            STAGES.labels(stage).inc()
            self._heartbeat(job)

    def _begin_round(self, job: Job) -> bool:
        """Resume, start a new round on a fold that matters, or do nothing."""
        with self.deps.sessions.begin() as session:
            incident = session.get_one(Incident, job.incident_id, with_for_update=True)
            stale = action_rows.interrupt_stale(
                session, incident.org_id, incident.id, now=self.now
            )
            if stale:
                self._event(
                    session,
                    incident,
                    "action.interrupted",
                    None,
                    f"{stale} action(s) were running when a worker stopped; "
                    "they are not run again: check their targets by hand",
                )
            if incident.status == IncidentStatus.RESOLVED.value:
                return False
            if incident.stage is not None:
                return True
            if not self._new_round_due(session, incident):
                return False
            incident.stage = STAGE_ORDER[0]
            self._event(
                session,
                incident,
                "round.started",
                None,
                "new alerts since the last evaluation",
                {"severity": incident.severity},
            )
            return True

    def _new_round_due(self, session: Session, incident: Incident) -> bool:
        last = flow_state.latest_event(session, incident.id, "round.started")
        last = last or flow_state.latest_event(session, incident.id, "incident.opened")
        started = last.at if last else incident.created_at
        severity = (last.data.get("severity") if last else None) or incident.severity
        rose = (
            SEVERITY_RANK[Severity(incident.severity)]
            > SEVERITY_RANK[Severity(severity)]
        )
        waited = (self.now - started).total_seconds() >= self.deps.reevaluate_after_s
        return rose or waited

    def _advance(self, session: Session, incident: Incident, done: str) -> None:
        index = STAGE_ORDER.index(done)
        following = STAGE_ORDER[index + 1] if index + 1 < len(STAGE_ORDER) else None
        moved = advance_stage(
            session,
            incident.org_id,
            incident.id,
            done=done,
            next_stage=following,
            now=self.now,
        )
        if not moved:
            raise StageConflict(
                f"incident {incident.id} moved past {done} in another worker; "
                "this worker's outcome was discarded",
                code="E720",
            )

    def _event(
        self,
        session: Session,
        incident: Incident,
        kind: str,
        stage: str | None,
        message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        append_event(
            session,
            org_id=incident.org_id,
            incident_id=incident.id,
            at=self.now,
            kind=kind,
            actor=f"worker:{self.worker_id}",
            stage=stage,
            message=message,
            data=audit.jsonable(dict(data or {})),
        )

    def _record(
        self, session: Session, incident: Incident, evaluation: Any, selected: Any
    ) -> None:
        audit.record(
            session,
            evaluation,
            selected,
            ids=self.deps.runtime.ids,
            org_id=incident.org_id,
            incident_id=incident.id,
            at=self.now,
        )

    def _store_snapshot(
        self, session: Session, incident: Incident, taken: Taken, purpose: str
    ) -> str:
        row = snapshots.add_snapshot(
            session,
            taken,
            ids=self.deps.runtime.ids,
            org_id=incident.org_id,
            incident_id=incident.id,
            purpose=purpose,
        )
        return row.id

    # -- stages ---------------------------------------------------------------

    def stage_snapshot(self, policy: Policy, incident_id: str) -> None:
        with self.deps.sessions() as session:
            posted = flow_state.load(
                session, session.get_one(Incident, incident_id)
            ).posted
        taken = self.deps.snapshots.snapshot(posted or None)
        with self.deps.sessions.begin() as session:
            incident = session.get_one(Incident, incident_id)
            self._store_snapshot(session, incident, taken, "initial")
            incident.status = IncidentStatus.STABILIZING.value
            incident.policy_version = policy.version
            self._event(
                session,
                incident,
                "stage.completed",
                "snapshot",
                "snapshot taken",
                {
                    "durations_ms": dict(taken.durations_ms),
                    "provenance": dict(taken.provenance),
                },
            )
            self._advance(session, incident, "snapshot")

    def stage_stabilize(self, policy: Policy, incident_id: str) -> None:
        with self.deps.sessions() as session:
            found = flow_state.load(session, session.get_one(Incident, incident_id))
            facts = found.base(self.now)
            round_id = found.initial.id if found.initial else "none"
            round_start = found.initial.taken_at if found.initial else self.now
            org_id = found.incident.org_id
        plan = stabilize_stage.plan(policy, facts)
        deps = self._executors(policy)
        ran = [
            execution.run_action(
                self.deps.sessions,
                deps,
                org_id,
                incident_id,
                planned,
                facts,
                origin="stabilize",
                automatic=True,
                run_key=f"{incident_id}:{round_id}:{planned.action}:{planned.target}",
                actor=f"policy:{planned.rule_id}",
            )
            for planned in plan.actions
        ]
        changed = any(r.status == "succeeded" for r in ran)
        fresh = (
            self.deps.snapshots.snapshot(found.posted or None, fresh=True)
            if changed
            else None
        )
        if fresh is not None:
            execution.verify(self.deps.sessions, deps, ran, fresh.facts, facts)
        self._decide_stable(policy, incident_id, plan, ran, fresh, facts, round_start)

    def _decide_stable(
        self,
        policy: Policy,
        incident_id: str,
        plan: Any,
        ran: list[execution.Ran],
        fresh: Taken | None,
        facts: dict[str, Any],
        round_start: datetime,
    ) -> None:
        with self.deps.sessions.begin() as session:
            incident = session.get_one(Incident, incident_id)
            if fresh is not None:
                self._store_snapshot(session, incident, fresh, "verify")
            breaker = policy.source.catalog.breaker_ineffective_runs
            ineffective = execution.ineffective_runs(session, incident_id)
            actions = flow_state.round_actions(session, incident_id, round_start)
            summary = flow_state.stabilization(actions, ineffective >= breaker)
            observed = {
                **facts,
                "snapshot": dict(fresh.facts) if fresh else facts["snapshot"],
            }
            stable = decide.decide(
                policy, decide.STABLE, {**observed, "stabilization": summary}
            )
            self._record(
                session,
                incident,
                plan.evaluation,
                {m.rule.id for m in plan.evaluation.matches},
            )
            if stable.evaluation:
                self._record(session, incident, stable.evaluation, {stable.rule_id})
            if stable.value:
                incident.stabilized_at = self.now
            self._event(
                session,
                incident,
                "decision.stable",
                "stabilize",
                "stable: monitor"
                if stable.value
                else "not stable: recommend next steps",
                {
                    "value": stable.value,
                    "rule": stable.rule_id,
                    "stabilization": summary,
                },
            )
            if summary["breaker_open"] and not stable.value:
                self._event(
                    session,
                    incident,
                    "breaker.open",
                    "stabilize",
                    f"{ineffective} automatic actions did not help; automatic "
                    "actions are stopped for this incident and a human is asked",
                )
            self._advance(session, incident, "stabilize")
        execution.mark_effect(self.deps.sessions, ran, stable.value)

    def _executors(self, policy: Policy) -> execution.Executors:
        return execution.Executors(
            policy,
            self.deps.executors,
            self.deps.locks,
            self.deps.runtime,
            self.deps.mode_override,
        )

    def _stabilized_facts(
        self, session: Session, found: flow_state.FlowState
    ) -> tuple[dict[str, Any], bool]:
        stable = flow_state.decision(session, found.incident.id, decide.STABLE)
        facts = with_stabilization(found.base(self.now), [], False)
        facts["stabilization"] = stable.get("stabilization", facts["stabilization"])
        return facts, bool(stable.get("value", False))

    def stage_classify(self, policy: Policy, incident_id: str) -> None:
        with self.deps.sessions.begin() as session:
            incident = session.get_one(Incident, incident_id)
            found = flow_state.load(session, incident)
            facts, _ = self._stabilized_facts(session, found)
            outcome = classify_stage.classify(policy, facts)
            incident.type, incident.confidence = outcome.type, outcome.confidence
            self._record(session, incident, outcome.evaluation, {outcome.rule_id})
            self._event(
                session,
                incident,
                "stage.completed",
                "classify",
                f"classified as {outcome.label} ({outcome.confidence:.0%})",
                {
                    "type": outcome.type,
                    "confidence": outcome.confidence,
                    "rule": outcome.rule_id,
                    "evidence": dict(outcome.evidence),
                    "others": list(outcome.others),
                },
            )
            self._advance(session, incident, "classify")

    def _classified(
        self, session: Session, found: flow_state.FlowState
    ) -> tuple[dict[str, Any], ClassifyOutcome, bool]:
        facts, stable = self._stabilized_facts(session, found)
        event = flow_state.latest_event(session, found.incident.id, "stage.completed")
        data = self._classify_data(session, found.incident.id)
        outcome = ClassifyOutcome(
            type=found.incident.type or "unknown",
            confidence=found.incident.confidence or 0.0,
            rule_id=data.get("rule"),
            evidence=data.get("evidence", {}),
            others=tuple(data.get("others", ())),
            evaluation=None,  # type: ignore[arg-type]
        )
        del event
        decision = decide.Decision(decide.STABLE, stable, "stored")
        return with_classification(facts, outcome, decision), outcome, stable

    def _classify_data(self, session: Session, incident_id: str) -> dict[str, Any]:
        query = (
            select(flow_state.IncidentEvent)
            .where(
                flow_state.IncidentEvent.incident_id == incident_id,
                flow_state.IncidentEvent.kind == "stage.completed",
                flow_state.IncidentEvent.stage == "classify",
            )
            .order_by(flow_state.IncidentEvent.id.desc())
            .limit(1)
        )
        event = session.scalars(query).first()
        return dict(event.data) if event else {}

    def stage_brief(self, policy: Policy, incident_id: str) -> None:
        with self.deps.sessions.begin() as session:
            incident = session.get_one(Incident, incident_id)
            found = flow_state.load(session, incident)
            facts, outcome, stable = self._classified(session, found)
            since = found.initial.taken_at if found.initial else incident.created_at
            summaries = tuple(
                ActionSummary(
                    a.action,
                    a.target,
                    a.status,
                    a.refusal_message or (a.verification or {}).get("message", ""),
                )
                for a in flow_state.round_actions(session, incident_id, since)
            )
            written = brief.write_brief(
                policy,
                facts,
                outcome,
                summaries,
                stable=stable,
                first_signal_at=incident.first_signal_at,
                now=self.now,
            )
            latest = found.latest.facts if found.latest else facts["snapshot"]
            content = {**_plain(written), "current_state": brief.current_state(latest)}
            session.add(flow_state_brief(self, incident, policy.version, content))
            self._record(
                session, incident, written.evaluation, set(written.rules.values())
            )
            self._event(session, incident, "stage.completed", "brief", written.summary)
            self._advance(session, incident, "brief")

    def stage_impact(self, policy: Policy, incident_id: str) -> None:
        with self.deps.sessions.begin() as session:
            incident = session.get_one(Incident, incident_id)
            found = flow_state.load(session, incident)
            facts, outcome, _ = self._classified(session, found)
            history = learning.resolve_minutes(session, incident.org_id, outcome.type)
            assessed = impact.assess(policy, facts, outcome, history)
            likely = decide.decide(
                policy, decide.CUSTOMER_IMPACT, with_impact(facts, assessed)
            )
            session.add(flow_state_impact(self, incident, assessed, likely.value))
            self._record(session, incident, assessed.evaluation, {assessed.rule_id})
            if likely.evaluation:
                self._record(session, incident, likely.evaluation, {likely.rule_id})
            self._event(
                session,
                incident,
                "decision.customer_impact",
                "impact",
                f"impact {assessed.level}; customer message "
                + ("drafted" if likely.value else "not needed"),
                {
                    "value": likely.value,
                    "rule": likely.rule_id,
                    "level": assessed.level,
                },
            )
            self._advance(session, incident, "impact")

    def stage_message(self, policy: Policy, incident_id: str) -> None:
        with self.deps.sessions.begin() as session:
            incident = session.get_one(Incident, incident_id)
            found = flow_state.load(session, incident)
            likely = flow_state.decision(session, incident_id, decide.CUSTOMER_IMPACT)
            if likely.get("value"):
                self._draft(session, policy, incident, found)
            else:
                self._event(
                    session,
                    incident,
                    "stage.completed",
                    "message",
                    "no customer message: customers are not likely affected",
                )
            self._advance(session, incident, "message")

    def _draft(
        self,
        session: Session,
        policy: Policy,
        incident: Incident,
        found: flow_state.FlowState,
    ) -> None:
        facts, outcome, stable = self._classified(session, found)
        stored = flow_state.latest_impact(session, incident.id)
        assessed = learning.stored_impact(stored)
        draft = message.draft(
            policy,
            with_impact(facts, assessed),
            outcome,
            assessed,
            incident.first_signal_at,
            stable=stable,
            org=found.org.name,
        )
        if draft is None:
            self._event(
                session,
                incident,
                "stage.completed",
                "message",
                "no message rule matched; nothing drafted",
            )
            return
        row = add_draft(
            session,
            DraftIn(
                draft.title,
                draft.body,
                draft.tone,
                draft.channels,
                draft.template,
                draft.approvals_required,
            ),
            ids=self.deps.runtime.ids,
            org_id=incident.org_id,
            incident_id=incident.id,
            now=self.now,
        )
        self._record(session, incident, draft.evaluation, {draft.rule_id})
        self._event(
            session,
            incident,
            "message.drafted",
            "message",
            f"customer message drafted ({draft.tone}, {', '.join(draft.channels)}); "
            f"it waits for {draft.approvals_required} approval(s) and is never sent "
            "by this service",
            {"message_id": row.id},
        )

    def stage_recommend(self, policy: Policy, incident_id: str) -> None:
        with self.deps.sessions.begin() as session:
            incident = session.get_one(Incident, incident_id)
            found = flow_state.load(session, incident)
            facts, _, stable = self._classified(session, found)
            assessed = learning.stored_impact(
                flow_state.latest_impact(session, incident_id)
            )
            outcome = recommend_stage.recommend(policy, with_impact(facts, assessed))
            expires = self.now + timedelta(seconds=self.deps.approval_ttl_s)
            done = _already_done(session, incident_id)
            for rec in outcome.recommendations:
                if rec.action and (rec.action, rec.target) in done:
                    continue  # stabilize already did it: nothing to approve
                self._add_recommendation(session, incident, rec, expires)
            self._record(
                session,
                incident,
                outcome.evaluation,
                {m.rule.id for m in outcome.evaluation.matches},
            )
            incident.status = (
                IncidentStatus.MONITORING
                if stable
                else IncidentStatus.AWAITING_APPROVAL
            ).value
            self._event(
                session,
                incident,
                "flow.completed",
                "recommend",
                f"{len(outcome.recommendations)} recommendation(s); incident is "
                f"{incident.status.replace('_', ' ')}",
            )
            self._advance(session, incident, "recommend")
        self.deps.wake.set()

    def _add_recommendation(
        self, session: Session, incident: Incident, rec: Any, expires: datetime
    ) -> None:
        row = add_recommendation(
            session,
            RecommendationIn(
                key=rec.id,
                text=rec.text,
                risk=rec.risk,
                rationale=rec.rationale,
                action=rec.action,
                target=rec.target,
                rule_id=rec.rule_id,
                expires_at=expires,
            ),
            ids=self.deps.runtime.ids,
            org_id=incident.org_id,
            incident_id=incident.id,
            now=self.now,
        )
        auto = rec.auto
        if auto is not None:
            self._record(session, incident, auto.evaluation, {auto.rule_id})
            self._event(
                session,
                incident,
                "decision.auto_execute",
                "recommend",
                f"{rec.id}: "
                + (
                    "runs now (low risk, allowed)"
                    if auto.value
                    else "waits for a human approval"
                ),
                {
                    "value": auto.value,
                    "rule": auto.rule_id,
                    "recommendation_id": row.id,
                },
            )
        if auto is not None and auto.value:
            jobs.enqueue(
                session,
                ids=self.deps.runtime.ids,
                org_id=incident.org_id,
                kind=EXECUTE,
                now=self.now,
                incident_id=incident.id,
                payload={
                    "recommendation_id": row.id,
                    "automatic": True,
                    "actor": f"policy:{auto.rule_id}",
                },
            )

    # -- execute and learn ----------------------------------------------------

    def _execute(self, job: Job) -> None:
        policy = self.deps.policy()
        payload = dict(job.payload)
        automatic = bool(payload.get("automatic"))
        with self.deps.sessions() as session:
            rec = session.get_one(Recommendation, payload["recommendation_id"])
            wanted = (
                RecommendationStatus.PENDING
                if automatic
                else RecommendationStatus.APPROVED
            )
            if rec.status != wanted.value or not rec.action or not rec.target:
                return
            found = flow_state.load(session, session.get_one(Incident, rec.incident_id))
            rec_id, action, target, rule_id = (
                rec.id,
                rec.action,
                rec.target,
                rec.rule_id,
            )
            org_id, incident_id = rec.org_id, rec.incident_id
        recheck = self.deps.snapshots.snapshot(found.posted or None, fresh=True)
        facts = {**found.base(self.now), "snapshot": dict(recheck.facts)}
        planned = PlannedAction(
            action, target, rule_id or "approval", _item(recheck.facts, target)
        )
        with self.deps.sessions.begin() as session:
            self._store_snapshot(session, found.incident, recheck, "recheck")
        ran = execution.run_action(
            self.deps.sessions,
            self._executors(policy),
            org_id,
            incident_id,
            planned,
            facts,
            origin="approval",
            automatic=automatic,
            run_key=f"{incident_id}:rec:{rec_id}",
            actor=str(payload.get("actor", "approval")),
        )
        if ran.status == "succeeded":
            after = self.deps.snapshots.snapshot(found.posted or None, fresh=True)
            execution.verify(
                self.deps.sessions, self._executors(policy), [ran], after.facts, facts
            )
        with self.deps.sessions.begin() as session:
            if ran.status in ("succeeded", "dry_run"):
                mark_executed(session, org_id, rec_id, auto=automatic, now=self.now)

    def _learn(self, job: Job) -> None:
        learning.close_incident(self, job)

    # Exposed to engine.flow.learning, which does the closing work.
    @property
    def executors_for(self) -> Callable[[Policy], execution.Executors]:
        return self._executors


def _already_done(session: Session, incident_id: str) -> set[tuple[str, str]]:
    rows = session.execute(
        select(IncidentAction.action, IncidentAction.target).where(
            IncidentAction.incident_id == incident_id,
            IncidentAction.status == "succeeded",
        )
    )
    return {(action, target) for action, target in rows}


def _item(snapshot: Mapping[str, Any], target: str) -> dict[str, Any] | None:
    for process in (snapshot.get("pm2") or {}).get("processes", []):
        if process.get("name") == target:
            return dict(process)
    return None


def _plain(value: Any) -> dict[str, Any]:
    data = asdict(value)
    data.pop("evaluation", None)
    return audit.jsonable(data)  # type: ignore[no-any-return]


def flow_state_brief(
    worker: Worker, incident: Incident, version: str, content: dict[str, Any]
) -> Any:
    from engine.store.models import Brief

    return Brief(
        id=worker.deps.runtime.ids.new("brf"),
        org_id=incident.org_id,
        incident_id=incident.id,
        created_at=worker.now,
        policy_version=version,
        content=content,
    )


def flow_state_impact(
    worker: Worker, incident: Incident, assessed: Any, likely: bool
) -> Any:
    from engine.store.models import Impact

    content = _plain(assessed)
    summary = (
        f"{assessed.level} impact; {len(assessed.features)} feature(s) affected; "
        f"downtime estimate {assessed.downtime_minutes:g} min ({assessed.downtime_basis})"
    )
    return Impact(
        id=worker.deps.runtime.ids.new("imp"),
        org_id=incident.org_id,
        incident_id=incident.id,
        assessed_at=worker.now,
        likely=likely,
        level=assessed.level,
        summary=summary,
        content=content,
    )


STAGE_HANDLERS: Mapping[str, Callable[[Worker, Policy, str], None]] = {
    "snapshot": Worker.stage_snapshot,
    "stabilize": Worker.stage_stabilize,
    "classify": Worker.stage_classify,
    "brief": Worker.stage_brief,
    "impact": Worker.stage_impact,
    "message": Worker.stage_message,
    "recommend": Worker.stage_recommend,
}
