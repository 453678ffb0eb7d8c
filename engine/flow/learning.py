"""Closing an incident: resolution, undo, the learning review, proposals.

``resolve`` is what a human does: the incident is marked resolved with a
root cause (or none), the durations are recorded, and a ``learn`` job is
queued in the same transaction. ``close_incident`` is that job: it undoes
the actions that can be undone (a rate limit is lifted, paused jobs are
resumed), derives the review facts from the timeline and the organization's
history, runs decision 4 and the learning rules, and stores the review and
its threshold proposals, each pending a human approval.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine.actions.base import ActionRequest, Outcome
from engine.errors import ConflictError, PolicyError
from engine.flow import audit, learn
from engine.flow.outcomes import Impact as ImpactOutcome
from engine.flow.outcomes import Review
from engine.policy import proposals as threshold_edits
from engine.policy.policy import Policy
from engine.runtime import IdGenerator
from engine.store import actions as action_rows
from engine.store import jobs
from engine.store.events import append_event, timeline
from engine.store.incidents import get_incident, resolve_incident
from engine.store.messages import MessageStatus
from engine.store.models import (
    ActionStatus,
    Alert,
    Approval,
    CustomerMessage,
    Impact,
    Incident,
    IncidentAction,
    IncidentEvent,
    IncidentStatus,
    LearningReview,
    Recommendation,
    RecommendationStatus,
)
from engine.store.proposals import ProposalIn, add_proposal

if TYPE_CHECKING:
    from engine.flow.runner import Worker
    from engine.store.models import Job

log = logging.getLogger(__name__)

HISTORY_LIMIT = 50


def resolve_minutes(session: Session, org_id: str, type_: str) -> list[float]:
    """Time to resolve of the organization's past incidents of one type."""
    rows = session.execute(
        select(Incident.created_at, Incident.resolved_at)
        .where(
            Incident.org_id == org_id,
            Incident.type == type_,
            Incident.status == IncidentStatus.RESOLVED.value,
            Incident.resolved_at.is_not(None),
        )
        .order_by(Incident.resolved_at.desc())
        .limit(HISTORY_LIMIT)
    ).all()
    return [(end - start).total_seconds() / 60 for start, end in rows if end]


def stored_impact(row: Impact | None) -> ImpactOutcome:
    content = dict(row.content) if row else {}
    return ImpactOutcome(
        level=str(content.get("level", "none")),
        customer_facing=content.get("customer_facing"),
        customers_affected=content.get("customers_affected"),
        features=tuple(content.get("features", ())),
        downtime_minutes=float(content.get("downtime_minutes", 60.0)),
        downtime_basis=str(content.get("downtime_basis", "")),
        rule_id=content.get("rule_id"),
        evaluation=None,  # type: ignore[arg-type]
    )


def resolve(
    session: Session,
    org_id: str,
    incident_id: str,
    *,
    by: str,
    root_cause: str | None,
    category: str | None,
    ids: IdGenerator,
    now: datetime,
) -> Incident:
    """A human resolves the incident; the learning job is queued with it."""
    current = get_incident(session, org_id, incident_id, for_update=True)
    if current.status == IncidentStatus.RESOLVED.value:
        raise ConflictError(
            f"incident {incident_id} is already resolved (by {current.resolved_by}); "
            "a resolution cannot be changed",
            code="E721",
        )
    durations = _durations(current, now)
    closed = _close_pending(session, org_id, incident_id, now)
    current.stage = None  # a round still running stops at its next checkpoint
    resolve_incident(
        session,
        org_id,
        incident_id,
        by=by,
        root_cause=root_cause,
        now=now,
        data={"root_cause": root_cause, "category": category, **durations, **closed},
    )
    jobs.enqueue(
        session,
        ids=ids,
        org_id=org_id,
        kind="learn",
        now=now,
        incident_id=incident_id,
        payload={"root_cause": root_cause, "category": category, "resolved_by": by},
    )
    return current


