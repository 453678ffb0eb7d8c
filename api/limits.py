"""Refuse oversized request bodies before reading them into memory.

A pure ASGI middleware: it answers 413 at once when ``Content-Length`` is over
the limit, and otherwise counts the bytes as they stream in, cutting the
request off with 413 when a chunked body passes the limit. Nothing is stored:
the route never sees the body.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


def _answer(limit: int, size: int | None) -> bytes:
    said = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    message = (
        f"request body is {said}; the limit is {limit} bytes "
        "(INCIDENT_POLICY_MAX_BODY_BYTES): split the batch or send fewer alerts"
    )
    return json.dumps({"error": {"code": "E413", "message": message}}).encode()


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, int(declared))
            return
        counted = 0
        started = False

        async def limited() -> Message:
            nonlocal counted
            message = await receive()
            if message["type"] == "http.request":
                counted += len(message.get("body", b""))
                if counted > self.limit:
                    raise BodyTooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, None)

    async def _refuse(self, send: Send, size: int | None) -> None:
        payload = _answer(self.limit, size)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
