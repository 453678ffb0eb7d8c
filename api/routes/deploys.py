"""Deploy events: CI reports each deploy, rollback or configuration change.

The bad-deploy rules read recent deploys from the snapshot; the service's
snapshot source includes the deploys stored here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Reader, ReviewerCaller, ServicesDep, SourceCaller
from api.schemas import DeployIn, DeployOut
from engine.errors import InputError, Location
from engine.sources.alert import in_range
from engine.store import deploys

FUTURE_SLACK = timedelta(minutes=5)

router = APIRouter(prefix="/v1", tags=["deploys"])


@router.post("/deploys", status_code=201)
def post_deploy(
    body: DeployIn, caller: SourceCaller, services: ServicesDep
) -> DeployOut:
    """Record a deploy, rollback or configuration change."""
    now = services.runtime.clock.now()
    if body.at is not None and body.at.tzinfo is None:
        raise InputError(
            "at has no time zone; add Z or an offset such as +00:00",
            code="E503",
            location=Location(field="at"),
        )
    if body.at is not None:
        in_range(body.at, "at")
        if body.at > now + FUTURE_SLACK:
            # A deploy "in the future" would look recent to the bad-deploy
            # rules until that date.
            raise InputError(
                f"at: {body.at.isoformat()} is in the future; send the time the "
                "deploy happened (clocks may differ by up to 5 minutes)",
                code="E508",
                location=Location(field="at"),
            )
    record = deploys.DeployIn(
        app=body.app,
        version=body.version,
        at=body.at or now,
        source=body.source,
        kind=body.kind,
        previous_version=body.previous_version,
    )
    with services.database.sessions.begin() as session:
        row = deploys.record_deploy(
            session, record, ids=services.runtime.ids, org_id=caller.org_id
        )
        return DeployOut.model_validate(row)


@router.get("/deploys")
def list_deploys(
    caller: ReviewerCaller,
    services: ServicesDep,
    session: Reader,
    hours: Annotated[float, Query(gt=0, le=24 * 30)] = 24.0,
    app: Annotated[str | None, Query(max_length=128)] = None,
) -> list[DeployOut]:
    """The organization's deploys of the last hours, newest first."""
    since = services.runtime.clock.now() - timedelta(hours=hours)
    rows = deploys.recent_deploys(session, caller.org_id, since, app)
    return [DeployOut.model_validate(r) for r in rows]
