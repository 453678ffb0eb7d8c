"""Log lines: one JSON object each, a dotted event name, never an API key."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from api.logs import JsonFormatter
from tests.api.conftest import Api


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_no_key_reaches_the_logs_while_keys_are_used(
    api: Api, captured: io.StringIO
) -> None:
    key = api.key(role="source")
    headers = {"Authorization": f"Bearer {key}"}
    api.client.post("/v1/alerts", json={"kind": "manual"}, headers=headers)
    api.client.post("/v1/alerts", json={"kind": "bogus"}, headers=headers)
    api.client.get("/v1/incidents", headers={"Authorization": f"Bearer {key}x"})
    api.drain()
    logging.getLogger("test").info(
        "auth.seen", extra={"api_key": key, "note": f"Bearer {key}"}
    )

    lines = captured.getvalue().splitlines()

    assert len(lines) > 5
    assert all(key not in line and key[:20] not in line for line in lines)
    entries = [json.loads(line) for line in lines]
    ours = [e for e in entries if e["logger"].startswith(("api", "engine"))]
    assert all("." in e["event"] and " " not in e["event"] for e in ours)
    seen = next(e for e in entries if e["event"] == "auth.seen")
    assert seen["api_key"] == "[redacted]"
    assert seen["note"] == "Bearer [redacted]"
    failed = next(e for e in entries if e["event"] == "http.request")
    assert failed["status"] in (401, 422)
