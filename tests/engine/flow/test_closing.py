"""Resolution, undo, the learning review and threshold proposals."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from engine.errors import ConflictError
from engine.flow import rounds
from engine.flow.approvals import decide_on_proposal, decide_on_recommendation
from engine.flow.learning import resolve
from engine.store.models import Proposal
from tests.engine.flow.harness import Harness, Snapshots, kinds, rules_copy
from tests.engine.flow.test_runner import scenario


def close(
    h: Harness, incident_id: str, *, root_cause: str | None, category: str | None
) -> None:
    with h.db.sessions.begin() as session:
        resolve(
            session,
            h.org_id,
            incident_id,
            by="alice",
            root_cause=root_cause,
            category=category,
            ids=h.ids,
            now=h.clock.now(),
        )
    h.drain()


def test_resolution_records_who_and_how_long(db, clock, ids, tmp_path) -> None:
    h = Harness(
        db,
        clock,
        ids,
        rules_copy(tmp_path),
        Snapshots(scenario("case-s06")["snapshot"]),
        mode="auto",
    )
    opened = h.post(name="DiskFull")
    h.drain()
    clock.advance(45 * 60)

    close(h, opened.incident_id, root_cause="log rotation was off", category="config")

    view = h.view(opened.incident_id)
    assert view.incident.status == "resolved"
    assert view.incident.resolved_by == "alice"
    resolved = next(e for e in view.events if e.kind == "incident.resolved")
    assert resolved.data["time_to_resolve_minutes"] == 45.0
    assert resolved.actor == "alice"


def test_resolving_twice_is_refused(db, clock, ids, tmp_path) -> None:
    h = Harness(
        db,
        clock,
        ids,
        rules_copy(tmp_path),
        Snapshots(scenario("case-s06")["snapshot"]),
    )
    opened = h.post(name="DiskFull")
    h.drain()
    close(h, opened.incident_id, root_cause=None, category=None)

    with pytest.raises(ConflictError) as raised, db.sessions.begin() as session:
        resolve(
            session,
            h.org_id,
            opened.incident_id,
            by="bob",
            root_cause=None,
            category=None,
            ids=ids,
            now=clock.now(),
        )

    assert raised.value.code == "E721"


def test_known_root_cause_gives_prevention_steps(db, clock, ids, tmp_path) -> None:
    h = Harness(
        db,
        clock,
        ids,
        rules_copy(tmp_path),
        Snapshots(scenario("case-s06")["snapshot"]),
    )
    opened = h.post(name="DiskFull")
    h.drain()

    close(h, opened.incident_id, root_cause="runaway debug log", category="config")

    review = h.view(opened.incident_id).reviews[-1]
    assert review.flagged_for_review is False
    assert review.content["root_cause_identified"] is True
    assert any("logrotate" in step for step in review.content["prevention"])
    assert review.content["timeline"][0]["kind"] == "incident.opened"


def test_unknown_root_cause_is_flagged_for_review(db, clock, ids, tmp_path) -> None:
    h = Harness(
        db,
        clock,
        ids,
        rules_copy(tmp_path),
        Snapshots(scenario("case-s06")["snapshot"]),
    )
    opened = h.post(name="DiskFull")
    h.drain()

    close(h, opened.incident_id, root_cause=None, category=None)

    view = h.view(opened.incident_id)
    review = view.reviews[-1]
    assert review.flagged_for_review is True
    assert review.content["prevention"] == []
    decision = next(
        e for e in view.events if e.kind == "decision.root_cause_identified"
    )
    assert decision.data["value"] is False


def test_resolution_undoes_the_rate_limit(db, clock, ids, tmp_path) -> None:
    h = Harness(
        db,
        clock,
        ids,
        rules_copy(tmp_path),
        Snapshots(scenario("case-s04")["snapshot"]),
        mode="auto",
    )
    opened = h.post(name="UploadSurge")
    h.drain()

    close(h, opened.incident_id, root_cause="partner bulk import", category="traffic")

    view = h.view(opened.incident_id)
    limit = next(
        a for a in view.actions if a.action == "rate_limit" and a.origin == "stabilize"
    )
    undo = next(a for a in view.actions if a.origin == "undo")
    assert limit.undone_at is not None
    assert (undo.action, undo.status, undo.undo_of) == (
        "rate_limit",
        "succeeded",
        limit.id,
    )
    assert "action.undone" in kinds(view)
    undo_calls = [c for c in h.executors["rate_limit"].calls if c.method == "undo"]
    assert len(undo_calls) == 1 and undo_calls[0].undo_data == {"recorded": "uploads"}


def test_flapping_alert_is_reported_as_an_alert_improvement(
    db, clock, ids, tmp_path
) -> None:
    h = Harness(
        db,
        clock,
        ids,
        rules_copy(tmp_path),
        Snapshots(scenario("case-s06")["snapshot"]),
    )
    opened = h.post(name="DiskFull", fingerprint="fp-1")
    h.drain()
    for _ in range(3):
        clock.advance(60)
        h.post(name="DiskFull", fingerprint="fp-1", status="resolved")
        clock.advance(60)
        h.post(name="DiskFull", fingerprint="fp-1")
    h.drain()

    close(h, opened.incident_id, root_cause="tmp filled", category="capacity")

    review = h.view(opened.incident_id).reviews[-1]
    assert review.content["facts"]["alert_flaps"] == 3
    assert any(
        "fired and cleared 3 times" in text
        for text in review.content["alert_improvements"]
    )


def memory_incident_with_early_warning(h: Harness) -> str:
    opened = h.post(name="HostMemory", severity="warning", fingerprint="mem")
    h.drain()
    h.clock.advance(40 * 60)
    h.post(name="HostMemory", severity="critical", fingerprint="mem")
    h.drain()
    close(
        h, opened.incident_id or "", root_cause="leak in image resizer", category="code"
    )
    return opened.incident_id or ""


def test_warning_long_before_impact_proposes_an_earlier_page(
    db, clock, ids, tmp_path
) -> None:
    rules = rules_copy(tmp_path)
    h = Harness(db, clock, ids, rules, Snapshots(scenario("case-s02")["snapshot"]))
    before = (rules / "thresholds.yaml").read_text()

    incident_id = memory_incident_with_early_warning(h)

    with db.sessions() as session:
        proposal = session.scalars(
            select(Proposal).where(Proposal.incident_id == incident_id)
        ).one()
    assert (proposal.path, proposal.old_value, proposal.new_value) == (
        "memory.critical_percent",
        95,
        90,
    )
    assert "-    critical_percent: 95" in proposal.diff
    assert "+    critical_percent: 90" in proposal.diff
    assert proposal.status == "pending"
    assert (rules / "thresholds.yaml").read_text() == before  # only a proposal


def test_approving_a_proposal_writes_validates_and_reloads(
    db, clock, ids, tmp_path
) -> None:
    rules = rules_copy(tmp_path)
    h = Harness(db, clock, ids, rules, Snapshots(scenario("case-s02")["snapshot"]))
    incident_id = memory_incident_with_early_warning(h)
    with db.sessions() as session:
        proposal_id = session.scalars(select(Proposal.id)).one()
    before = h.policy.version

    with db.sessions.begin() as session:
        decide_on_proposal(
            session,
            h.org_id,
            proposal_id,
            approve=True,
            actor="carol",
            comment="agreed",
            rules_dir=rules,
            reload=h.reload,
            ids=ids,
            now=clock.now(),
        )

    assert h.policy.version != before
    assert h.policy.source.thresholds.values["memory.critical_percent"] == 90
    view = h.view(incident_id)
    applied = next(e for e in view.events if e.kind == "proposal.applied")
    assert applied.actor == "carol"
    assert "memory.critical_percent: 95 -> 90" in applied.message


def test_proposal_that_no_longer_fits_the_file_is_refused(
    db, clock, ids, tmp_path
) -> None:
    rules = rules_copy(tmp_path)
    h = Harness(db, clock, ids, rules, Snapshots(scenario("case-s02")["snapshot"]))
    memory_incident_with_early_warning(h)
    with db.sessions() as session:
        proposal_id = session.scalars(select(Proposal.id)).one()
    path = rules / "thresholds.yaml"
    path.write_text(
        path.read_text().replace("critical_percent: 95", "critical_percent: 97")
    )

    with pytest.raises(ConflictError) as raised, db.sessions.begin() as session:
        decide_on_proposal(
            session,
            h.org_id,
            proposal_id,
            approve=True,
            actor="carol",
            comment="",
            rules_dir=rules,
            reload=h.reload,
            ids=ids,
            now=clock.now(),
        )

    assert raised.value.code == "E722"
    assert (
        "memory.critical_percent is 97 now, not 95 as when proposed"
        in raised.value.message
    )
    assert "critical_percent: 97" in path.read_text()


def test_a_round_still_running_never_undoes_a_resolution(
    db, clock, ids, tmp_path
) -> None:
    h = Harness(
        db,
        clock,
        ids,
        rules_copy(tmp_path),
        Snapshots(scenario("case-s06")["snapshot"]),
    )
    opened = h.post(name="DiskFull")
    worker = h.worker
    # The worker takes the incident to its snapshot checkpoint, then a human
    # resolves it before the round goes on.
    batch, claimed, failure = worker._claim_and_begin()
    assert batch is not None and failure is None
    worker._snapshot_phase(batch)
    with db.sessions.begin() as session:
        resolve(
            session,
            h.org_id,
            opened.incident_id or "",
            by="alice",
            root_cause="fixed by hand",
            category="ops",
            ids=ids,
            now=clock.now(),
        )
    worker._stabilize_phase(batch)
    with db.sessions.begin() as session:
        rounds.decide_rest(session, batch)
    worker._settle(claimed)
    h.drain()

    view = h.view(opened.incident_id)
    assert view.incident.status == "resolved"
    assert view.incident.stage is None
    assert view.briefs == () and view.messages == ()
    assert "flow.stopped" in kinds(view)
    assert all(r.status != "pending" for r in view.recommendations)


def test_resolving_expires_what_waits_for_approval(db, clock, ids, tmp_path) -> None:
    h = Harness(
        db,
        clock,
        ids,
        rules_copy(tmp_path),
        Snapshots(scenario("case-s05")["snapshot"]),
    )
    opened = h.post(name="S3Down")
    h.drain()
    pending = [r for r in h.view(opened.incident_id).recommendations if r.action]
    assert pending and all(r.status == "pending" for r in pending)

    close(h, opened.incident_id, root_cause="provider outage", category="provider")

    view = h.view(opened.incident_id)
    assert {r.status for r in view.recommendations} == {"expired"}
    assert {m.status for m in view.messages} == {"expired"}
    with pytest.raises(ConflictError) as raised, db.sessions.begin() as session:
        decide_on_recommendation(
            session,
            h.org_id,
            pending[0].id,
            approve=True,
            actor="bob",
            comment="",
            ids=ids,
            now=clock.now(),
        )
    assert raised.value.code == "E712"
