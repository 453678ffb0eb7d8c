"""The FastAPI application: routes under ``/v1``, errors, limits, console.

``create_app(settings, services=...)`` builds one application around the
services ``api.service`` assembled (or a test put together): there is no
module-level state, so several apps can live in one process. The app's
lifespan starts and stops the intake batcher; the flow's threads belong to
``api.service.Service``. Bodies over ``Settings.max_body_bytes`` are refused
with 413 before they are read, every error uses ``api.errors``' shape, and
every request that fails is logged as ``http.request`` with its status.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.console import routes as console
from api.deps import Services
from api.limits import BodyLimit
from api.metrics import store_registry
from api.routes import (
    alerts,
    deploys,
    incidents,
    keys,
    messages,
    ops,
    policy,
    proposals,
    recommendations,
)
from engine.settings import Settings

log = logging.getLogger(__name__)

ROUTERS = (
    alerts.router,
    deploys.router,
    incidents.router,
    recommendations.router,
    messages.router,
    proposals.router,
    policy.router,
    keys.router,
    ops.router,
    console.router,
)

DESCRIPTION = """Rules-engine driven incident policy service.

Send `Authorization: Bearer KEY` on every `/v1` route; keys have one role:
`source` (post alerts and deploys), `reviewer` (read, approve, resolve) or
`admin` (policy and keys, and everything a reviewer does). Errors answer
`{"error": {"code", "message", "field"?, "problems"?}}`.
"""


def _without_builtin_telemetry() -> dict[str, Any]:
    """FastAPI's OpenTelemetry hooks, off: ``/metrics`` is ours, and the hooks
    ask the global providers on every request (newer FastAPI only)."""
    if "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(settings: Settings, *, services: Services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.intake.start()
        try:
            yield
        finally:
            services.intake.stop()

    app = FastAPI(
        title="incident-policy",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Starlette's slash redirect builds its URL from the Host header a
        # client sent: answer 404 in the error shape instead.
        redirect_slashes=False,
        **_without_builtin_telemetry(),
    )
    app.state.services = services
    app.state.store_metrics = store_registry(services)
    for router in ROUTERS:
        app.include_router(router)
    errors.install(app)
    app.add_exception_handler(console.SignIn, console.sign_in_redirect)
    app.add_middleware(
        BodyLimit, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    # Outermost, so it logs the status the client got (413 and 408 included).
    app.add_middleware(RequestLog)
    return app


class RequestLog:
    """Logs each failed request (status >= 400) with its duration."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if status >= 400:
                log.info(
                    "http.request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
