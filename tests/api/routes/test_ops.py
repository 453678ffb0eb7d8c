"""Health, readiness and the Prometheus metrics."""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.errors import StoreError
from engine.flow.runner import Worker
from tests.api.conftest import Api
from tests.api.routes.test_incidents import detail, open_incident


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


def make_unwritable(path: str) -> None:
    """Swap every descriptor this process has on ``path`` for a read-only
    one, as when the file turned immutable under the open database."""
    fds = Path("/proc/self/fd")
    for fd in fds.iterdir():
        with suppress(OSError):
            if os.readlink(fd) == path:
                read_only = os.open(path, os.O_RDONLY)
                os.dup2(read_only, int(fd.name))
                os.close(read_only)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_wal_file_that_refuses_writes_makes_the_service_unready(
    api: Api,
) -> None:
    assert api.client.get("/readyz").status_code == 200
    make_unwritable(f"{api.service.database.url.database}-wal")

    ready = api.client.get("/readyz")

    assert ready.status_code == 503
    assert "refuses writes" in ready.json()["checks"]["database"]


def moved_database(api: Api) -> tuple[Path, Path]:
    """Move the database file away while the service runs: where it was, and
    where it went."""
    path = Path(api.service.database.url.database or "")
    moved = path.with_name("moved.sqlite3")
    path.rename(moved)
    return path, moved


def test_a_moved_database_file_makes_write_routes_answer_503(api: Api) -> None:
    incident_id = open_incident(api)
    api.drain()
    keys = api.get("/v1/keys").json()  # also caches the caller's key
    path, moved = moved_database(api)

    made = api.post("/v1/keys", {"role": "source", "name": "ci"})
    resolved = api.post(f"/v1/incidents/{incident_id}/resolve", {"root_cause": "x"})

    for answer in (made, resolved):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "E701"
        assert "was removed or replaced" in answer.json()["error"]["message"]
    assert not path.exists()
    moved.rename(path)
    assert api.get("/v1/keys").json() == keys
    assert detail(api, incident_id)["incident"]["status"] != "resolved"


def test_the_flow_worker_refuses_a_moved_database_file(api: Api) -> None:
    open_incident(api)
    path, moved = moved_database(api)

    with pytest.raises(StoreError) as caught:
        Worker(api.service.flow_deps(), "test-worker").run_once()

    assert caught.value.code == "E701"
    assert not path.exists()
    moved.rename(path)
    assert api.drain() > 0
