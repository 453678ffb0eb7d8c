from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.errors import InputError, NotFoundError, StoreError
from engine.runtime import (
    FixedClock,
    IdGenerator,
    SequentialIds,
    SortableIds,
    SystemClock,
)
from engine.store.alerts import AlertIn
from engine.store.db import Database, open_database, upgrade
from engine.store.events import append_event
from engine.store.incidents import (
    IncidentFilter,
    Opened,
    PageRequest,
    advance_stage,
    list_incidents,
    load_incident,
    open_or_fold,
    resolve_incident,
)
from engine.store.models import Alert, Incident, Job
from engine.store.orgs import create_org
from tests.support.databases import sqlite_url

THREADS = 16
PROCESSES = 4
ALERTS_PER_PROCESS = 5


def alert(at: datetime, severity: str = "warning", key: str | None = None) -> AlertIn:
    return AlertIn(
        source="alertmanager",
        kind="threshold_exceeded",
        fingerprint="fp-memory",
        severity=severity,
        received_at=at,
        payload={"alertname": "HostMemoryHigh"},
        facts={"alert": {"name": "HostMemoryHigh"}},
        idempotency_key=key,
    )


def intake(
    db: Database,
    org_id: str,
    ids: IdGenerator,
    at: datetime,
    *,
    severity: str = "warning",
    key: str | None = None,
    dedup_key: str = "memory:web-1",
    title: str = "Memory high on web-1",
) -> Opened:
    with db.sessions.begin() as session:
        return open_or_fold(
            session,
            org_id,
            dedup_key,
            severity,
            title,
            alert(at, severity, key),
            ids=ids,
        )


