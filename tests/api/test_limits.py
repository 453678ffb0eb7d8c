"""The body limits as an ASGI middleware: a trickled body is cut off in time."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from api.limits import BodyLimit


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, then answers 202 (as a route would)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def run(limit: BodyLimit, receive: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/alerts", "headers": []}
    asyncio.run(limit(scope, receive, send))
    return sent


def test_a_body_trickled_byte_by_byte_is_cut_off_at_the_timeout() -> None:
    async def trickle() -> dict[str, Any]:
        await asyncio.sleep(0.05)  # each part in time, the whole never
        return {"type": "http.request", "body": b"x", "more_body": True}

    started = time.monotonic()
    sent = run(BodyLimit(_app, limit=1 << 20, timeout_s=0.3), trickle)
    took = time.monotonic() - started

    assert sent[0]["status"] == 408
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "E408"
    assert "did not arrive within 0.3 s" in error["message"]
    assert took < 2.0


def test_a_body_sent_in_time_reaches_the_route() -> None:
    parts = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
    ]

    async def quick() -> dict[str, Any]:
        return parts.pop(0)

    sent = run(BodyLimit(_app, limit=1 << 20, timeout_s=0.3), quick)

    assert sent[0]["status"] == 202
