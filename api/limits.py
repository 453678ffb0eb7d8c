"""Refuse oversized or stalled request bodies before reading them into memory.

A pure ASGI middleware: it answers 413 at once when ``Content-Length`` is over
the limit, and otherwise counts the bytes as they stream in: when a chunked
body passes the limit it answers 413 itself and tells the app the client
went away, dropping whatever the app answers then. A body that has not
wholly arrived within the timeout (a client that stalled, or one trickling
bytes to hold connections open) is answered 408 the same way. Nothing is
stored: the route never sees the body.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import body


class _Counted:
    def __init__(self) -> None:
        self.size = 0
        self.complete = False
        self.started = False
        self.refused = False


def _error(code: str, message: str) -> bytes:
    return json.dumps(body(code, message)).encode()


def _too_large(limit: int, size: int | None) -> tuple[int, bytes]:
    said = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    message = (
        f"request body is {said}; the limit is {limit} bytes "
        "(INCIDENT_POLICY_MAX_BODY_BYTES): split the batch or send fewer alerts"
    )
    return 413, _error("E413", message)


def _too_slow(timeout_s: float) -> tuple[int, bytes]:
    message = (
        f"the request body did not arrive within {timeout_s:g} s "
        "(INCIDENT_POLICY_BODY_TIMEOUT_S); nothing was stored: send the whole "
        "body at once"
    )
    return 408, _error("E408", message)


def _nul_in_url() -> tuple[int, bytes]:
    message = "the URL holds a NUL character (%00); send it without one"
    return 422, _error("E506", message)


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            # PostgreSQL cannot compare with, nor store, a NUL character.
            await _refuse(send, *_nul_in_url())
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _refuse(send, *_too_large(self.limit, int(declared)))
            return
        state = _Counted()
        # The whole body must arrive in time, however it is trickled.
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def refuse(answer: tuple[int, bytes]) -> Message:
            state.refused = True
            if not state.started:
                await _refuse(send, *answer)
            # The app sees a client that went away and stores nothing.
            return {"type": "http.disconnect"}

        async def limited() -> Message:
            if state.refused:
                return {"type": "http.disconnect"}
            if state.complete:
                return await receive()  # after the body: only a disconnect
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                return await refuse(_too_slow(self.timeout_s))
            if message["type"] == "http.request":
                state.size += len(message.get("body", b""))
                state.complete = not message.get("more_body", False)
                if state.size > self.limit:
                    return await refuse(_too_large(self.limit, None))
            return message

        async def tracking(message: Message) -> None:
            if state.refused:
                return  # the 413 is already sent; the app's answer is dropped
            if message["type"] == "http.response.start":
                state.started = True
            await send(message)

        await self.app(scope, limited, tracking)


async def _refuse(send: Send, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
