"""Intake under concurrency, over real HTTP to uvicorn on a loopback port.

Many identical alerts at once must open exactly one incident and keep every
alert, on SQLite and on PostgreSQL, also when two service processes' worth
of apps share the database. The batcher's own guarantees (one failing
submission does not sink the others of its batch) are tested directly.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.intake import Submission
from engine.errors import StoreError
from engine.sources.alert import IncomingAlert
from engine.store.orgs import find_org
from tests.api.conftest import Api, running_api

PARALLEL = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(api: Api) -> Iterator[str]:
    """The api's services behind a real uvicorn on a free loopback port."""
    app = create_app(api.service.settings, services=api.service.services)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def storm(
    urls: list[str], key: str, count: int, body: dict[str, Any]
) -> list[Any]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        posts = [
            client.post(f"{urls[i % len(urls)]}/v1/alerts", json=body, headers=headers)
            for i in range(count)
        ]
        return await asyncio.gather(*posts)


def assert_one_incident(api: Api, answers: list[Any], count: int) -> None:
    assert [a.status_code for a in answers] == [202] * count
    incidents = {a.json()["incident_ids"][0] for a in answers}
    statuses = sorted(a.json()["accepted"][0]["status"] for a in answers)
    rows = api.rows()
    assert len(incidents) == 1
    assert statuses == ["folded"] * (count - 1) + ["opened"]
    assert (rows["tms_incidents"], rows["tms_alerts"]) == (1, count)
    detail = api.get(f"/v1/incidents/{incidents.pop()}", role="reviewer").json()
    assert detail["incident"]["alert_count"] == count


def test_parallel_identical_alerts_open_exactly_one_incident(
    tmp_path: Path, db_url: str
) -> None:
    body = {"kind": "threshold_exceeded", "name": "DiskFull", "fingerprint": "storm"}
    with running_api(tmp_path, db_url) as api, served(api) as url:
        answers = asyncio.run(storm([url], api.key(role="source"), PARALLEL, body))

        assert_one_incident(api, answers, PARALLEL)


def test_two_services_on_one_database_still_open_one_incident(
    tmp_path: Path, db_url: str
) -> None:
    body = {"kind": "threshold_exceeded", "name": "DiskFull", "fingerprint": "twin"}
    with (
        running_api(tmp_path / "one", db_url) as one,
        running_api(tmp_path / "two", db_url) as two,
        served(one) as first,
        served(two) as second,
    ):
        key = one.key(role="source")
        answers = asyncio.run(storm([first, second], key, PARALLEL, body))

        assert_one_incident(one, answers, PARALLEL)


def alert(name: str) -> IncomingAlert:
    return IncomingAlert(
        source="api",
        kind="threshold_exceeded",
        name=name,
        status="firing",
        fingerprint=name,
    )


def test_a_failing_submission_does_not_sink_the_rest_of_its_batch(api: Api) -> None:
    api.key()  # makes the organization
    with api.service.database.readers() as session:
        org = find_org(session, "acme")
        assert org is not None
    good = [Submission(org.id, [alert(f"good-{n}")]) for n in range(3)]
    bad = Submission("org_does_not_exist", [alert("orphan")])

    api.service.services.intake.commit_batch([good[0], bad, good[1], good[2]])

    assert [s.future.result()[0].status for s in good] == ["opened"] * 3
    with pytest.raises(StoreError) as refused:
        bad.future.result()
    # The store refuses it (E708 after its conflict retries, or E731 when
    # the commit fails): either way the sender is told to post again.
    assert "post it again" in refused.value.message
    assert api.rows()["tms_alerts"] == 3


def test_a_request_with_several_alerts_is_all_or_nothing(api: Api) -> None:
    body: dict[str, Any] = {
        "version": "4",
        "alerts": [
            {"status": "firing", "labels": {"alertname": "One"}, "fingerprint": "a1"},
            {"status": "firing", "labels": {"alertname": "Two"}, "fingerprint": "a2"},
            {"status": "later", "labels": {"alertname": "Bad"}, "fingerprint": "a3"},
        ],
    }
    api.key(role="source")
    before = api.rows()

    answer = api.post("/v1/alerts/alertmanager", body, role="source")

    assert answer.status_code == 422
    assert api.rows() == before
