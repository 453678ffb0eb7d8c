"""Incidents: the list with filters, one incident in full, resolve, replay."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.deps import Caller, Reader, ReviewerCaller, ServicesDep
from api.replay import replay
from api.schemas import (
    ActionOut,
    AlertOut,
    ApprovalOut,
    BriefOut,
    EventOut,
    ImpactOut,
    IncidentDetailOut,
    IncidentOut,
    IncidentPageOut,
    MessageOut,
    ProposalOut,
    RecommendationOut,
    ReplayIn,
    ReplayOut,
    ResolveIn,
    ReviewOut,
    RuleMatchOut,
    SnapshotOut,
)
from engine.errors import InputError, Location
from engine.flow import learning
from engine.policy.loader import load
from engine.store.incidents import (
    IncidentFilter,
    IncidentView,
    PageRequest,
    list_incidents,
    load_incident,
)
from engine.store.models import Approval, IncidentStatus, Proposal, Role, Severity

router = APIRouter(prefix="/v1", tags=["incidents"])


@router.get("/incidents")
def get_incidents(
    caller: ReviewerCaller,
    session: Reader,
    status: Annotated[list[IncidentStatus], Query()] = [],  # noqa: B006
    type: Annotated[list[str], Query(max_length=64)] = [],  # noqa: B006
    severity: Annotated[list[Severity], Query()] = [],  # noqa: B006
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    q: Annotated[str, Query(max_length=200, description="text in the title")] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=200)] = None,
) -> IncidentPageOut:
    """List the organization's incidents, newest first, filtered and paged."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InputError(
                f"{name} has no time zone; add Z or an offset such as +00:00",
                code="E503",
                location=Location(field=name),
            )
    filters = IncidentFilter(
        statuses=tuple(s.value for s in status),
        types=tuple(type),
        severities=tuple(s.value for s in severity),
        since=since,
        until=until,
        text=q,
    )
    page = list_incidents(session, caller.org_id, filters, PageRequest(limit, after))
    return IncidentPageOut(
        items=[IncidentOut.model_validate(i) for i in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/incidents/{incident_id}")
def get_incident(
    incident_id: str,
    caller: ReviewerCaller,
    session: Reader,
    snapshots: Annotated[bool, Query(description="include snapshot facts")] = True,
) -> IncidentDetailOut:
    """One incident with its timeline, snapshots, actions, matches and more."""
    view = load_incident(session, caller.org_id, incident_id, with_snapshots=snapshots)
    return detail(session, caller.org_id, view)


def detail(session: Session, org_id: str, view: IncidentView) -> IncidentDetailOut:
    proposals = list(
        session.scalars(
            select(Proposal)
            .where(Proposal.org_id == org_id, Proposal.incident_id == view.incident.id)
            .order_by(Proposal.created_at, Proposal.id)
        )
    )
    subjects = [
        *(r.id for r in view.recommendations),
        *(m.id for m in view.messages),
        *(p.id for p in proposals),
    ]
    approvals = list(
        session.scalars(
            select(Approval)
            .where(Approval.org_id == org_id, or_(Approval.subject_id.in_(subjects)))
            .order_by(Approval.at, Approval.id)
        )
    )
    return IncidentDetailOut(
        incident=IncidentOut.model_validate(view.incident),
        events=[EventOut.model_validate(e) for e in view.events],
        alerts=[AlertOut.model_validate(a) for a in view.alerts],
        snapshots=[SnapshotOut.model_validate(s) for s in view.snapshots],
        actions=[ActionOut.model_validate(a) for a in view.actions],
        rule_matches=[RuleMatchOut.model_validate(m) for m in view.rule_matches],
        brief=BriefOut.model_validate(view.briefs[-1]) if view.briefs else None,
        impact=ImpactOut.model_validate(view.impacts[-1]) if view.impacts else None,
        messages=[MessageOut.model_validate(m) for m in view.messages],
        recommendations=[
            RecommendationOut.model_validate(r) for r in view.recommendations
        ],
        review=ReviewOut.model_validate(view.reviews[-1]) if view.reviews else None,
        proposals=[ProposalOut.model_validate(p) for p in proposals],
        approvals=[ApprovalOut.model_validate(a) for a in approvals],
    )


@router.post("/incidents/{incident_id}/resolve")
def resolve_incident(
    incident_id: str, body: ResolveIn, caller: ReviewerCaller, services: ServicesDep
) -> IncidentOut:
    """Resolve the incident with its root cause; the learning review follows."""
    with services.database.sessions.begin() as session:
        incident = learning.resolve(
            session,
            caller.org_id,
            incident_id,
            by=caller.actor,
            root_cause=body.root_cause,
            category=body.category,
            ids=services.runtime.ids,
            now=services.runtime.clock.now(),
        )
        out = IncidentOut.model_validate(incident)
    services.wake.set()
    return out


@router.post("/incidents/{incident_id}/replay")
def replay_incident(
    incident_id: str,
    body: ReplayIn,
    caller: ReviewerCaller,
    services: ServicesDep,
    session: Reader,
) -> ReplayOut:
    """Re-decide the incident's stored facts with the current or a candidate policy."""
    policy = services.policy.current
    if body.rules_dir is not None:
        _require_admin(caller)
        services.require_operator(caller, "replaying against a directory on the server")
        policy = services.compile(load(Path(body.rules_dir)))
    now = services.runtime.clock.now()
    return replay(session, policy, caller.org_id, incident_id, now)


def _require_admin(caller: Caller) -> None:
    if caller.role != Role.ADMIN.value:
        raise HTTPException(
            403,
            "replaying against a rules directory on the server needs an admin "
            "key; reviewers replay against the running policy",
        )
