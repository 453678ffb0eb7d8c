"""Health, readiness and the Prometheus metrics."""

from __future__ import annotations

import os

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Api


def samples(api: Api) -> dict[str, list[tuple[dict[str, str], float]]]:
    answer = api.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(
    found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    return sum(
        v
        for got, v in found.get(name, [])
        if all(got.get(k) == w for k, w in labels.items())
    )


def test_health_and_readiness(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "intake": "ok", "policy": "ok"}


def test_metrics_count_alerts_incidents_actions_queue_and_policy(api: Api) -> None:
    before = samples(api)
    api.post("/v1/alerts", {"kind": "threshold_exceeded", "name": "D"}, role="source")
    queued = samples(api)
    api.drain()
    api.post("/v1/alerts", {"kind": "nonsense"}, role="source")
    after = samples(api)

    received = "incident_policy_alerts_received_total"
    assert (
        value(after, received, source="api")
        == value(before, received, source="api") + 1
    )
    assert value(queued, "incident_policy_queue_depth", kind="flow") == 1
    assert value(after, "incident_policy_queue_depth", kind="flow") == 0
    assert (
        value(
            after,
            "incident_policy_incidents",
            type="disk_pressure",
            status="awaiting_approval",
        )
        == 1
    )
    assert value(after, "incident_policy_actions_total", action="clear_temp") > value(
        before, "incident_policy_actions_total", action="clear_temp"
    )
    assert (
        value(after, "incident_policy_rule_evaluation_seconds_count", stage="classify")
        > 0
    )
    assert value(after, "incident_policy_alerts_rejected_total", code="E530") >= 1
    info = after["incident_policy_policy_info"][0][0]
    assert api.service.holder.current.version.startswith(info["version"])


def test_metrics_report_a_failed_reload(api: Api) -> None:
    (api.rules_dir / "intake.yaml").write_text("defaults: [\n")
    api.post("/v1/policy/reload", None, org="default")

    found = samples(api)

    assert value(found, "incident_policy_policy_last_reload_ok") == 0
    assert found["incident_policy_policy_info"][0][0]["ok"] == "false"


def test_a_deleted_database_file_makes_the_service_unready_and_refuse_alerts(
    api: Api,
) -> None:
    key = api.auth(role="source")
    path = api.service.database.url.database
    assert path
    for leftover in (path, f"{path}-wal", f"{path}-shm"):
        if os.path.exists(leftover):
            os.unlink(leftover)

    ready = api.client.get("/readyz")
    posted = api.client.post(
        "/v1/alerts", json={"kind": "manual", "name": "x"}, headers=key
    )

    assert ready.status_code == 503
    assert "was removed or replaced" in ready.json()["checks"]["database"]
    assert posted.status_code == 503
    assert posted.json()["error"]["code"] == "E701"
