"""The worker: claims durable jobs and does the work they name.

``flow`` jobs take incidents through a round (``engine.flow.rounds``): the
worker claims up to ``batch`` of them at once, so a burst of alerts shares
its transactions. ``execute`` runs an approved (or auto-approved)
recommendation after re-checking its guards on a fresh snapshot; ``learn``
undoes what can be undone and writes the learning review when a human
resolves an incident. Every job is claimed under a lease and committed as
claimed before any work starts; a worker that dies leaves its jobs to be
taken over when the lease lapses, and the work resumes from the last
committed checkpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.actions.base import Executor
from engine.actions.locks import TargetLocks
from engine.errors import IncidentPolicyError
from engine.flow import execution, learning, rounds
from engine.flow import state as flow_state
from engine.flow.outcomes import PlannedAction
from engine.flow.snapshots import SnapshotSource
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.store import jobs, snapshots
from engine.store.bulk import Rows
from engine.store.events import EventIn, append_events
from engine.store.models import (
    Incident,
    IncidentAction,
    IncidentStatus,
    Job,
    Recommendation,
    RecommendationStatus,
)
from engine.store.recommendations import mark_executed

log = logging.getLogger(__name__)

FLOW, EXECUTE, LEARN = "flow", "execute", "learn"
EARLY_ROUNDS = 4  # times a batch takes in new incidents before its briefs
KINDS = (FLOW, EXECUTE, LEARN)


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
    batch: int = 16
    wake: threading.Event = field(default_factory=threading.Event)


class Worker:
    def __init__(
        self, deps: FlowDeps, worker_id: str, *, lease_s: float = 120.0
    ) -> None:
        self.deps = deps
        self.worker_id = worker_id
        self.lease_s = lease_s
        self._claimed: list[Job] = []

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
        """Claim and finish a batch of jobs; False when there was none."""
        batch, claimed, failure = self._claim_and_begin()
        if not claimed:
            return False
        flows = [job for job in claimed if job.kind == FLOW]
        if flows:
            # _take_more appends the jobs it claims to this same list, so
            # they are settled (done or failed) together with the batch.
            self._claimed = flows
            self._guarded(flows, lambda _: self._flow(batch, failure))
        for job in claimed:
            if job.kind == EXECUTE:
                self._guarded([job], lambda batch: self._execute(batch[0]))
            elif job.kind == LEARN:
                self._guarded(
                    [job], lambda batch: learning.close_incident(self, batch[0])
                )
        return True

    def _claim_and_begin(
        self,
    ) -> tuple[rounds.Batch | None, list[Job], Exception | None]:
        """Claim jobs and load their incidents, in one transaction.

        Loading runs in a savepoint: if it fails, the claim still commits and
        the failure is settled on the jobs like any other.
        """
        failure: Exception | None = None
        batch: rounds.Batch | None = None
        with self.deps.sessions.begin() as session:
            claimed = jobs.claim_jobs(
                session,
                self.worker_id,
                self.lease_s,
                KINDS,
                now=self.now,
                limit=self.deps.batch,
            )
            for job in claimed:
                session.expunge(job)
            incident_ids = list(
                dict.fromkeys(j.incident_id for j in claimed if j.kind == FLOW)
            )
            if incident_ids:
                batch = self._new_batch()
                try:
                    with session.begin_nested():
                        rounds.begin(session, batch, [i for i in incident_ids if i])
                except Exception as exc:
                    failure = exc
        return batch, claimed, failure

    def _new_batch(self) -> rounds.Batch:
        policy = self.deps.policy()
        return rounds.Batch(
            policy=policy,
            deps=self.executors_for(policy),
            snapshot_of=self.deps.snapshots.snapshot,
            worker=self.worker_id,
            approval_ttl_s=self.deps.approval_ttl_s,
            reevaluate_after_s=self.deps.reevaluate_after_s,
        )

    def _guarded(self, batch: list[Job], work: Callable[[list[Job]], None]) -> None:
        try:
            work(batch)
        except IncidentPolicyError as exc:
            self._settle(batch, error=exc.message)
            log.warning(
                "job.failed", extra={"jobs": [j.id for j in batch], "code": exc.code}
            )
            return
        except Exception as exc:
            self._settle(batch, error=f"{type(exc).__name__}: {exc}", retry=True)
            log.exception("job.crashed", extra={"jobs": [j.id for j in batch]})
            return
        self._settle(batch)

    def _settle(
        self, batch: list[Job], *, error: str | None = None, retry: bool = False
    ) -> None:
        with self.deps.sessions.begin() as session:
            if error is None:
                jobs.complete_jobs(
                    session, [j.id for j in batch], self.worker_id, now=self.now
                )
                return
            retry_at = self.now + timedelta(seconds=10) if retry else None
            for job in batch:
                jobs.fail_job(
                    session,
                    job.id,
                    self.worker_id,
                    error,
                    now=self.now,
                    retry_at=retry_at,
                )

    def executors_for(self, policy: Policy) -> execution.Executors:
        return execution.Executors(
            policy,
            self.deps.executors,
            self.deps.locks,
            self.deps.runtime,
            self.deps.mode_override,
        )

    # -- flow ------------------------------------------------------------------

    def _flow(self, batch: rounds.Batch | None, failure: Exception | None) -> None:
        if failure is not None:
            raise failure
        assert batch is not None
        self._snapshot_phase(batch)
        self._stabilize_phase(batch)
        # Actions first: incidents that arrived meanwhile get their snapshot
        # and safe actions before this batch's briefs are written.
        for _ in range(EARLY_ROUNDS):
            if not self._take_more(batch):
                break
        with self.deps.sessions.begin() as session:
            rounds.decide_rest(session, batch)
        self.deps.wake.set()

    def _take_more(self, batch: rounds.Batch) -> bool:
        """Claim flow jobs that came in meanwhile into ``batch``; act on them."""
        room = self.deps.batch - len(batch.rounds)
        if room <= 0:
            return False
        with self.deps.sessions.begin() as session:
            more = jobs.claim_jobs(
                session, self.worker_id, self.lease_s, (FLOW,), now=self.now, limit=room
            )
            if not more:
                return False
            for job in more:
                session.expunge(job)
            self._claimed.extend(more)
            known = {item.incident_id for item in batch.rounds}
            fresh = [j.incident_id for j in more if j.incident_id not in known]
            rounds.begin(session, batch, [i for i in dict.fromkeys(fresh) if i])
        self._snapshot_phase(batch)
        self._stabilize_phase(batch)
        return True

    def _snapshot_phase(self, batch: rounds.Batch) -> None:
        if not rounds.at(batch, rounds.SNAPSHOT):
            return
        taken = rounds.take_snapshots(batch)
        with self.deps.sessions.begin() as session:
            rounds.store_snapshots(session, batch, taken)

    def _stabilize_phase(self, batch: rounds.Batch) -> None:
        if not rounds.at(batch, rounds.STABILIZE):
            return
        with self.deps.sessions.begin() as session:
            rounds.resume_pending(session, batch)
            pending = rounds.pending_of(batch)
            history = execution.GuardHistory.load(session, pending, self.now)
            started, real = self._start(
                session, batch, history, pending, defer_real=True
            )
        self._run_started(batch, started)
        for one in real:  # one at a time: a crash interrupts only the one running
            with self.deps.sessions.begin() as session:
                started, _ = self._start(
                    session, batch, history, [one], defer_real=False
                )
            self._run_started(batch, started)
        self._verify_and_decide(batch)

    def _start(
        self,
        session: Session,
        batch: rounds.Batch,
        history: execution.GuardHistory,
        pending: list[execution.Pending],
        *,
        defer_real: bool,
    ) -> tuple[list[execution.Started], list[execution.Pending]]:
        started, refused, deferred = execution.start(
            session,
            batch.rows,
            batch.events,
            batch.deps,
            history,
            pending,
            defer_real=defer_real,
        )
        for ran in refused:
            rounds.owner(batch, ran.incident_id).ran.append(ran)
        batch.flush(session)
        return started, deferred

    def _run_started(
        self, batch: rounds.Batch, started: list[execution.Started]
    ) -> None:
        if not started:
            return
        done = [(s, *execution.run(batch.deps, s)) for s in started]
        with self.deps.sessions.begin() as session:
            for ran in execution.finish(batch.rows, batch.events, batch.deps, done):
                rounds.owner(batch, ran.incident_id).ran.append(ran)
            batch.flush(session)

    def _verify_and_decide(self, batch: rounds.Batch) -> None:
        items = rounds.at(batch, rounds.STABILIZE)
        fresh = None
        verified: dict[str, Any] = {}
        if any(r.status == "succeeded" for item in items for r in item.ran):
            fresh = self.deps.snapshots.snapshot(None, fresh=True)
            for item in items:
                facts = {
                    "snapshot": item.snapshot,
                    "alert": item.alert,
                    "org": item.org,
                }
                verified.update(
                    execution.verifications(batch.deps, item.ran, fresh.facts, facts)
                )
        with self.deps.sessions.begin() as session:
            rounds.decide_stable(session, batch, fresh, verified)

    # -- execute ---------------------------------------------------------------

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
            incident = session.get_one(Incident, rec.incident_id)
            if incident.status == IncidentStatus.RESOLVED.value:
                return  # resolved since the approval: nothing runs
            found = flow_state.load(session, incident)
            rec_id, action, target, rule_id = (
                rec.id,
                rec.action,
                rec.target,
                rec.rule_id,
            )
            org_id, incident_id = rec.org_id, rec.incident_id
        recheck = self.deps.snapshots.snapshot(found.posted or None, fresh=True)
        with self.deps.sessions.begin() as session:
            snapshots.add_snapshot(
                session,
                recheck,
                ids=self.deps.runtime.ids,
                org_id=org_id,
                incident_id=incident_id,
                purpose="recheck",
            )
        facts = {**found.base(self.now), "snapshot": dict(recheck.facts)}
        planned = PlannedAction(
            action, target, rule_id or "approval", _item(recheck.facts, target)
        )
        deps = self.executors_for(policy)
        ran = self._run_one(
            deps,
            org_id,
            incident_id,
            planned,
            facts,
            rec_id,
            automatic,
            str(payload.get("actor", "approval")),
        )
        verified = {}
        if ran.status == "succeeded":
            after = self.deps.snapshots.snapshot(found.posted or None, fresh=True)
            verified = execution.verifications(deps, [ran], after.facts, facts)
        rows: Rows = Rows()
        events: list[EventIn] = []
        execution.record_verifications(rows, events, [ran], verified, self.now)
        with self.deps.sessions.begin() as session:
            rows.write(session)
            append_events(session, events)
            if ran.status in ("succeeded", "dry_run"):
                mark_executed(session, org_id, rec_id, auto=automatic, now=self.now)

    def _run_one(
        self,
        deps: execution.Executors,
        org_id: str,
        incident_id: str,
        planned: PlannedAction,
        facts: dict[str, Any],
        rec_id: str,
        automatic: bool,
        actor: str,
    ) -> execution.Ran:
        rows: Rows = Rows()
        events: list[Any] = []
        run_key = f"{incident_id}:rec:{rec_id}"
        with self.deps.sessions.begin() as session:
            existing = session.scalars(
                select(IncidentAction).where(IncidentAction.run_key == run_key)
            ).first()
            if existing is not None:
                return execution.Ran(
                    existing.id,
                    org_id,
                    incident_id,
                    planned,
                    existing.status,
                    existing.refusal_message or "",
                )
            row_id = execution.plan_row(
                rows,
                deps,
                org_id,
                incident_id,
                planned,
                run_key=run_key,
                origin="approval",
            )
            rows.write(session)
            pending = execution.Pending(
                row_id,
                org_id,
                planned,
                facts,
                incident_id,
                automatic,
                actor,
                origin="approval",
            )
            history = execution.GuardHistory.load(session, [pending], self.now)
            started, refused, _ = execution.start(
                session, rows, events, deps, history, [pending], defer_real=False
            )
            rows.write(session)
            append_events(session, events)
        if refused:
            return refused[0]
        done = [(started[0], *execution.run(deps, started[0]))]
        events = []
        with self.deps.sessions.begin() as session:
            ran = execution.finish(rows, events, deps, done)[0]
            rows.write(session)
            append_events(session, events)
        return ran


def _item(snapshot: Mapping[str, Any], target: str) -> dict[str, Any] | None:
    for process in (snapshot.get("pm2") or {}).get("processes", []):
        if process.get("name") == target:
            return dict(process)
    return None
