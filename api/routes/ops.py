"""Operations: liveness, readiness and Prometheus metrics (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import ServicesDep
from api.metrics import exposition
from api.schemas import HealthOut, ReadyOut
from engine.errors import StoreError

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> HealthOut:
    """The process is up and answering."""
    return HealthOut(status="ok")


@router.get("/readyz", responses={503: {"model": ReadyOut}})
def readyz(services: ServicesDep) -> ReadyOut:
    """The database answers and intake is running: alerts can be accepted."""
    checks = {"database": "ok", "intake": "ok", "policy": "ok"}
    try:
        with services.database.readers() as session:
            session.execute(text("SELECT 1"))
        services.database.check_writable()
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    except StoreError as exc:
        checks["database"] = exc.message
    if not services.intake.running:
        checks["intake"] = "not running"
    if not services.policy.status.ok:
        checks["policy"] = "last reload failed; the last good policy runs"
    ready = checks["database"] == "ok" and checks["intake"] == "ok"
    out = ReadyOut(status="ready" if ready else "not_ready", checks=checks)
    if not ready:
        return JSONResponse(out.model_dump(), status_code=503)  # type: ignore[return-value]
    return out


# Load balancers probe with HEAD; the OpenAPI document lists the GETs.
router.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """The service's own metrics in the Prometheus text format."""
    payload = exposition(request.app.state.store_metrics)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
