from __future__ import annotations

import threading
from collections import Counter

from engine.runtime import FixedClock, SequentialIds
from engine.store.db import Database
from engine.store.jobs import (
    claim_job,
    complete_job,
    enqueue,
    fail_job,
    heartbeat,
)
from engine.store.models import Job

LEASE_S = 30.0
JOBS = 40
WORKERS = 2


def queue(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock, n: int
) -> list[str]:
    with db.sessions.begin() as session:
        return [
            enqueue(session, ids=ids, org_id=org_id, kind="flow", now=clock.now()).id
            for _ in range(n)
        ]


def claim(
    db: Database, worker: str, clock: FixedClock, kinds: tuple[str, ...] = ("flow",)
) -> Job | None:
    with db.sessions.begin() as session:
        return claim_job(session, worker, LEASE_S, kinds, now=clock.now())


def test_two_workers_never_get_the_same_job(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    queue(db, org_id, ids, clock, JOBS)
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(WORKERS)

    def drain(worker: str) -> None:
        barrier.wait()
        while (job := claim(db, worker, clock)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=drain, args=(f"w{n}",)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(claimed) == JOBS
    assert Counter(claimed).most_common(1)[0][1] == 1


def test_claim_sets_the_lease_and_counts_the_attempt(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    queue(db, org_id, ids, clock, 1)

    job = claim(db, "w1", clock)

    assert job is not None
    assert (job.status, job.claimed_by, job.attempts) == ("running", "w1", 1)
    assert (job.claimed_until - clock.now()).total_seconds() == LEASE_S  # type: ignore[operator]


def test_a_job_due_later_waits_and_other_kinds_are_left_alone(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    with db.sessions.begin() as session:
        enqueue(
            session,
            ids=ids,
            org_id=org_id,
            kind="flow",
            now=clock.now(),
            run_after=clock.now().replace(hour=13),
        )
        enqueue(session, ids=ids, org_id=org_id, kind="learn", now=clock.now())

    assert claim(db, "w1", clock) is None
    clock.advance(3600)
    due = claim(db, "w1", clock)
    assert due is not None and due.kind == "flow"


def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    [job_id] = queue(db, org_id, ids, clock, 1)
    assert claim(db, "dead", clock) is not None
    assert claim(db, "other", clock) is None  # lease still held

    clock.advance(LEASE_S + 1)
    retaken = claim(db, "other", clock)

    assert retaken is not None and retaken.id == job_id
    assert (retaken.claimed_by, retaken.attempts) == ("other", 2)
    with db.sessions.begin() as session:
        assert not complete_job(session, job_id, "dead", now=clock.now())
        assert complete_job(session, job_id, "other", now=clock.now())
    clock.advance(LEASE_S * 10)
    assert claim(db, "third", clock) is None


def test_heartbeat_keeps_the_lease(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    [job_id] = queue(db, org_id, ids, clock, 1)
    claim(db, "w1", clock)

    clock.advance(LEASE_S - 1)
    with db.sessions.begin() as session:
        assert heartbeat(session, job_id, "w1", LEASE_S, now=clock.now())
    clock.advance(LEASE_S - 1)

    assert claim(db, "w2", clock) is None


def test_failed_job_with_retry_time_is_queued_again(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    [job_id] = queue(db, org_id, ids, clock, 1)
    claim(db, "w1", clock)
    with db.sessions.begin() as session:
        fail_job(
            session,
            job_id,
            "w1",
            "pm2 timed out",
            now=clock.now(),
            retry_at=clock.now().replace(minute=5),
        )

    assert claim(db, "w2", clock) is None
    clock.advance(300)
    retried = claim(db, "w2", clock)
    assert retried is not None and retried.error == "pm2 timed out"


def test_job_whose_workers_keep_dying_is_failed_not_looped(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    [job_id] = queue(db, org_id, ids, clock, 1)
    for attempt in range(5):
        assert claim(db, f"w{attempt}", clock) is not None
        clock.advance(LEASE_S + 1)

    assert claim(db, "w-last", clock) is None
    with db.readers() as session:
        job = session.get_one(Job, job_id)
    assert job.status == "failed"
    assert "lease lapsed 5 times" in (job.error or "")
