"""The durable work queue the flow's workers drain.

Intake and the API enqueue a ``Job`` in the same transaction as the change
that calls for it, so accepted work cannot be lost. A worker claims one job
under a lease (``claimed_until``) and commits the claim before working. On
PostgreSQL the claim selects with ``FOR UPDATE SKIP LOCKED``, so many workers
on many hosts never wait for or take the same row; on SQLite the write
transaction already serialises claimers and the claim is a conditional
``UPDATE``. A worker that dies stops renewing its lease; once it expires,
another worker claims the job again, and after ``max_attempts`` lost leases
the job is failed so one poisonous job cannot loop for ever. Completing or
failing a job succeeds only for the worker that still holds it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from engine.runtime import IdGenerator
from engine.store.models import Job, JobStatus
from engine.store.types import as_utc

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5
_CANDIDATES = 8  # rows looked at per claim when others are racing for them


def enqueue(
    session: Session,
    *,
    ids: IdGenerator,
    org_id: str,
    kind: str,
    now: datetime,
    incident_id: str | None = None,
    payload: Mapping[str, Any] | None = None,
    run_after: datetime | None = None,
) -> Job:
    """Queue a job (flushed, committed with the caller's transaction)."""
    job = Job(
        id=ids.new("job"),
        org_id=org_id,
        incident_id=incident_id,
        kind=kind,
        payload=dict(payload or {}),
        status=JobStatus.QUEUED.value,
        run_after=as_utc(run_after or now),
        attempts=0,
        created_at=as_utc(now),
    )
    session.add(job)
    session.flush()
    return job


def claim_job(
    session: Session,
    worker_id: str,
    lease_s: float,
    kinds: Sequence[str],
    *,
    now: datetime,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Job | None:
    """Take the next due job of ``kinds`` for ``worker_id``, or None.

    The caller commits right after, before doing the work, so the claim
    holds even if the work crashes the process.
    """
    now = as_utc(now)
    _fail_abandoned(session, kinds, now, max_attempts)
    query = (
        select(Job.id)
        .where(Job.kind.in_(kinds), _claimable(now))
        .order_by(Job.run_after, Job.id)
        .limit(_CANDIDATES)
        .with_for_update(skip_locked=True)
    )
    until = now + timedelta(seconds=lease_s)
    for job_id in session.scalars(query).all():
        if _take(session, job_id, worker_id, until, now):
            job = session.get_one(Job, job_id, populate_existing=True)
            log.info(
                "job.claimed",
                extra={"job_id": job_id, "worker": worker_id, "kind": job.kind},
            )
            return job
    return None


def _claimable(now: datetime) -> ColumnElement[bool]:
    due = and_(Job.status == JobStatus.QUEUED.value, Job.run_after <= now)
    lapsed = and_(Job.status == JobStatus.RUNNING.value, Job.claimed_until < now)
    return or_(due, lapsed)


def _take(
    session: Session, job_id: str, worker_id: str, until: datetime, now: datetime
) -> bool:
    # The condition is checked again in the UPDATE: the row may have been
    # claimed since it was selected.
    taken = session.execute(
        update(Job)
        .where(Job.id == job_id, _claimable(now))
        .values(
            status=JobStatus.RUNNING.value,
            claimed_by=worker_id,
            claimed_until=until,
            attempts=Job.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def _fail_abandoned(
    session: Session, kinds: Sequence[str], now: datetime, max_attempts: int
) -> None:
    abandoned = session.execute(
        update(Job)
        .where(
            Job.kind.in_(kinds),
            Job.status == JobStatus.RUNNING.value,
            Job.claimed_until < now,
            Job.attempts >= max_attempts,
        )
        .values(
            status=JobStatus.FAILED.value,
            finished_at=now,
            error=f"abandoned: the lease lapsed {max_attempts} times without "
            "the job finishing; look for a crash in the worker logs",
        )
        .execution_options(synchronize_session=False)
    )
    count = abandoned.rowcount  # type: ignore[attr-defined]
    if count:
        log.warning("job.abandoned", extra={"count": count})


def heartbeat(
    session: Session, job_id: str, worker_id: str, lease_s: float, *, now: datetime
) -> bool:
    """Extend the lease; False when the job is no longer this worker's."""
    until = as_utc(now) + timedelta(seconds=lease_s)
    return _update_held(session, job_id, worker_id, claimed_until=until)


def complete_job(
    session: Session, job_id: str, worker_id: str, *, now: datetime
) -> bool:
    """Mark the job done; False when another worker has taken it over."""
    return _update_held(
        session,
        job_id,
        worker_id,
        status=JobStatus.DONE.value,
        finished_at=as_utc(now),
        claimed_until=None,
    )


def fail_job(
    session: Session,
    job_id: str,
    worker_id: str,
    error: str,
    *,
    now: datetime,
    retry_at: datetime | None = None,
) -> bool:
    """Fail the job, or queue it again for ``retry_at`` when given."""
    if retry_at is not None:
        return _update_held(
            session,
            job_id,
            worker_id,
            status=JobStatus.QUEUED.value,
            run_after=as_utc(retry_at),
            claimed_by=None,
            claimed_until=None,
            error=error,
        )
    return _update_held(
        session,
        job_id,
        worker_id,
        status=JobStatus.FAILED.value,
        finished_at=as_utc(now),
        claimed_until=None,
        error=error,
    )


def _update_held(session: Session, job_id: str, worker_id: str, **values: Any) -> bool:
    changed = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.claimed_by == worker_id,
            Job.status == JobStatus.RUNNING.value,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(changed.rowcount)  # type: ignore[attr-defined]


def pending_job(session: Session, incident_id: str, kind: str) -> Job | None:
    """The incident's queued or running job of ``kind``, if any."""
    query = select(Job).where(
        Job.incident_id == incident_id,
        Job.kind == kind,
        Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]),
    )
    return session.scalars(query.limit(1)).first()


def claim_jobs(
    session: Session,
    worker_id: str,
    lease_s: float,
    kinds: Sequence[str],
    *,
    now: datetime,
    limit: int,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> list[Job]:
    """Take up to ``limit`` due jobs at once (one batch for one worker).

    The same guarantees as ``claim_job``: rows other workers hold are
    skipped, the UPDATE re-checks that each row is still claimable, and the
    caller commits before working.
    """
    now = as_utc(now)
    _fail_abandoned(session, kinds, now, max_attempts)
    candidates = list(
        session.scalars(
            select(Job.id)
            .where(Job.kind.in_(kinds), _claimable(now))
            .order_by(Job.run_after, Job.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not candidates:
        return []
    session.execute(
        update(Job)
        .where(Job.id.in_(candidates), _claimable(now))
        .values(
            status=JobStatus.RUNNING.value,
            claimed_by=worker_id,
            claimed_until=now + timedelta(seconds=lease_s),
            attempts=Job.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    claimed = session.scalars(
        select(Job)
        .where(
            Job.id.in_(candidates),
            Job.claimed_by == worker_id,
            Job.status == JobStatus.RUNNING.value,
        )
        .order_by(Job.run_after, Job.id)
        .execution_options(populate_existing=True)
    ).all()
    if claimed:
        log.info("job.claimed", extra={"worker": worker_id, "jobs": len(claimed)})
    return list(claimed)


def complete_jobs(
    session: Session, job_ids: Sequence[str], worker_id: str, *, now: datetime
) -> int:
    """Mark the worker's jobs done; return how many were still its own."""
    done = session.execute(
        update(Job)
        .where(
            Job.id.in_(list(job_ids)),
            Job.claimed_by == worker_id,
            Job.status == JobStatus.RUNNING.value,
        )
        .values(
            status=JobStatus.DONE.value, finished_at=as_utc(now), claimed_until=None
        )
        .execution_options(synchronize_session=False)
    )
    return int(done.rowcount)  # type: ignore[attr-defined]
