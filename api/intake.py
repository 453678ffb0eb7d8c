"""Intake commits: many concurrent alert posts share one durable transaction.

Every alert route hands its parsed alerts to ``IntakeBatcher.submit`` and
waits for the answer. One thread drains whatever has queued up while the
previous commit was running and accepts each submission through
``engine.flow.accept.accept`` inside a savepoint of one transaction, then
commits once. A request is answered only after that commit, so an answered
alert is durable; under load the commit's cost (an fsync on SQLite, a round
trip and a WAL flush on PostgreSQL) is shared by every request in the batch.
A submission whose alerts are refused (an ``InputError``, a store conflict)
rolls back its own savepoint and fails alone: a request carrying several
alerts is all or nothing. When the commit itself fails, each submission is
tried again in a transaction of its own, so one bad row cannot sink the
others. After each commit the flow workers are woken.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import IncidentPolicyError, StoreError
from engine.flow.accept import Accepted, Entry, accept_many
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.sources.alert import IncomingAlert

log = logging.getLogger(__name__)

MAX_BATCH = 512
STOPPED = "E730"


@dataclass
class Submission:
    org_id: str
    alerts: Sequence[IncomingAlert]
    idempotency_key: str | None = None
    future: Future[list[Accepted]] = field(default_factory=Future)

    def key_of(self, index: int) -> str | None:
        """One idempotency key per alert: the header's, numbered.

        Always numbered, so a single alert's key can never be mistaken for
        one alert of a webhook sent under a shorter key.
        """
        if self.idempotency_key is None:
            return None
        return f"{self.idempotency_key}#{index}"


class IntakeBatcher:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        policy: Callable[[], Policy],
        runtime: Runtime,
        *,
        on_commit: Callable[[], None] = lambda: None,
        max_batch: int = MAX_BATCH,
        before_commit: Callable[[], None] = lambda: None,
    ) -> None:
        self._before_commit = before_commit
        self._sessions = sessions
        self._policy = policy
        self._runtime = runtime
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Submission | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="intake-batcher", daemon=True
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout_s)

    def submit(
        self,
        org_id: str,
        alerts: Sequence[IncomingAlert],
        idempotency_key: str | None = None,
    ) -> Future[list[Accepted]]:
        submission = Submission(org_id, alerts, idempotency_key)
        if self._thread is None:
            submission.future.set_exception(
                StoreError(
                    "intake is not running (the service is starting or stopping): "
                    "post the alert again in a moment",
                    code=STOPPED,
                )
            )
            return submission.future
        self._queue.put(submission)
        return submission.future

    def _run(self) -> None:
        log.info("intake.started", extra={"max_batch": self._max_batch})
        running = True
        while running:
            first = self._queue.get()
            batch, running = self._drain(first)
            if batch:
                self.commit_batch(batch)
        log.info("intake.stopped")

    def _drain(self, first: Submission | None) -> tuple[list[Submission], bool]:
        if first is None:
            return [], False
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, False
            batch.append(item)
        return batch, True

    def commit_batch(self, batch: list[Submission]) -> None:
        """Accept ``batch`` in one transaction and settle every future."""
        try:
            done = self._commit(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            log.warning(
                "intake.batch_failed",
                extra={"size": len(batch), "error": type(exc).__name__},
            )
            for submission in batch:
                self.commit_batch([submission])
            return
        for submission, outcome in done:
            if isinstance(outcome, BaseException):
                submission.future.set_exception(outcome)
            else:
                submission.future.set_result(outcome)
        self._on_commit()

    def _commit(
        self, batch: list[Submission]
    ) -> list[tuple[Submission, list[Accepted] | BaseException]]:
        """The whole batch in one bulk intake; a refused one alone, if any."""
        policy = self._policy()
        now = self._runtime.clock.now()
        entries = [
            Entry(submission.org_id, alert, submission.key_of(index))
            for submission in batch
            for index, alert in enumerate(submission.alerts)
        ]
        self._before_commit()  # e.g. the SQLite file is still the one opened
        try:
            with self._sessions.begin() as session:
                ids = self._runtime.ids
                accepted = iter(accept_many(session, policy, entries, ids=ids, now=now))
        except IncidentPolicyError:
            return self._commit_one_by_one(batch, policy, now)
        return [
            (submission, [next(accepted) for _ in submission.alerts])
            for submission in batch
        ]

    def _commit_one_by_one(
        self, batch: list[Submission], policy: Policy, now: Any
    ) -> list[tuple[Submission, list[Accepted] | BaseException]]:
        done: list[tuple[Submission, list[Accepted] | BaseException]] = []
        with self._sessions.begin() as session:
            for submission in batch:
                entries = [
                    Entry(submission.org_id, alert, submission.key_of(index))
                    for index, alert in enumerate(submission.alerts)
                ]
                try:
                    with session.begin_nested():
                        accepted = accept_many(
                            session, policy, entries, ids=self._runtime.ids, now=now
                        )
                except IncidentPolicyError as exc:
                    done.append((submission, exc))
                    continue
                done.append((submission, accepted))
        return done

    def _fail(self, submission: Submission, exc: Exception) -> None:
        if isinstance(exc, IncidentPolicyError):
            submission.future.set_exception(exc)
            return
        log.error(
            "intake.commit_failed",
            extra={"org_id": submission.org_id, "error": _describe(exc)},
        )
        submission.future.set_exception(
            StoreError(
                "the alert could not be stored (the database refused the "
                "commit): nothing was kept; post it again",
                code="E731",
            )
        )


def _describe(exc: Exception) -> str:
    if isinstance(exc, SQLAlchemyError):
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return f"{type(exc).__name__}: {exc}"
