from __future__ import annotations

from datetime import timedelta

from engine.runtime import FixedClock, SequentialIds
from engine.store.actions import (
    ActionOutcome,
    ActionPlan,
    actions_of,
    finish_action,
    interrupt_stale,
    plan_action,
    runs_since,
    start_action,
)
from engine.store.alerts import AlertIn
from engine.store.db import Database
from engine.store.incidents import open_or_fold

PLAN = ActionPlan(
    run_key="inc_000001:stabilize:pm2-restart:web",
    action="pm2_restart",
    target="web",
    executor="pm2",
    origin="stabilize",
    mode="auto",
    rule_id="restart-crashed-app",
    guard_verdict="allowed",
)


def incident(db: Database, org_id: str, ids: SequentialIds, clock: FixedClock) -> str:
    alert = AlertIn(
        source="watcher",
        kind="process_down",
        fingerprint="web",
        severity="critical",
        received_at=clock.now(),
    )
    with db.sessions.begin() as session:
        opened = open_or_fold(
            session, org_id, "pm2:web", "critical", "web down", alert, ids=ids
        )
        return opened.incident.id


def plan(
    db: Database, org_id: str, incident_id: str, ids: SequentialIds, clock: FixedClock
) -> tuple[str, bool]:
    with db.sessions.begin() as session:
        planned = plan_action(
            session,
            PLAN,
            ids=ids,
            org_id=org_id,
            incident_id=incident_id,
            now=clock.now(),
        )
        return planned.action.id, planned.created


def test_planning_the_same_run_key_again_returns_the_first_row(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = incident(db, org_id, ids, clock)

    first = plan(db, org_id, incident_id, ids, clock)
    again = plan(db, org_id, incident_id, ids, clock)

    assert first == (first[0], True)
    assert again == (first[0], False)
    with db.readers() as session:
        assert len(actions_of(session, org_id, incident_id)) == 1


def test_an_action_can_be_started_only_once(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    action_id, _ = plan(db, org_id, incident(db, org_id, ids, clock), ids, clock)

    with db.sessions.begin() as session:
        first = start_action(session, action_id, now=clock.now())
    with db.sessions.begin() as session:
        second = start_action(session, action_id, now=clock.now())

    assert (first, second) == (True, False)


def test_finished_action_keeps_command_output_and_verification(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = incident(db, org_id, ids, clock)
    action_id, _ = plan(db, org_id, incident_id, ids, clock)
    outcome = ActionOutcome(
        status="succeeded",
        command=[("pm2", "restart", "web")],
        exit_status=0,
        output_tail="x" * 20_000 + "[PM2] Done.",
        duration_ms=1450,
        verification={"ok": True, "message": "web is online"},
        undo_data={},
    )
    with db.sessions.begin() as session:
        start_action(session, action_id, now=clock.now())
    with db.sessions.begin() as session:
        finish_action(session, action_id, outcome, now=clock.advance(2))

    with db.readers() as session:
        [row] = actions_of(session, org_id, incident_id)
    assert row.status == "succeeded"
    assert row.command == [["pm2", "restart", "web"]]
    assert row.output_tail.endswith("[PM2] Done.")
    assert len(row.output_tail) == 16 * 1024
    assert row.verification == {"ok": True, "message": "web is online"}
    assert row.finished_at == clock.now()


def test_actions_running_when_a_worker_died_are_marked_interrupted_not_rerun(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    incident_id = incident(db, org_id, ids, clock)
    action_id, _ = plan(db, org_id, incident_id, ids, clock)
    with db.sessions.begin() as session:
        start_action(session, action_id, now=clock.now())

    with db.sessions.begin() as session:
        interrupted = interrupt_stale(session, org_id, incident_id, now=clock.now())
        restarted = start_action(session, action_id, now=clock.now())

    assert (interrupted, restarted) == (1, False)
    with db.readers() as session:
        assert actions_of(session, org_id, incident_id)[0].status == "interrupted"


def test_runs_since_counts_starts_inside_the_window(
    db: Database, org_id: str, ids: SequentialIds, clock: FixedClock
) -> None:
    action_id, _ = plan(db, org_id, incident(db, org_id, ids, clock), ids, clock)
    with db.sessions.begin() as session:
        start_action(session, action_id, now=clock.now())

    with db.readers() as session:
        inside = runs_since(
            session, org_id, "pm2_restart", "web", clock.now() - timedelta(minutes=10)
        )
        after = runs_since(
            session, org_id, "pm2_restart", "web", clock.now() + timedelta(seconds=1)
        )

    assert ([r.id for r in inside], after) == ([action_id], [])
