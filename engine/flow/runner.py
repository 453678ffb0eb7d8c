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
from engine.store.models import Incident, Job, Recommendation, RecommendationStatus
from engine.store.recommendations import mark_executed

log = logging.getLogger(__name__)

FLOW, EXECUTE, LEARN = "flow", "execute", "learn"
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
    def __init__(self, deps: FlowDeps, worker_id: str, *, lease_s: float = 120.0) -> None:
        self.deps = deps
        self.worker_id = worker_id
        self.lease_s = lease_s

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
        claimed = self._claim()
        if not claimed:
            return False
        flows = [job for job in claimed if job.kind == FLOW]
        if flows:
            self._guarded(flows, self._flow)
        for job in claimed:
            if job.kind == EXECUTE:
                self._guarded([job], lambda batch: self._execute(batch[0]))
            elif job.kind == LEARN:
                self._guarded([job], lambda batch: learning.close_incident(self, batch[0]))
        return True

    def _claim(self) -> list[Job]:
        claimed: list[Job] = []
        with self.deps.sessions.begin() as session:
            while len(claimed) < self.deps.batch:
                job = jobs.claim_job(session, self.worker_id, self.lease_s, KINDS, now=self.now)
                if job is None:
                    break
                session.expunge(job)
                claimed.append(job)
        return claimed

    def _guarded(self, batch: list[Job], work: Callable[[list[Job]], None]) -> None:
        try:
            work(batch)
        except IncidentPolicyError as exc:
            self._settle(batch, error=exc.message)
            log.warning("job.failed", extra={"jobs": [j.id for j in batch], "code": exc.code})
            return
        except Exception as exc:
            self._settle(batch, error=f"{type(exc).__name__}: {exc}", retry=True)
            log.exception("job.crashed", extra={"jobs": [j.id for j in batch]})
            return
        self._settle(batch)

    def _settle(self, batch: list[Job], *, error: str | None = None, retry: bool = False) -> None:
        with self.deps.sessions.begin() as session:
            for job in batch:
                if error is None:
                    jobs.complete_job(session, job.id, self.worker_id, now=self.now)
                    continue
                retry_at = self.now + timedelta(seconds=10) if retry else None
                jobs.fail_job(session, job.id, self.worker_id, error, now=self.now,
                              retry_at=retry_at)

    def executors_for(self, policy: Policy) -> execution.Executors:
        return execution.Executors(
            policy, self.deps.executors, self.deps.locks, self.deps.runtime,
            self.deps.mode_override,
        )

    # -- flow ------------------------------------------------------------------

    def _flow(self, claimed: list[Job]) -> None:
        policy = self.deps.policy()
        batch = rounds.Batch(
            policy=policy,
            deps=self.executors_for(policy),
            snapshot_of=self.deps.snapshots.snapshot,
            worker=self.worker_id,
            approval_ttl_s=self.deps.approval_ttl_s,
            reevaluate_after_s=self.deps.reevaluate_after_s,
        )
        incident_ids = list(dict.fromkeys(j.incident_id for j in claimed if j.incident_id))
        with self.deps.sessions.begin() as session:
            rounds.begin(session, batch, incident_ids)
        self._snapshot_phase(batch)
        self._stabilize_phase(batch)
        with self.deps.sessions.begin() as session:
            rounds.decide_rest(session, batch)
        self.deps.wake.set()

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
            started, real = rounds.start_actions(session, batch, pending, defer_real=True)
        self._run_started(batch, started)
        for one in real:  # one at a time: a crash interrupts only the one running
            with self.deps.sessions.begin() as session:
                started, _ = rounds.start_actions(session, batch, [one], defer_real=False)
            self._run_started(batch, started)
        ran = [r for item in rounds.at(batch, rounds.STABILIZE) for r in item.ran]
        fresh = None
        verified: dict[str, Any] = {}
        if any(r.status == "succeeded" for r in ran):
            fresh = self.deps.snapshots.snapshot(None, fresh=True)
            for item in rounds.at(batch, rounds.STABILIZE):
                facts = {"snapshot": item.snapshot, "alert": item.alert, "org": item.org}
                verified.update(execution.verifications(batch.deps, item.ran, fresh.facts, facts))
        with self.deps.sessions.begin() as session:
            rounds.decide_stable(session, batch, fresh, verified)

    def _run_started(self, batch: rounds.Batch, started: list[execution.Started]) -> None:
        if not started:
            return
        done = [(s, *execution.run(batch.deps, s)) for s in started]
        with self.deps.sessions.begin() as session:
            rounds.finish_actions(session, batch, done)

    # -- execute ---------------------------------------------------------------

    def _execute(self, job: Job) -> None:
        policy = self.deps.policy()
        payload = dict(job.payload)
        automatic = bool(payload.get("automatic"))
        with self.deps.sessions() as session:
            rec = session.get_one(Recommendation, payload["recommendation_id"])
            wanted = RecommendationStatus.PENDING if automatic else RecommendationStatus.APPROVED
            if rec.status != wanted.value or not rec.action or not rec.target:
                return
            found = flow_state.load(session, session.get_one(Incident, rec.incident_id))
            rec_id, action, target, rule_id = rec.id, rec.action, rec.target, rec.rule_id
            org_id, incident_id = rec.org_id, rec.incident_id
        recheck = self.deps.snapshots.snapshot(found.posted or None, fresh=True)
        with self.deps.sessions.begin() as session:
            snapshots.add_snapshot(session, recheck, ids=self.deps.runtime.ids, org_id=org_id,
                                   incident_id=incident_id, purpose="recheck")
        facts = {**found.base(self.now), "snapshot": dict(recheck.facts)}
        planned = PlannedAction(action, target, rule_id or "approval",
                                _item(recheck.facts, target))
        deps = self.executors_for(policy)
        ran = execution.run_one(
            self.deps.sessions, deps, org_id, (planned, facts), incident_id=incident_id,
            run_key=f"{incident_id}:rec:{rec_id}", origin="approval", automatic=automatic,
            actor=str(payload.get("actor", "approval")),
        )
        verified = {}
        if ran.status == "succeeded":
            after = self.deps.snapshots.snapshot(found.posted or None, fresh=True)
            verified = execution.verifications(deps, [ran], after.facts, facts)
        with self.deps.sessions.begin() as session:
            execution.record_verifications(session, deps, verified)
            if ran.status in ("succeeded", "dry_run"):
                mark_executed(session, org_id, rec_id, auto=automatic, now=self.now)


def _item(snapshot: Mapping[str, Any], target: str) -> dict[str, Any] | None:
    for process in (snapshot.get("pm2") or {}).get("processes", []):
        if process.get("name") == target:
            return dict(process)
    return None