def count(db: Database, model: type[Incident] | type[Alert] | type[Job]) -> int:
    with db.readers() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_first_alert_opens_an_incident_with_event_and_flow_job(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    opened = intake(db, org_id, ids, clock.now())

    assert opened.created and not opened.replayed
    with db.readers() as session:
        view = load_incident(session, org_id, opened.incident.id)
        job = session.scalars(select(Job)).one()
    assert view.incident.alert_count == 1
    assert view.incident.stage == "snapshot"
    assert [e.kind for e in view.events] == ["incident.opened"]
    assert [a.id for a in view.alerts] == [opened.alert.id]
    assert (job.kind, job.incident_id, job.status) == (
        "flow",
        opened.incident.id,
        "queued",
    )


def test_same_key_folds_and_raises_severity_only_upward(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    first = intake(db, org_id, ids, clock.now(), severity="warning")
    raised = intake(db, org_id, ids, clock.advance(60), severity="critical")
    lower = intake(db, org_id, ids, clock.advance(60), severity="info")

    assert not raised.created and not lower.created
    assert raised.incident.id == lower.incident.id == first.incident.id
    with db.readers() as session:
        view = load_incident(session, org_id, first.incident.id)
    assert view.incident.alert_count == 3
    assert view.incident.severity == "critical"
    assert view.incident.last_alert_at == clock.now()
    assert [e.kind for e in view.events] == [
        "incident.opened",
        "alert.folded",
        "alert.folded",
    ]
    assert count(db, Job) == 1  # folds while the flow job waits add none


def test_resolved_incident_is_not_reopened_by_its_key(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    first = intake(db, org_id, ids, clock.now())
    with db.sessions.begin() as session:
        resolve_incident(
            session,
            org_id,
            first.incident.id,
            by="ana",
            root_cause="leak",
            now=clock.now(),
        )

    again = intake(db, org_id, ids, clock.advance(300))

    assert again.created
    assert again.incident.id != first.incident.id


def test_repeated_idempotency_key_returns_the_first_result_and_stores_nothing(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    first = intake(db, org_id, ids, clock.now(), key="am-123")
    retry = intake(db, org_id, ids, clock.advance(5), key="am-123", severity="critical")

    assert retry.replayed and not retry.created
    assert (retry.incident.id, retry.alert.id) == (first.incident.id, first.alert.id)
    assert retry.incident.severity == "warning"
    assert (count(db, Incident), count(db, Alert), count(db, Job)) == (1, 1, 1)


def test_unknown_severity_is_refused_before_anything_is_stored(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    with pytest.raises(StoreError) as caught:
        intake(db, org_id, ids, clock.now(), severity="high")

    assert caught.value.code == "E709"
    assert count(db, Alert) == 0


def race(threads: int, work: object) -> list[BaseException]:
    """Run ``work`` on ``threads`` threads released at once; return errors."""
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()  # type: ignore[operator]
        except BaseException as exc:  # reported by the test, not swallowed
            errors.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return errors


def test_concurrent_identical_alerts_open_exactly_one_incident(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    errors = race(THREADS, lambda: intake(db, org_id, ids, clock.now()))

    assert errors == []
    with db.readers() as session:
        incidents = session.scalars(select(Incident)).all()
    assert len(incidents) == 1
    assert incidents[0].alert_count == THREADS
    assert count(db, Alert) == THREADS


def test_concurrent_retries_of_one_idempotency_key_store_one_alert(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    errors = race(THREADS, lambda: intake(db, org_id, ids, clock.now(), key="k-1"))

    assert errors == []
    assert (count(db, Incident), count(db, Alert)) == (1, 1)


def intake_from_process(url: str, org_id: str, barrier: object) -> None:
    """One process of the multi-process race; module level so spawn finds it."""
    database = open_database(url)
    ids = SortableIds(SystemClock())
    barrier.wait()  # type: ignore[attr-defined]
    for _ in range(ALERTS_PER_PROCESS):
        intake(database, org_id, ids, datetime.now(UTC))
    database.dispose()


def test_processes_racing_on_one_sqlite_file_open_exactly_one_incident(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path, "shared")
    upgrade(url)
    database = open_database(url)
    with database.sessions.begin() as session:
        org_id = create_org(
            session, ids=SequentialIds(), name="acme", now=datetime.now(UTC)
        ).id
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(PROCESSES)
    procs = [
        spawn.Process(target=intake_from_process, args=(url, org_id, barrier))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)

    assert [proc.exitcode for proc in procs] == [0] * PROCESSES
    with database.readers() as session:
        incidents = session.scalars(select(Incident)).all()
    assert len(incidents) == 1
    assert incidents[0].alert_count == PROCESSES * ALERTS_PER_PROCESS
    assert count(database, Alert) == PROCESSES * ALERTS_PER_PROCESS
    database.dispose()


def test_load_incident_returns_the_timeline_in_order(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    opened = intake(db, org_id, ids, clock.now())
    with db.sessions.begin() as session:
        for stage in ("snapshot", "stabilize", "classify"):
            append_event(
                session,
                org_id=org_id,
                incident_id=opened.incident.id,
                at=clock.now(),  # same instant: the id keeps the order
                kind="stage.completed",
                stage=stage,
            )

    with db.readers() as session:
        view = load_incident(session, org_id, opened.incident.id)

    assert [(e.kind, e.stage) for e in view.events] == [
        ("incident.opened", None),
        ("stage.completed", "snapshot"),
        ("stage.completed", "stabilize"),
        ("stage.completed", "classify"),
    ]


def test_another_organizations_incident_is_not_found(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    opened = intake(db, org_id, ids, clock.now())
    with db.sessions.begin() as session:
        other = create_org(session, ids=ids, name="globex", now=clock.now()).id

    with db.readers() as session, pytest.raises(NotFoundError) as caught:
        load_incident(session, other, opened.incident.id)
    assert "does not exist in this organization" in caught.value.message
    with db.readers() as session:
        assert list_incidents(session, other).items == ()


def test_same_dedup_key_in_two_organizations_makes_two_incidents(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    with db.sessions.begin() as session:
        other = create_org(session, ids=ids, name="globex", now=clock.now()).id

    mine = intake(db, org_id, ids, clock.now())
    theirs = intake(db, other, ids, clock.now())

    assert mine.created and theirs.created
    assert mine.incident.id != theirs.incident.id


def fill(db: Database, org_id: str, ids: SequentialIds, clock: FixedClock) -> None:
    specs = [
        ("critical", "Disk full on db-1"),
        ("warning", "Memory high on web-1"),
        ("info", "Deploy finished on web-2"),
        ("warning", "Memory high on web-3"),
        ("critical", "nginx down on lb-1"),
    ]
    for number, (severity, title) in enumerate(specs):
        intake(
            db,
            org_id,
            ids,
            clock.advance(60),
            severity=severity,
            dedup_key=f"key-{number}",
            title=title,
        )


def test_list_pages_through_every_incident_newest_first(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    fill(db, org_id, ids, clock)
    seen: list[str] = []
    cursor: str | None = None

    with db.readers() as session:
        while True:
            page = list_incidents(session, org_id, page=PageRequest(2, cursor))
            seen.extend(incident.title for incident in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break

    assert seen == [
        "nginx down on lb-1",
        "Memory high on web-3",
        "Deploy finished on web-2",
        "Memory high on web-1",
        "Disk full on db-1",
    ]


@pytest.mark.parametrize(
    ("filters", "titles"),
    [
        (
            IncidentFilter(severities=("critical",)),
            ["nginx down on lb-1", "Disk full on db-1"],
        ),
        (
            IncidentFilter(text="MEMORY"),
            ["Memory high on web-3", "Memory high on web-1"],
        ),
        (IncidentFilter(text="%"), []),
        (IncidentFilter(statuses=("resolved",)), []),
        (IncidentFilter(types=("memory_exhaustion",)), []),
    ],
)
def test_list_filters_narrow_the_result(
    db: Database,
    org_id: str,
    ids: SequentialIds,
    clock: FixedClock,
    filters: IncidentFilter,
    titles: list[str],
) -> None:
    fill(db, org_id, ids, clock)

    with db.readers() as session:
        page = list_incidents(session, org_id, filters)

    assert [incident.title for incident in page.items] == titles


def test_list_time_range_is_half_open(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    start = clock.now()
    fill(db, org_id, ids, clock)  # created at start + 1..5 minutes
    window = IncidentFilter(
        since=start + timedelta(minutes=2), until=start + timedelta(minutes=4)
    )

    with db.readers() as session:
        page = list_incidents(session, org_id, window)

    assert [i.title for i in page.items] == [
        "Deploy finished on web-2",
        "Memory high on web-1",
    ]


def test_list_refuses_a_cursor_it_did_not_make(db: Database, org_id: str) -> None:
    with db.readers() as session, pytest.raises(InputError) as caught:
        list_incidents(session, org_id, page=PageRequest(10, "not-a-cursor"))

    assert caught.value.code == "E710"
    assert "start from the first page" in caught.value.message


def test_advance_stage_moves_the_checkpoint_once(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = intake(db, org_id, ids, clock.now()).incident.id

    with db.sessions.begin() as session:
        first = advance_stage(
            session,
            org_id,
            incident_id,
            done="snapshot",
            next_stage="stabilize",
            now=clock.now(),
        )
    with db.sessions.begin() as session:
        repeat = advance_stage(
            session,
            org_id,
            incident_id,
            done="snapshot",
            next_stage="stabilize",
            now=clock.now(),
        )

    assert (first, repeat) == (True, False)
    with db.readers() as session:
        assert load_incident(session, org_id, incident_id).incident.stage == "stabilize"


def test_list_refuses_a_page_size_out_of_range(db: Database, org_id: str) -> None:
    with db.readers() as session, pytest.raises(InputError) as caught:
        list_incidents(session, org_id, page=PageRequest(500))

    assert caught.value.code == "E711"
    assert "ask for 1 to 200" in caught.value.message
