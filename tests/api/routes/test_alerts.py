"""Intake over HTTP: every format as captured, dedup, idempotency, test messages."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select

from engine.store.models import Alert
from tests.api.conftest import Api
from tests.support.fixtures import load_json, load_jsonl

AM = "/v1/alerts/alertmanager"
GRAFANA = "/v1/alerts/grafana"


def generic(**fields: Any) -> dict[str, Any]:
    return {"kind": "threshold_exceeded", "name": "DiskFull", **fields}


def incident(api: Api, incident_id: str) -> dict[str, Any]:
    answer = api.get(f"/v1/incidents/{incident_id}", role="reviewer")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_generic_alert_opens_an_incident_with_its_alert_and_flow_job(api: Api) -> None:
    answer = api.post("/v1/alerts", generic(labels={"mount": "/"}), role="source")

    assert answer.status_code == 202
    body = answer.json()
    assert body["accepted"][0]["status"] == "opened"
    rows = api.rows()
    assert (rows["tms_incidents"], rows["tms_alerts"], rows["tms_jobs"]) == (1, 1, 1)
    found = incident(api, body["incident_ids"][0])
    assert found["incident"]["title"] == "DiskFull"
    assert found["alerts"][0]["facts"]["labels"] == {"mount": "/"}


def test_a_posted_snapshot_is_kept_beside_facts_a_reviewer_can_explain(
    api: Api,
) -> None:
    posted = {"memory": {"percent": 97.5}, "disk": {"max_percent": 40.0}}
    answer = api.post("/v1/alerts", generic(snapshot=posted), role="source")

    stored = incident(api, answer.json()["incident_ids"][0])["alerts"][0]
    assert stored["posted_snapshot"] == posted
    assert "posted_snapshot" not in stored["facts"]
    with api.service.database.readers() as session:
        payload = session.scalars(select(Alert.payload)).one()
    assert "snapshot" not in payload  # kept once, not twice
    facts = {"alert": stored["facts"], "snapshot": stored["posted_snapshot"]}
    explained = api.post(
        "/v1/policy/explain", {"facts": facts, "stage": "classify"}, role="reviewer"
    )
    assert explained.status_code == 200, explained.text


def test_same_fingerprint_folds_into_the_open_incident_and_raises_severity(
    api: Api,
) -> None:
    first = api.post("/v1/alerts", generic(fingerprint="fp-1"), role="source").json()
    second = api.post(
        "/v1/alerts", generic(fingerprint="fp-1", severity="critical"), role="source"
    ).json()

    assert second["accepted"][0]["status"] == "folded"
    assert second["incident_ids"] == first["incident_ids"]
    found = incident(api, first["incident_ids"][0])["incident"]
    assert (found["severity"], found["alert_count"]) == ("critical", 2)


def test_a_lower_severity_fold_does_not_lower_the_incident(api: Api) -> None:
    api.post(
        "/v1/alerts", generic(fingerprint="fp", severity="critical"), role="source"
    )
    answer = api.post("/v1/alerts", generic(fingerprint="fp", severity="info"))

    found = incident(api, answer.json()["incident_ids"][0])["incident"]
    assert found["severity"] == "critical"


def test_manual_report_opens_an_incident_titled_by_the_report(api: Api) -> None:
    answer = api.post(
        "/v1/reports",
        {"summary": "Checkout shows a blank page", "reporter": "sam"},
        role="reviewer",
    )

    assert answer.status_code == 202
    found = incident(api, answer.json()["incident_ids"][0])
    assert found["incident"]["title"] == "Reported: Checkout shows a blank page"
    assert found["alerts"][0]["kind"] == "manual"


def test_alertmanager_firing_then_resolved_touches_one_incident(api: Api) -> None:
    firing = api.post(AM, load_json("alertmanager/am025_firing_high_memory.json"))
    resolved = api.post(AM, load_json("alertmanager/am025_resolved_high_memory.json"))

    assert firing.status_code == resolved.status_code == 202
    assert resolved.json()["accepted"][0]["status"] == "resolved"
    assert resolved.json()["incident_ids"] == firing.json()["incident_ids"]
    events = incident(api, firing.json()["incident_ids"][0])["events"]
    assert [e["kind"] for e in events] == ["incident.opened", "alert.resolved"]


def test_a_resolved_alert_without_an_open_incident_stores_nothing(api: Api) -> None:
    answer = api.post(AM, load_json("alertmanager/am025_resolved_high_memory.json"))

    assert answer.json()["accepted"][0]["status"] == "unmatched"
    assert api.rows()["tms_alerts"] == 0


def test_start_times_with_offsets_are_stored_in_utc(api: Api) -> None:
    body = load_json("alertmanager/am025_firing_startsAt_tz_offset_0530.json")
    answer = api.post(AM, body)

    alert = incident(api, answer.json()["incident_ids"][0])["alerts"][0]
    assert alert["starts_at"] == "2026-12-04T15:09:53.155831Z"


def test_mixed_offsets_in_one_resolved_alert_are_normalised(api: Api) -> None:
    api.post(AM, load_json("alertmanager/am025_firing_startsAt_tz_offset_0530.json"))
    answer = api.post(
        AM,
        load_json("alertmanager/am025_resolved_mixed_tz_startsAt_0530_endsAt_Z.json"),
    )

    assert answer.json()["accepted"][0]["status"] == "resolved"
    alerts = incident(api, answer.json()["incident_ids"][0])["alerts"]
    assert {a["starts_at"] for a in alerts} == {"2026-12-04T15:09:53.155831Z"}


def test_unicode_and_long_labels_survive_byte_for_byte(api: Api) -> None:
    body = load_json("alertmanager/am025_firing_unicode_labels_long_label.json")
    sent = body["alerts"][0]["labels"]
    answer = api.post(AM, body)

    stored = incident(api, answer.json()["incident_ids"][0])["alerts"][0]
    assert stored["facts"]["labels"] == sent
    for name, value in sent.items():
        assert stored["facts"]["labels"][name].encode() == value.encode()
    assert any(not value.isascii() for value in sent.values())


def test_a_truncated_group_never_resolves_alerts_it_did_not_list(api: Api) -> None:
    group = load_json(
        "alertmanager/am025_grouped_12_alerts_max5_truncated7_firing.json"
    )
    unlisted = copy.deepcopy(group)
    for number, alert in enumerate(unlisted["alerts"]):
        alert["fingerprint"] = f"unlisted{number:08d}"
    unlisted["truncatedAlerts"] = 0
    api.post(AM, group)
    others = api.post(AM, unlisted).json()["incident_ids"]

    answer = api.post(
        AM,
        load_json(
            "alertmanager/am025_grouped_truncated_status_resolved_but_6_still_firing.json"
        ),
    )

    body = answer.json()
    assert body["truncated"] == 7
    assert [a["status"] for a in body["accepted"]] == ["resolved"] * 5
    assert not set(body["incident_ids"]) & set(others)
    for incident_id in others:
        kinds = [e["kind"] for e in incident(api, incident_id)["events"]]
        assert kinds == ["incident.opened"]


def test_the_envelope_status_is_not_the_status_of_each_alert(api: Api) -> None:
    body = load_json("alertmanager/am025_grouped_12_alerts_max5_truncated7_firing.json")
    body["status"] = "resolved"

    answer = api.post(AM, body)

    assert [a["status"] for a in answer.json()["accepted"]] == ["opened"] * 5


def test_the_flap_sequence_keeps_state_per_fingerprint(api: Api) -> None:
    notifications = load_jsonl("alertmanager/am025_sequence_all_13_notifications.jsonl")
    latest: dict[str, str] = {}
    incidents: dict[str, set[str]] = {}
    for notification in notifications:
        answer = api.post(AM, notification["body"])
        assert answer.status_code == 202, answer.text
        for alert, accepted in zip(
            notification["body"]["alerts"], answer.json()["accepted"], strict=True
        ):
            latest[alert["fingerprint"]] = alert["status"]
            incidents.setdefault(alert["fingerprint"], set()).add(
                accepted["incident_id"]
            )

    sent = sum(len(n["body"]["alerts"]) for n in notifications)
    rows = api.rows()
    assert rows["tms_incidents"] == len(latest) == 9
    assert rows["tms_alerts"] == sent
    assert all(len(ids) == 1 for ids in incidents.values())
    flapping = next(iter(incidents["968fa111720fac49"]))
    kinds = [e["kind"] for e in incident(api, flapping)["events"]]
    assert kinds == [
        "incident.opened",
        "alert.resolved",
        "alert.folded",
        "alert.resolved",
    ]
    assert set(latest.values()) == {"resolved"}


def test_old_alertmanager_body_without_truncated_alerts_is_accepted(api: Api) -> None:
    body = load_json(
        "alertmanager/wild_zulip_fixture_2020_no_truncatedAlerts_field.json"
    )

    answer = api.post(AM, body)

    assert answer.status_code == 202
    assert len(answer.json()["incident_ids"]) == 2


def test_grafana_contact_point_test_stores_nothing(api: Api) -> None:
    headers = api.auth(role="source")
    before = api.rows()
    for name in ("grafana_test_notification_quirk", "grafana_legacy_alerting_v7_test"):
        body = load_json(f"grafana/{name}.json")
        answer = api.client.post(GRAFANA, json=body, headers=headers)

        assert answer.status_code == 202
        assert answer.json()["test"] is True
    assert api.rows() == before


def test_grafana_mixed_group_opens_the_firing_alert_only(api: Api) -> None:
    answer = api.post(
        GRAFANA, load_json("grafana/grafana_v9_mixed_firing_and_resolved.json")
    )

    statuses = [a["status"] for a in answer.json()["accepted"]]
    assert statuses == ["unmatched", "unmatched", "opened"]
    assert api.rows()["tms_incidents"] == 1


def test_grafana_values_and_offsets_reach_the_alert_facts(api: Api) -> None:
    values = api.post(GRAFANA, load_json("grafana/grafana_v11_firing_values.json"))
    docs = api.post(
        GRAFANA, load_json("grafana/grafana_docs_example_two_firing_tz_offset.json")
    )

    alert = incident(api, values.json()["incident_ids"][0])["alerts"][0]
    assert isinstance(alert["facts"]["value"], float)
    starts = {
        incident(api, i)["alerts"][0]["starts_at"] for i in docs.json()["incident_ids"]
    }
    assert starts == {"2021-10-12T07:51:03.157076Z", "2021-10-12T07:56:03.157076Z"}


def test_a_retry_with_the_same_idempotency_key_returns_the_first_answer(
    api: Api,
) -> None:
    headers = {**api.auth(role="source"), "Idempotency-Key": "retry-1"}
    first = api.client.post("/v1/alerts", json=generic(), headers=headers)
    again = api.client.post("/v1/alerts", json=generic(), headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json()["accepted"][0]["status"] == "replayed"
    assert again.json()["incident_ids"] == first.json()["incident_ids"]
    assert (
        again.json()["accepted"][0]["alert_id"]
        == first.json()["accepted"][0]["alert_id"]
    )
    assert api.rows()["tms_alerts"] == 1


def test_an_idempotency_key_covers_every_alert_of_a_group(api: Api) -> None:
    body = load_json("alertmanager/am025_grouped_12_alerts_max5_truncated7_firing.json")
    headers = {**api.auth(role="source"), "Idempotency-Key": "group-1"}

    first = api.client.post(AM, json=body, headers=headers)
    again = api.client.post(AM, json=body, headers=headers)

    assert [a["status"] for a in again.json()["accepted"]] == ["replayed"] * 5
    assert again.json()["incident_ids"] == first.json()["incident_ids"]
    assert api.rows()["tms_alerts"] == 5


def test_an_idempotency_key_reused_for_another_alert_is_refused(api: Api) -> None:
    headers = {**api.auth(role="source"), "Idempotency-Key": "k"}
    first = api.client.post(
        "/v1/alerts", json=generic(fingerprint="a"), headers=headers
    )
    before = api.rows()

    other = api.client.post(
        "/v1/alerts", json=generic(fingerprint="b"), headers=headers
    )

    assert first.status_code == 202
    assert other.status_code == 409
    error = other.json()["error"]
    assert error["code"] == "E715"
    assert error["message"].startswith(
        "the Idempotency-Key 'k' was already used for another alert (fingerprint 'a'"
    )
    assert api.rows() == before


def test_an_empty_idempotency_key_is_refused_not_shared(api: Api) -> None:
    headers = {**api.auth(role="source"), "Idempotency-Key": ""}

    answer = api.client.post("/v1/alerts", json=generic(), headers=headers)

    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "E520"
    assert "idempotency-key" in error["field"]
    assert api.rows()["tms_alerts"] == 0


def test_a_single_alert_key_never_replays_an_alert_of_a_group(api: Api) -> None:
    body = load_json("alertmanager/am025_grouped_12_alerts_max5_truncated7_firing.json")
    single = {**api.auth(role="source"), "Idempotency-Key": "col#0"}
    api.client.post("/v1/alerts", json=generic(fingerprint="x"), headers=single)

    group = {**api.auth(role="source"), "Idempotency-Key": "col"}
    answer = api.client.post(AM, json=body, headers=group)

    assert answer.status_code == 202
    assert "replayed" not in [a["status"] for a in answer.json()["accepted"]]


def test_a_deploy_in_the_future_is_refused(api: Api) -> None:
    answer = api.post(
        "/v1/deploys",
        {"app": "checkout", "version": "9", "at": "2999-01-01T00:00:00Z"},
        role="source",
    )

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] in ("E502", "E508")
    assert api.rows()["tms_deploys"] == 0


def test_rejections_are_counted_under_a_bounded_source_label(api: Api) -> None:
    for n in range(3):
        api.post("/v1/alerts", {"kind": "nope", "source": f"src-{n}"}, role="source")

    metrics = api.client.get("/metrics").text

    assert "src-1" not in metrics
    assert (
        'incident_policy_alerts_rejected_total{code="E530",source="other"}' in metrics
    )


def test_deploys_are_recorded_and_listed(api: Api) -> None:
    posted = api.post(
        "/v1/deploys",
        {"app": "checkout", "version": "1.4.2", "previous_version": "1.4.1"},
        role="source",
    )
    listed = api.get("/v1/deploys", role="reviewer")

    assert posted.status_code == 201
    assert [(d["app"], d["version"]) for d in listed.json()] == [("checkout", "1.4.2")]


def test_a_source_severity_is_read_whatever_its_case(api: Api) -> None:
    answer = api.post("/v1/alerts", generic(severity="CRITICAL"), role="source")

    assert answer.json()["accepted"][0]["severity"] == "critical"
