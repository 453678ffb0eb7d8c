"""Reviewers: list and filter, the incident in full, resolve with learning,
proposal approval, message approval by two people, replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.api.conftest import Api, running_api, scenario_snapshot
from tests.support.databases import sqlite_url


def open_incident(api: Api, **fields: Any) -> str:
    body = {"kind": "threshold_exceeded", "name": "DiskFull", **fields}
    answer = api.post("/v1/alerts", body, role="source")
    assert answer.status_code == 202, answer.text
    return str(answer.json()["incident_ids"][0])


def detail(api: Api, incident_id: str) -> dict[str, Any]:
    answer = api.get(f"/v1/incidents/{incident_id}", role="reviewer")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_the_incident_page_has_every_part_after_the_flow(api: Api) -> None:
    incident_id = open_incident(api)
    api.drain()

    found = detail(api, incident_id)

    assert found["incident"]["status"] == "awaiting_approval"
    assert found["incident"]["type"] == "disk_pressure"
    assert found["brief"]["content"]["summary"]
    assert found["impact"]["level"]
    assert found["snapshots"][0]["purpose"] == "initial"
    assert found["recommendations"] and found["messages"]
    assert {a["action"] for a in found["actions"]} >= {"clear_temp"}
    match = next(m for m in found["rule_matches"] if m["stage"] == "classify")
    assert match["file"] == "classify.yaml" and match["line"] > 0
    assert match["policy_version"] == found["incident"]["policy_version"]
    assert match["facts_used"]
    assert found["events"][0]["kind"] == "incident.opened"


def test_listing_filters_by_status_severity_type_text_and_time(api: Api) -> None:
    disk = open_incident(api, fingerprint="d", severity="critical")
    other = open_incident(api, name="Checkout slow", fingerprint="c")
    api.drain()

    def ids(query: str) -> list[str]:
        answer = api.get(f"/v1/incidents?{query}", role="reviewer")
        assert answer.status_code == 200, answer.text
        return [i["id"] for i in answer.json()["items"]]

    assert ids("severity=critical") == [disk]
    assert ids("q=checkout") == [other]
    assert set(ids("type=disk_pressure")) == {disk, other}
    assert ids("status=resolved") == []
    assert ids("since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z") == []
    first = api.get("/v1/incidents?limit=1", role="reviewer").json()
    rest = api.get(f"/v1/incidents?limit=1&after={first['next_cursor']}").json()
    assert {first["items"][0]["id"], rest["items"][0]["id"]} == {disk, other}
    assert rest["next_cursor"] is None


def test_listing_refuses_a_bad_filter_with_its_field(api: Api) -> None:
    answer = api.get("/v1/incidents?status=sleeping", role="reviewer")

    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "status[0]"


def test_resolve_runs_the_learning_review_and_a_proposal_can_be_applied(
    api: Api,
) -> None:
    # An error-rate alert that flapped three times earns a threshold proposal.
    for status in ["firing", "resolved"] * 3 + ["firing"]:
        incident_id = open_incident(
            api, kind="error_rate_spike", name="Errors", fingerprint="e", status=status
        )
    api.drain()

    resolved = api.post(
        f"/v1/incidents/{incident_id}/resolve",
        {"root_cause": "a noisy upstream", "category": "dependency"},
        role="reviewer",
        name="rita",
    )
    api.drain()

    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved"
    found = detail(api, incident_id)
    assert found["review"]["content"]["root_cause_identified"] is True
    proposal = found["proposals"][0]
    assert proposal["path"] == "http.error_rate_warning"

    applied = api.post(
        f"/v1/proposals/{proposal['id']}/approve", {"comment": "ok"}, role="reviewer"
    )

    # The operator organization alone may change the shared policy.
    assert applied.status_code == 403
    assert "operator organization" in applied.json()["error"]["message"]


def test_operator_applies_a_proposal_and_the_policy_reloads(tmp_path: Path) -> None:
    with running_api(tmp_path, sqlite_url(tmp_path), default_org="acme") as api:
        for status in ["firing", "resolved"] * 3 + ["firing"]:
            incident_id = open_incident(
                api, kind="error_rate_spike", name="E", fingerprint="e", status=status
            )
        api.drain()
        api.post(f"/v1/incidents/{incident_id}/resolve", {"root_cause": "x"})
        api.drain()
        proposal = detail(api, incident_id)["proposals"][0]
        before = api.get("/v1/policy").json()["version"]

        applied = api.post(f"/v1/proposals/{proposal['id']}/approve", {})

        assert applied.status_code == 200, applied.text
        assert applied.json()["status"] == "applied"
        after = api.get("/v1/policy").json()
        assert after["version"] != before and after["ok"] is True
        thresholds = (api.rules_dir / "thresholds.yaml").read_text()
        assert str(proposal["new_value"]) in thresholds
        again = api.post(f"/v1/proposals/{proposal['id']}/approve", {})
        assert again.json()["error"]["code"] == "E712"


def test_a_critical_draft_needs_two_different_approvers(tmp_path: Path) -> None:
    snapshot = scenario_snapshot()
    snapshot["http"] = {**snapshot.get("http", {}), "customers_with_errors": 900}
    with running_api(tmp_path, sqlite_url(tmp_path), snapshot=snapshot) as api:
        incident_id = open_incident(api)
        api.drain()
        message = detail(api, incident_id)["messages"][0]
        assert message["approvals_required"] == 2
        path = f"/v1/messages/{message['id']}"

        edited = api.client.patch(
            path,
            json={"body": "We are fixing it."},
            headers=api.auth(role="reviewer", name="ann"),
        )
        first = api.post(f"{path}/approve", {}, role="reviewer", name="ann")
        twice = api.post(f"{path}/approve", {}, role="reviewer", name="ann")
        second = api.post(
            f"{path}/approve", {"comment": "ok"}, role="reviewer", name="ben"
        )

        assert edited.json()["original_body"] != edited.json()["body"]
        assert first.json()["status"] == "draft"
        assert twice.status_code == 409
        assert twice.json()["error"]["code"] == "E713"
        assert second.json()["status"] == "approved"
        actors = [a["actor"] for a in detail(api, incident_id)["approvals"]]
        assert len(actors) == 2 and actors[0] != actors[1]


def test_approving_a_recommendation_runs_its_action_after_a_recheck(api: Api) -> None:
    incident_id = open_incident(api)
    api.drain()
    rec = next(r for r in detail(api, incident_id)["recommendations"] if r["action"])

    approved = api.post(f"/v1/recommendations/{rec['id']}/approve", {}, role="reviewer")
    api.drain()

    assert approved.json()["status"] == "approved"
    after = next(
        r for r in detail(api, incident_id)["recommendations"] if r["id"] == rec["id"]
    )
    assert after["status"] == "executed"
    recheck = [s["purpose"] for s in detail(api, incident_id)["snapshots"]]
    assert "recheck" in recheck


def test_replay_against_the_running_policy_finds_no_difference(api: Api) -> None:
    incident_id = open_incident(api)
    api.drain()

    answer = api.post(f"/v1/incidents/{incident_id}/replay", {}, role="reviewer")

    assert answer.status_code == 200, answer.text
    assert answer.json()["differences"] == []
    assert answer.json()["replayed"]["type"] == "disk_pressure"


def test_replay_against_a_candidate_policy_shows_what_would_change(api: Api) -> None:
    # A rules directory on the server is the operator organization's business.
    body = {"kind": "threshold_exceeded", "name": "DiskFull"}
    posted = api.post("/v1/alerts", body, org="default", role="source")
    incident_id = str(posted.json()["incident_ids"][0])
    api.drain()
    candidate = api.rules_dir.parent / "candidate"
    candidate.mkdir()
    for path in api.rules_dir.glob("*.yaml"):
        (candidate / path.name).write_text(path.read_text())
    intake = candidate / "intake.yaml"
    intake.write_text(
        intake.read_text().replace("severity: warning", "severity: critical", 1)
    )

    refused = api.post(
        f"/v1/incidents/{incident_id}/replay",
        {"rules_dir": str(candidate)},
        org="default",
        role="reviewer",
    )
    answer = api.post(
        f"/v1/incidents/{incident_id}/replay",
        {"rules_dir": str(candidate)},
        org="default",
    )

    assert refused.status_code == 403
    changed = {d["field"]: d for d in answer.json()["differences"]}
    assert changed["severity"]["stored"] == "warning"
    assert changed["severity"]["replayed"] == "critical"


def test_replay_against_a_folder_without_rule_files_is_refused(
    api: Api, tmp_path: Path
) -> None:
    posted = api.post("/v1/alerts", {"kind": "manual"}, org="default", role="source")
    incident_id = str(posted.json()["incident_ids"][0])
    api.drain()

    answer = api.post(
        f"/v1/incidents/{incident_id}/replay",
        {"rules_dir": str(tmp_path)},
        org="default",
    )

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "E108"
    assert error["message"].startswith(f"rules directory {tmp_path} holds no rule file")


def test_replay_before_the_flow_ran_says_so(api: Api) -> None:
    incident_id = open_incident(api)

    answer = api.post(f"/v1/incidents/{incident_id}/replay", {}, role="reviewer")

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "E740"
