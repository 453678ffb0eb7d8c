"""Refuse oversized request bodies before reading them into memory.

A pure ASGI middleware: it answers 413 at once when ``Content-Length`` is over
the limit, and otherwise counts the bytes as they stream in: when a chunked
body passes the limit it answers 413 itself and tells the app the client
went away, dropping whatever the app answers then. Nothing is stored: the
route never sees the body.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _Counted:
    def __init__(self) -> None:
        self.size = 0
        self.started = False
        self.refused = False


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
        state = _Counted()

        async def limited() -> Message:
            if state.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state.size += len(message.get("body", b""))
                if state.size > self.limit:
                    state.refused = True
                    if not state.started:
                        await self._refuse(send, None)
                    # The app sees a client that went away and stores nothing.
                    return {"type": "http.disconnect"}
            return message

        async def tracking(message: Message) -> None:
            if state.refused:
                return  # the 413 is already sent; the app's answer is dropped
            if message["type"] == "http.response.start":
                state.started = True
            await send(message)

        await self.app(scope, limited, tracking)

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
