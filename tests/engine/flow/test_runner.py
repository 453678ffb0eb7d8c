"""The flow from alert to recommendations, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from engine.actions.base import Refusal
from engine.actions.registry import RecordingExecutor, recording_executors
from engine.facts.scenario import scenario_facts
from engine.flow.approvals import decide_on_recommendation
from engine.runtime import FixedClock, SequentialIds
from engine.store.db import Database
from engine.store.models import Job
from tests.engine.flow.harness import Harness, Snapshots, kinds, rules_copy
from tests.support.fixtures import load_json

STAGES = ["snapshot", "stabilize", "classify", "brief", "impact", "message", "recommend"]
AUTO_TARGETS = {
    "pause_jobs": {"mode": "auto"},
    "clear_temp": {"mode": "auto"},
}


def disable(path: Path, rule_id: str) -> None:
    data = yaml.safe_load(path.read_text())
    for rule in data["rules"]:
        if rule["id"] == rule_id:
            rule["enabled"] = False
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def scenario(name: str) -> dict:
    return scenario_facts(load_json(f"scenarios/{name}.json"))


def harness(
    db: Database,
    clock: FixedClock,
    ids: SequentialIds,
    tmp_path: Path,
    name: str,
    *,
    after: dict | None = None,
    mode: str | None = "auto",
    **kwargs,
) -> Harness:
    facts = scenario(name)["snapshot"]
    return Harness(
        db, clock, ids, rules_copy(tmp_path), Snapshots(facts, after), mode=mode, **kwargs
    )


def test_incident_goes_through_every_stage_in_order(db, clock, ids, tmp_path) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s06")

    opened = h.post(name="DiskFull", severity="critical")
    h.drain()

    view = h.view(opened.incident_id)
    completed = [e.stage for e in view.events if e.kind == "stage.completed"]
    assert [s for s in STAGES if s in completed] == ["snapshot", "classify", "brief"]
    assert "decision.stable" in kinds(view)
    assert "decision.customer_impact" in kinds(view)
    assert kinds(view)[-1] == "flow.completed"
    assert view.incident.stage is None
    assert view.incident.type == "disk_pressure"
    assert view.incident.status == "awaiting_approval"
    assert len(view.briefs) == 1 and len(view.impacts) == 1 and len(view.messages) == 1
    assert view.incident.policy_version == h.policy.version


def test_every_rule_match_is_audited_with_version_and_place(db, clock, ids, tmp_path) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s06")

    opened = h.post(name="DiskFull")
    h.drain()
    view = h.view(opened.incident_id)

    by_stage = Counter(m.stage for m in view.rule_matches)
    classified = {m.rule_id: m.selected for m in view.rule_matches if m.stage == "classify"}
    assert classified == {"disk-full": True, "alert-says-disk": False}
    assert by_stage["stabilize"] == 2  # free-temp-space, pause-jobs-on-full-disk
    assert by_stage["decisions"] == 0  # no rule said stable: the default stands
    stable = next(e for e in view.events if e.kind == "decision.stable")
    assert (stable.data["value"], stable.data["rule"]) == (False, "default")
    disk = next(m for m in view.rule_matches if m.rule_id == "disk-full")
    assert disk.selected and disk.file == "classify.yaml" and disk.line > 0
    assert disk.facts_used["snapshot.disk.max_percent"] == 100
    assert {m.policy_version for m in view.rule_matches} == {h.policy.version}


def test_actions_run_once_with_verdict_command_and_verification(
    db, clock, ids, tmp_path
) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s06")

    opened = h.post(name="DiskFull")
    h.drain()
    view = h.view(opened.incident_id)

    actions = {a.action: a for a in view.actions}
    assert set(actions) == {"clear_temp", "pause_jobs"}
    temp = actions["clear_temp"]
    assert temp.status == "succeeded" and temp.guard_verdict == "allowed"
    assert temp.command == [["clear_temp", "temp"]]
    assert temp.verification["ok"] is True
    assert temp.verification["effective"] is False  # the disk stayed full
    assert len(h.executors["clear_temp"].runs()) == 1
    assert view.snapshots[-1].purpose == "verify"


def test_dry_run_records_the_command_and_changes_nothing(db, clock, ids, tmp_path) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s06", mode=None)  # shipped: dry_run

    opened = h.post(name="DiskFull")
    h.drain()

    view = h.view(opened.incident_id)
    assert {a.status for a in view.actions} == {"dry_run"}
    assert h.executors["clear_temp"].runs() == []
    assert all(c.dry_run for c in h.executors["clear_temp"].calls if c.method == "run")


def test_mode_off_refuses_every_action(db, clock, ids, tmp_path) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s06", mode="off")

    opened = h.post(name="DiskFull")
    h.drain()

    view = h.view(opened.incident_id)
    assert {(a.status, a.refusal_code) for a in view.actions} == {("refused", "mode_off")}
    assert h.executors["clear_temp"].calls == []


def test_cooldown_keeps_a_second_incident_off_the_same_target(
    db, clock, ids, tmp_path
) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s06")
    first = h.post(name="DiskFull")
    h.drain()
    clock.advance(60)

    second = h.post(name="DiskFullElsewhere")
    h.drain()

    assert h.view(first.incident_id).actions[0].status == "succeeded"
    refused = {a.action: a for a in h.view(second.incident_id).actions}
    assert refused["clear_temp"].refusal_code == "cooldown"
    assert "cooldown is 900 s" in refused["clear_temp"].refusal_message
    assert len(h.executors["clear_temp"].runs()) == 1


def test_executor_refusal_is_recorded_with_its_advice(db, clock, ids, tmp_path) -> None:
    refusal = Refusal("not_configured", "no temp directory is configured", "set directories")
    executors = recording_executors(clear_temp=RecordingExecutor("clear_temp", refusal=refusal))
    h = harness(db, clock, ids, tmp_path, "case-s06", executors=executors)

    opened = h.post(name="DiskFull")
    h.drain()

    temp = next(a for a in h.view(opened.incident_id).actions if a.action == "clear_temp")
    assert temp.status == "refused"
    assert temp.refusal_code == "not_configured"
    assert temp.refusal_message == "no temp directory is configured set directories"


def test_incident_that_recovers_goes_to_monitoring(db, clock, ids, tmp_path) -> None:
    healthy = {"disk": {"max_percent": 40}, "memory": {"percent": 40}}
    h = harness(db, clock, ids, tmp_path, "case-s06", after=healthy)

    opened = h.post(name="DiskFull")
    h.drain()

    view = h.view(opened.incident_id)
    assert view.incident.status == "monitoring"
    assert view.incident.stabilized_at is not None
    stable = next(e for e in view.events if e.kind == "decision.stable")
    assert stable.data["value"] is True
    assert stable.data["rule"] == "stable-when-signals-clear"
    assert all(a.verification["effective"] for a in view.actions)


def test_approved_recommendation_runs_after_a_fresh_recheck(db, clock, ids, tmp_path) -> None:
    rules = rules_copy(tmp_path)
    disable(rules / "stabilize.yaml", "free-temp-space")
    h = Harness(db, clock, ids, rules, Snapshots(scenario("case-s06")["snapshot"]), mode="auto")
    opened = h.post(name="DiskFull")
    h.drain()
    clock.advance(600)
    rec = next(r for r in h.view(opened.incident_id).recommendations if r.action)
    assert (rec.key, rec.status) == ("clear-temp-files", "pending")

    with db.sessions.begin() as session:
        decide_on_recommendation(
            session, h.org_id, rec.id, approve=True, actor="alice",
            comment="go", ids=ids, now=clock.now(),
        )
    h.drain()

    view = h.view(opened.incident_id)
    approved = [a for a in view.actions if a.origin == "approval"]
    assert [(a.action, a.status) for a in approved] == [("clear_temp", "succeeded")]
    assert next(r for r in view.recommendations if r.id == rec.id).status == "executed"
    assert "recheck" in [s.purpose for s in view.snapshots]
    assert "recommendation.approved" in kinds(view)


def test_low_risk_recommendation_runs_alone_only_where_allowed(
    db, clock, ids, tmp_path
) -> None:
    rules = rules_copy(tmp_path, auto_execute=True)
    disable(rules / "stabilize.yaml", "pause-jobs-on-dead-dependency")
    h = Harness(db, clock, ids, rules, Snapshots(scenario("case-s05")["snapshot"]),
                mode="auto", auto_execute=True)

    opened = h.post(name="S3Down")
    h.drain()

    view = h.view(opened.incident_id)
    pause = next(r for r in view.recommendations if r.key == "pause-background-jobs")
    assert pause.status == "auto_executed"
    decision = next(e for e in view.events if e.kind == "decision.auto_execute")
    assert decision.data["value"] is True
    assert decision.data["rule"] == "auto-execute-low-risk"


def test_without_opt_in_every_recommendation_waits(db, clock, ids, tmp_path) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s05")

    opened = h.post(name="S3Down")
    h.drain()

    view = h.view(opened.incident_id)
    assert {r.status for r in view.recommendations} == {"pending"}
    with db.sessions() as session:
        queued = session.scalars(select(Job).where(Job.kind == "execute")).all()
    assert queued == []


def test_breaker_stops_automatic_actions_after_ineffective_rounds(
    db, clock, ids, tmp_path
) -> None:
    rules = rules_copy(
        tmp_path,
        breaker={"ineffective_runs": 2},
        actions={"clear_temp": {"cooldown_s": 0, "budget_per_hour": 100},
                 "pause_jobs": {"cooldown_s": 0, "budget_per_hour": 100}},
    )
    h = Harness(db, clock, ids, rules, Snapshots(scenario("case-s06")["snapshot"]), mode="auto")
    opened = h.post(name="DiskFull")
    h.drain()

    for _ in range(2):
        clock.advance(400)  # past the re-evaluation interval
        h.post(name="DiskFull")
        h.drain()

    view = h.view(opened.incident_id)
    assert "breaker.open" in kinds(view)
    last = [a for a in view.actions if a.origin == "stabilize"][-2:]
    assert {a.refusal_code for a in last} == {"breaker_open"}


def test_folded_alert_starts_a_new_round_only_when_severity_rises(
    db, clock, ids, tmp_path
) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s06")
    opened = h.post(name="DiskFull", severity="warning")
    h.drain()

    h.post(name="DiskFull", severity="warning")
    h.drain()
    quiet = h.view(opened.incident_id)
    h.post(name="DiskFull", severity="critical")
    h.drain()
    raised = h.view(opened.incident_id)

    assert kinds(quiet).count("round.started") == 0
    assert kinds(raised).count("round.started") == 1
    assert raised.incident.severity == "critical"
    assert raised.incident.alert_count == 3


def test_times_are_aware_utc_everywhere(db, clock, ids, tmp_path) -> None:
    h = harness(db, clock, ids, tmp_path, "case-s06")

    opened = h.post(name="DiskFull")
    h.drain()

    view = h.view(opened.incident_id)
    stamps = [view.incident.created_at, view.incident.updated_at]
    stamps += [e.at for e in view.events] + [a.planned_at for a in view.actions]
    assert all(t.tzinfo is not None and t.utcoffset().total_seconds() == 0 for t in stamps)
    assert all(t.tzinfo == UTC or str(t.tzinfo) in ("UTC", "+00:00") for t in stamps)


@pytest.mark.parametrize(
    "name",
    [f"case-s{n:02d}" for n in range(1, 13)],
)
def test_every_scenario_is_classified_as_its_postmortem_says(
    sqlite_db, clock, ids, tmp_path, name
) -> None:
    document = load_json(f"scenarios/{name}.json")
    h = harness(sqlite_db, clock, ids, tmp_path, name)

    opened = h.post(name=name, severity="critical")
    h.drain()

    view = h.view(opened.incident_id)
    assert view.incident.type == document["expected_type"]
    assert view.impacts[-1].level == document["expected_customer_impact"]
