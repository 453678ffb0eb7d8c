"""Progress survives a killed process: nothing half-written, nothing twice.

These tests kill a real child process (SIGKILL, by its pid) in the middle of
a write transaction, and play a worker whose lease lapsed against the one
that took its job over.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime

from sqlalchemy import func, select

from engine.runtime import FixedClock, SequentialIds, SortableIds, SystemClock
from engine.store.alerts import AlertIn
from engine.store.db import Database, open_database
from engine.store.events import append_event, timeline
from engine.store.incidents import advance_stage, open_or_fold
from engine.store.jobs import claim_job, complete_job
from engine.store.models import Alert, Incident, Job
from tests.engine.store.helpers import open_incident

LEASE_S = 30.0


def intake_then_hang(url: str, org_id: str, flushed: object) -> None:
    """Write an alert and its incident, say so, and wait to be killed."""
    database = open_database(url)
    alert = AlertIn(
        source="watcher",
        kind="process_down",
        fingerprint="web",
        severity="critical",
        received_at=datetime.now(UTC),
    )
    with database.sessions.begin() as session:
        open_or_fold(
            session,
            org_id,
            "pm2:web",
            "critical",
            "web down",
            alert,
            ids=SortableIds(SystemClock()),
        )
        flushed.set()  # type: ignore[attr-defined]
        signal.pause()


def rows(db: Database, model: type[Incident] | type[Alert] | type[Job]) -> int:
    with db.readers() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_intake_killed_before_commit_leaves_nothing_and_no_lock(
    db: Database, db_url: str, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    spawn = multiprocessing.get_context("spawn")
    flushed = spawn.Event()
    child = spawn.Process(target=intake_then_hang, args=(db_url, org_id, flushed))
    child.start()
    try:
        assert flushed.wait(timeout=60), "the child never wrote its intake"
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(timeout=30)

    assert child.exitcode == -signal.SIGKILL
    assert (rows(db, Incident), rows(db, Alert), rows(db, Job)) == (0, 0, 0)
    open_incident(db, org_id, ids, clock, key="pm2:web")  # the lock is gone
    assert rows(db, Incident) == 1


def record_stage(
    db: Database, org_id: str, incident_id: str, worker: str, clock: FixedClock
) -> bool:
    """What a worker does at the end of a stage: outcome and checkpoint
    in one transaction, rolled back when the checkpoint moved on."""
    with db.sessions() as session, session.begin():
        append_event(
            session,
            org_id=org_id,
            incident_id=incident_id,
            at=clock.now(),
            kind="stage.completed",
            stage="snapshot",
            actor=worker,
        )
        moved = advance_stage(
            session,
            org_id,
            incident_id,
            done="snapshot",
            next_stage="stabilize",
            now=clock.now(),
        )
        if not moved:
            session.rollback()
        return moved


def test_worker_whose_lease_lapsed_cannot_record_its_stage_again(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = open_incident(db, org_id, ids, clock)
    with db.sessions.begin() as session:
        slow = claim_job(session, "slow", LEASE_S, ["flow"], now=clock.now())
    clock.advance(LEASE_S + 1)
    with db.sessions.begin() as session:
        fast = claim_job(session, "fast", LEASE_S, ["flow"], now=clock.now())
    assert slow is not None and fast is not None and slow.id == fast.id

    fast_recorded = record_stage(db, org_id, incident_id, "fast", clock)
    slow_recorded = record_stage(db, org_id, incident_id, "slow", clock)

    assert (fast_recorded, slow_recorded) == (True, False)
    with db.readers() as session:
        stages = [
            (e.kind, e.actor)
            for e in timeline(session, org_id, incident_id)
            if e.kind == "stage.completed"
        ]
    assert stages == [("stage.completed", "fast")]
    with db.sessions.begin() as session:
        assert not complete_job(session, fast.id, "slow", now=clock.now())
        assert complete_job(session, fast.id, "fast", now=clock.now())