def _close_pending(
    session: Session, org_id: str, incident_id: str, now: datetime
) -> dict[str, int]:
    """Nothing is approved on a resolved incident: pending steps expire."""
    recommendations = session.execute(
        update(Recommendation)
        .where(
            Recommendation.org_id == org_id,
            Recommendation.incident_id == incident_id,
            Recommendation.status == RecommendationStatus.PENDING.value,
        )
        .values(status=RecommendationStatus.EXPIRED.value, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    drafts = session.execute(
        update(CustomerMessage)
        .where(
            CustomerMessage.org_id == org_id,
            CustomerMessage.incident_id == incident_id,
            CustomerMessage.status == MessageStatus.DRAFT.value,
        )
        .values(status=MessageStatus.EXPIRED.value, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    return {
        "recommendations_expired": int(recommendations.rowcount),  # type: ignore[attr-defined]
        "drafts_expired": int(drafts.rowcount),  # type: ignore[attr-defined]
    }


def _durations(incident: Incident, now: datetime) -> dict[str, float | None]:
    def minutes(start: datetime | None, end: datetime | None) -> float | None:
        if start is None or end is None:
            return None
        return round((end - start).total_seconds() / 60, 1)

    return {
        "time_to_detect_minutes": minutes(
            incident.first_signal_at, incident.created_at
        ),
        "time_to_stabilize_minutes": minutes(
            incident.created_at, incident.stabilized_at
        ),
        "time_to_resolve_minutes": minutes(incident.created_at, now),
    }


def close_incident(worker: Worker, job: Job) -> None:
    policy = worker.deps.policy()
    undo_actions(worker, policy, job.incident_id or "")
    with worker.deps.sessions.begin() as session:
        incident = session.get_one(Incident, job.incident_id)
        if _reviewed(session, incident.org_id, incident.id):
            return
        review = build_review(session, policy, incident, dict(job.payload), worker.now)
        _store_review(session, worker, policy, incident, review)


def _reviewed(session: Session, org_id: str, incident_id: str) -> bool:
    query = select(func.count()).where(
        LearningReview.org_id == org_id, LearningReview.incident_id == incident_id
    )
    return bool(session.scalar(query))


def undo_actions(worker: Worker, policy: Policy, incident_id: str) -> None:
    """Reverse what can be reversed, once per action (its own run key)."""
    with worker.deps.sessions() as session:
        rows = session.scalars(
            select(IncidentAction).where(
                IncidentAction.incident_id == incident_id,
                IncidentAction.status == ActionStatus.SUCCEEDED.value,
                IncidentAction.undone_at.is_(None),
                IncidentAction.undo_of.is_(None),
            )
        ).all()
        todo = [
            (r.id, r.action, r.target, dict(r.undo_data or {}), r.org_id) for r in rows
        ]
    for action_id, action, target, data, org_id in todo:
        spec = policy.source.catalog.actions.get(action)
        if spec is None or not spec.undo:
            continue
        _undo_one(worker, spec, action_id, action, target, data, org_id, incident_id)


def _undo_one(
    worker: Worker,
    spec: Any,
    action_id: str,
    action: str,
    target: str,
    data: dict[str, Any],
    org_id: str,
    incident_id: str,
) -> None:
    clock = worker.deps.runtime.clock
    with worker.deps.sessions.begin() as session:
        planned = action_rows.plan_action(
            session,
            action_rows.ActionPlan(
                run_key=f"{action_id}:undo",
                action=action,
                target=target,
                executor=spec.executor,
                origin="undo",
                mode="auto",
                rule_id=None,
                guard_verdict="undo",
                undo_of=action_id,
            ),
            ids=worker.deps.runtime.ids,
            org_id=org_id,
            incident_id=incident_id,
            now=clock.now(),
        ).action
        if planned.status != ActionStatus.PLANNED.value:
            return
        action_rows.start_action(session, planned.id, now=clock.now())
    executor = worker.deps.executors[spec.executor]
    request = ActionRequest(action, target, incident_id, "undo")
    result = executor.undo(request, spec, data)
    with worker.deps.sessions.begin() as session:
        action_rows.finish_action(
            session,
            planned.id,
            action_rows.ActionOutcome(
                status=result.outcome.value,
                command=[list(s.argv) for s in result.steps],
                exit_status=result.steps[-1].exit_status if result.steps else None,
                output_tail=result.message,
                duration_ms=int(result.duration_s * 1000),
            ),
            now=clock.now(),
        )
        if result.outcome is Outcome.SUCCEEDED:
            action_rows.mark_undone(session, action_id, now=clock.now())
        append_event(
            session,
            org_id=org_id,
            incident_id=incident_id,
            at=clock.now(),
            kind="action.undone"
            if result.outcome is Outcome.SUCCEEDED
            else "action.undo_failed",
            actor=f"worker:{worker.worker_id}",
            stage="learn",
            message=f"undo {action} on {target}: "
            + (result.message or result.outcome.value),
            data={"action_id": action_id, "undo_id": planned.id},
        )


def build_review(
    session: Session,
    policy: Policy,
    incident: Incident,
    payload: dict[str, Any],
    now: datetime,
) -> Review:
    events = timeline(session, incident.org_id, incident.id)
    history = _history(session, incident, events)
    resolved_at = incident.resolved_at or now
    review_facts = learn.derive(
        history, incident.created_at, incident.first_signal_at, resolved_at
    )
    facts = {
        "alert": _first_alert_facts(session, incident.org_id, incident.id),
        "incident": {
            "severity": incident.severity,
            "type": incident.type,
            "status": incident.status,
        },
        "classification": {
            "type": incident.type or "unknown",
            "confidence": incident.confidence or 0.0,
        },
        "resolution": {
            "root_cause": payload.get("root_cause"),
            "root_cause_category": payload.get("category"),
            "resolved_by": payload.get("resolved_by"),
        },
    }
    entries = [
        {"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor, "message": e.message}
        for e in events
    ]
    return learn.review(policy, facts, review_facts, entries)


def _first_alert_facts(
    session: Session, org_id: str, incident_id: str
) -> dict[str, Any]:
    alert = session.scalars(
        select(Alert)
        .where(Alert.org_id == org_id, Alert.incident_id == incident_id)
        .order_by(Alert.received_at)
        .limit(1)
    ).first()
    return dict(alert.facts) if alert else {}


def _history(
    session: Session, incident: Incident, events: Sequence[IncidentEvent]
) -> learn.History:
    alerts = session.scalars(
        select(Alert).where(
            Alert.org_id == incident.org_id, Alert.incident_id == incident.id
        )
    ).all()
    raised = next(
        (
            e.at
            for e in events
            if e.kind == "alert.folded"
            and e.data.get("severity") == "critical"
            and incident.severity == "critical"
        ),
        None,
    )
    opened_critical = any(
        e.kind == "incident.opened" and e.data.get("severity") == "critical"
        for e in events
    )
    recs = session.scalars(
        select(Recommendation).where(
            Recommendation.org_id == incident.org_id,
            Recommendation.incident_id == incident.id,
        )
    ).all()
    message = session.scalars(
        select(CustomerMessage).where(
            CustomerMessage.org_id == incident.org_id,
            CustomerMessage.incident_id == incident.id,
        )
    ).first()
    same_count, same_text = _same_approvals(session, incident)
    return learn.History(
        alerts=[
            learn.AlertEvent(a.received_at, a.status, a.kind, a.source) for a in alerts
        ],
        approvals=[
            learn.ApprovalRecord(r.created_at, r.decided_at, r.key)
            for r in recs
            if r.decided_by and not r.decided_by.startswith("policy:")
        ],
        severity_raised_at=None if opened_critical else raised,
        draft_original=message.original_body if message else None,
        draft_final=message.body if message and message.status == "approved" else None,
        same_approval_count=same_count,
        same_approval_text=same_text,
        similar_incidents_30d=_similar(session, incident),
    )


def _same_approvals(session: Session, incident: Incident) -> tuple[int, str | None]:
    """The recommendation this org approved most often, with no comment."""
    rows = session.execute(
        select(Recommendation.key, Recommendation.text, func.count())
        .join(Approval, Approval.subject_id == Recommendation.id)
        .where(
            Recommendation.org_id == incident.org_id,
            Approval.subject_type == "recommendation",
            Approval.decision == "approved",
            Approval.comment == "",
        )
        .group_by(Recommendation.key, Recommendation.text)
        .order_by(func.count().desc())
        .limit(1)
    ).first()
    return (int(rows[2]), str(rows[1])) if rows else (0, None)


def _similar(session: Session, incident: Incident) -> int:
    since = incident.created_at - timedelta(days=30)
    query = select(func.count()).where(
        Incident.org_id == incident.org_id,
        Incident.type == incident.type,
        Incident.created_at >= since,
    )
    return int(session.scalar(query) or 0)


def _store_review(
    session: Session, worker: Worker, policy: Policy, incident: Incident, review: Review
) -> None:
    ids, now = worker.deps.runtime.ids, worker.now
    content = audit.jsonable(
        {
            "root_cause": review.root_cause,
            "root_cause_identified": review.root_cause_identified.value,
            "decided_by": review.root_cause_identified.rule_id,
            "timeline": list(review.timeline),
            "prevention": list(review.prevention),
            "alert_improvements": list(review.alert_improvements),
            "automation": list(review.automation),
            "ux": list(review.ux),
            "facts": dict(review.facts),
        }
    )
    row = LearningReview(
        id=ids.new("rev"),
        org_id=incident.org_id,
        incident_id=incident.id,
        created_at=now,
        content=content,
        flagged_for_review=review.flagged_for_review,
    )
    session.add(row)
    session.flush()
    for proposal in review.proposals:
        _store_proposal(session, worker, policy, incident, row.id, proposal)
    if review.evaluation is not None:
        audit.record(
            session,
            review.evaluation,
            {m.rule.id for m in review.evaluation.matches},
            ids=ids,
            org_id=incident.org_id,
            incident_id=incident.id,
            at=now,
        )
    decision = review.root_cause_identified
    if decision.evaluation is not None:
        audit.record(
            session,
            decision.evaluation,
            {decision.rule_id},
            ids=ids,
            org_id=incident.org_id,
            incident_id=incident.id,
            at=now,
        )
    append_event(
        session,
        org_id=incident.org_id,
        incident_id=incident.id,
        at=now,
        kind="decision.root_cause_identified",
        actor=f"worker:{worker.worker_id}",
        stage="learn",
        message=(
            "root cause identified: prevention steps proposed"
            if decision.value
            else "root cause not identified: flagged for review"
        ),
        data={"value": decision.value, "rule": decision.rule_id, "review_id": row.id},
    )


def _store_proposal(
    session: Session,
    worker: Worker,
    policy: Policy,
    incident: Incident,
    review_id: str,
    proposal: Any,
) -> None:
    try:
        edit = threshold_edits.propose(
            policy.source.directory, proposal.threshold, proposal.new_value
        )
    except PolicyError as exc:
        log.warning(
            "proposal.skipped",
            extra={"threshold": proposal.threshold, "code": exc.code},
        )
        return
    add_proposal(
        session,
        ProposalIn(
            kind="threshold",
            file=edit.file.name,
            path=proposal.threshold,
            old_value=proposal.old_value,
            new_value=proposal.new_value,
            diff=edit.diff,
            evidence={
                "reason": proposal.reason,
                "rule": proposal.rule_id,
                "policy_version": policy.version,
            },
            incident_id=incident.id,
            review_id=review_id,
        ),
        ids=worker.deps.runtime.ids,
        org_id=incident.org_id,
        now=worker.now,
    )
    append_event(
        session,
        org_id=incident.org_id,
        incident_id=incident.id,
        at=worker.now,
        kind="proposal.created",
        actor=f"worker:{worker.worker_id}",
        stage="learn",
        message=f"proposal: {proposal.threshold} "
        f"{proposal.old_value} -> {proposal.new_value}",
        data={"threshold": proposal.threshold},
    )
