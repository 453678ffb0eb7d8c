"""Recommendations: the next steps waiting for a person, and their decisions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from api.deps import Reader, ReviewerCaller, ServicesDep
from api.schemas import DecisionIn, RecommendationOut
from engine.flow.approvals import decide_on_recommendation
from engine.store.models import Recommendation, RecommendationStatus

router = APIRouter(prefix="/v1", tags=["approvals"])


@router.get("/recommendations")
def list_recommendations(
    caller: ReviewerCaller,
    session: Reader,
    status: Annotated[RecommendationStatus, Query()] = RecommendationStatus.PENDING,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[RecommendationOut]:
    """The organization's recommendations with one status, oldest first."""
    rows = session.scalars(
        select(Recommendation)
        .where(
            Recommendation.org_id == caller.org_id,
            Recommendation.status == status.value,
        )
        .order_by(Recommendation.created_at, Recommendation.id)
        .limit(limit)
    )
    return [RecommendationOut.model_validate(r) for r in rows]


@router.post("/recommendations/{recommendation_id}/approve")
def approve_recommendation(
    recommendation_id: str,
    body: DecisionIn,
    caller: ReviewerCaller,
    services: ServicesDep,
) -> RecommendationOut:
    """Approve a recommendation; its action runs after its guards pass again."""
    return _decide(recommendation_id, body, caller, services, approve=True)


@router.post("/recommendations/{recommendation_id}/reject")
def reject_recommendation(
    recommendation_id: str,
    body: DecisionIn,
    caller: ReviewerCaller,
    services: ServicesDep,
) -> RecommendationOut:
    """Reject a recommendation; nothing runs."""
    return _decide(recommendation_id, body, caller, services, approve=False)


def _decide(
    recommendation_id: str,
    body: DecisionIn,
    caller: ReviewerCaller,
    services: ServicesDep,
    *,
    approve: bool,
) -> RecommendationOut:
    with services.database.sessions.begin() as session:
        row = decide_on_recommendation(
            session,
            caller.org_id,
            recommendation_id,
            approve=approve,
            actor=caller.actor,
            comment=body.comment,
            ids=services.runtime.ids,
            now=services.runtime.clock.now(),
        )
        out = RecommendationOut.model_validate(row)
    services.wake.set()
    return out
