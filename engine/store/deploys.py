"""Deploys, rollbacks and configuration changes, as CI or the API report them.

The snapshot reads recent deploys as facts ("deployed 4 minutes before the
alert"), so the query is by organization, optionally app, and time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.runtime import IdGenerator
from engine.store.models import Deploy
from engine.store.types import as_utc


@dataclass(frozen=True, slots=True)
class DeployIn:
    app: str
    version: str
    at: datetime
    source: str  # ci, api, deploy-log
    kind: str = "deploy"  # deploy, rollback, config
    previous_version: str | None = None


def record_deploy(
    session: Session, deploy: DeployIn, *, ids: IdGenerator, org_id: str
) -> Deploy:
    row = Deploy(
        id=ids.new("dep"),
        org_id=org_id,
        app=deploy.app,
        version=deploy.version,
        previous_version=deploy.previous_version,
        kind=deploy.kind,
        at=as_utc(deploy.at),
        source=deploy.source,
    )
    session.add(row)
    session.flush()
    return row


def recent_deploys(
    session: Session, org_id: str, since: datetime, app: str | None = None
) -> list[Deploy]:
    """Deploys at or after ``since``, newest first."""
    query = select(Deploy).where(Deploy.org_id == org_id, Deploy.at >= as_utc(since))
    if app is not None:
        query = query.where(Deploy.app == app)
    return list(session.scalars(query.order_by(Deploy.at.desc(), Deploy.id.desc())))
