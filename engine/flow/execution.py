"""Running one action durably: guard, record, lock, run, record, verify.

The order is what makes "never run twice" hold across crashes. The action
is planned under a run key (the same key after a restart finds the same
row); the guards' verdict is recorded; the row goes from planned to running
and that is **committed before the command starts**. A worker that dies
while the command runs leaves the row ``running``; the next worker marks it
``interrupted`` and never starts it again. The per-target lock keeps two
incidents (or two hosts' workers sharing a data folder) off one target at
once. Verification reads a fresh snapshot: the catalog's ``verify``
condition and the executor's own check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.actions.base import (
    ActionRequest,
    ActionSpec,
    ExecutionResult,
    Executor,
    Outcome,
    Verification,
)
from engine.actions.locks import TargetLockBusy, TargetLocks
from engine.errors import ActionError
from engine.flow import guards
from engine.flow.outcomes import PlannedAction
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.store import actions as action_rows
from engine.store.events import append_event
from engine.store.models import ActionStatus, IncidentAction
from engine.telemetry import ACTIONS

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 5.0
COUNTED = (
    ActionStatus.SUCCEEDED.value,
    ActionStatus.FAILED.value,
    ActionStatus.RUNNING.value,
    ActionStatus.INTERRUPTED.value,
)
"""Statuses that count as a run for cooldowns and budgets (not dry runs)."""


@dataclass(frozen=True)
class Executors:
    """What running an action needs besides the database."""

    policy: Policy
    executors: Mapping[str, Executor]
    locks: TargetLocks | None
    runtime: Runtime
    mode_override: str | None = None


@dataclass(frozen=True)
class Ran:
    """One action as it ended, for the brief and for verification."""

    row_id: str
    planned: PlannedAction
    status: str
    message: str
    request: ActionRequest | None = None
    result: ExecutionResult | None = None


def history(
    session: Session, incident_id: str, planned: PlannedAction, now: datetime
) -> guards.ActionHistory:
    """Past runs, host-wide: a target's cooldown holds across organizations."""
    last = session.scalar(
        select(func.max(IncidentAction.started_at)).where(
            IncidentAction.action == planned.action,
            IncidentAction.target == planned.target,
            IncidentAction.status.in_(COUNTED),
        )
    )
    hour = session.scalar(
        select(func.count()).where(
            IncidentAction.action == planned.action,
            IncidentAction.started_at >= now - timedelta(hours=1),
            IncidentAction.status.in_(COUNTED),
        )
    )
    return guards.ActionHistory(
        last_run_at=last,
        runs_last_hour=int(hour or 0),
        ineffective_runs=ineffective_runs(session, incident_id),
    )


def ineffective_runs(session: Session, incident_id: str) -> int:
    rows = session.scalars(
        select(IncidentAction.verification).where(
            IncidentAction.incident_id == incident_id,
            IncidentAction.status == ActionStatus.SUCCEEDED.value,
        )
    )
    return sum(1 for v in rows if isinstance(v, dict) and v.get("effective") is False)


def run_action(
    sessions: sessionmaker[Session],
    deps: Executors,
    org_id: str,
    incident_id: str,
    planned: PlannedAction,
    facts: Mapping[str, Any],
    *,
    origin: str,
    automatic: bool,
    run_key: str,
    actor: str,
) -> Ran:
    """Guard and run ``planned`` once; a repeated run key returns the record."""
    clock = deps.runtime.clock
    with sessions.begin() as session:
        verdict = guards.check(
            deps.policy,
            planned,
            facts,
            history(session, incident_id, planned, clock.now()),
            clock.now(),
            automatic=automatic,
            mode_override=deps.mode_override,
        )
        spec = deps.policy.source.catalog.actions.get(planned.action)
        row = action_rows.plan_action(
            session,
            action_rows.ActionPlan(
                run_key=run_key,
                action=planned.action,
                target=planned.target,
                executor=spec.executor if spec else "none",
                origin=origin,
                mode=verdict.mode,
                rule_id=planned.rule_id,
                guard_verdict=verdict.code,
            ),
            ids=deps.runtime.ids,
            org_id=org_id,
            incident_id=incident_id,
            now=clock.now(),
        ).action
        if row.status != ActionStatus.PLANNED.value:
            return Ran(row.id, planned, row.status, row.refusal_message or row.status)
        if not verdict.allowed or spec is None:
            return _refused(session, deps, row, planned, verdict, actor)
        action_rows.start_action(session, row.id, now=clock.now())
        _event(session, row, clock.now(), "action.started", actor, verdict.message)
    # Committed: the action is now "running" on disk before anything runs.
    return _execute(
        sessions, deps, row.id, planned, spec, facts, verdict, incident_id, actor
    )


def _refused(
    session: Session,
    deps: Executors,
    row: IncidentAction,
    planned: PlannedAction,
    verdict: guards.GuardVerdict,
    actor: str,
) -> Ran:
    now = deps.runtime.clock.now()
    action_rows.finish_action(
        session,
        row.id,
        action_rows.ActionOutcome(
            status=ActionStatus.REFUSED.value,
            guard_verdict=verdict.code,
            refusal_code=verdict.code,
            refusal_message=verdict.message,
        ),
        now=now,
    )
    _event(session, row, now, "action.refused", actor, verdict.message)
    ACTIONS.labels(planned.action, "refused").inc()
    log.info("action.refused", extra={"action": planned.action, "code": verdict.code})
    return Ran(row.id, planned, ActionStatus.REFUSED.value, verdict.message)


def _execute(
    sessions: sessionmaker[Session],
    deps: Executors,
    row_id: str,
    planned: PlannedAction,
    spec: ActionSpec,
    facts: Mapping[str, Any],
    verdict: guards.GuardVerdict,
    incident_id: str,
    actor: str,
) -> Ran:
    request = ActionRequest(
        planned.action, planned.target, incident_id, planned.rule_id, facts
    )
    started = time.monotonic()
    result = _run_locked(deps, spec, request, verdict.dry_run, incident_id)
    outcome = _outcome_of(result, verdict, time.monotonic() - started)
    with sessions.begin() as session:
        row = action_rows.finish_action(
            session, row_id, outcome, now=deps.runtime.clock.now()
        )
        kind = (
            "action.finished"
            if result.outcome is not Outcome.REFUSED
            else "action.refused"
        )
        _event(session, row, deps.runtime.clock.now(), kind, actor, _summary(result))
    ACTIONS.labels(planned.action, result.outcome.value).inc()
    log.info(
        "action.finished",
        extra={
            "action": planned.action,
            "target": planned.target,
            "outcome": result.outcome.value,
        },
    )
    return Ran(row_id, planned, result.outcome.value, _summary(result), request, result)


def _run_locked(
    deps: Executors,
    spec: ActionSpec,
    request: ActionRequest,
    dry_run: bool,
    holder: str,
) -> ExecutionResult:
    executor = deps.executors.get(spec.executor)
    if executor is None:
        return ExecutionResult(
            Outcome.FAILED, message=f"no executor named {spec.executor}"
        )
    # One rate limit snippet serves every target of the entry: lock the action.
    target = "*" if spec.executor == "rate_limit" else request.target
    try:
        if deps.locks is None or dry_run:
            return executor.run(request, spec, dry_run=dry_run)
        with deps.locks.acquire(
            spec.name, target, timeout_s=LOCK_TIMEOUT_S, holder=holder
        ):
            return executor.run(request, spec, dry_run=dry_run)
    except TargetLockBusy as exc:
        return ExecutionResult(Outcome.FAILED, message=exc.message)
    except ActionError as exc:
        return ExecutionResult(Outcome.FAILED, message=exc.message)


def _summary(result: ExecutionResult) -> str:
    if result.refusal is not None:
        advice = (
            f" {result.refusal.recommendation}" if result.refusal.recommendation else ""
        )
        return f"{result.refusal.message}{advice}"
    return result.message or result.outcome.value


def _outcome_of(
    result: ExecutionResult, verdict: guards.GuardVerdict, elapsed: float
) -> action_rows.ActionOutcome:
    refusal = result.refusal
    last = result.steps[-1] if result.steps else None
    tail = "\n".join(step.output_tail for step in result.steps if step.output_tail)
    return action_rows.ActionOutcome(
        status=result.outcome.value,
        command=[list(step.argv) for step in result.steps],
        exit_status=last.exit_status if last else None,
        output_tail=tail or result.message,
        duration_ms=int((result.duration_s or elapsed) * 1000),
        guard_verdict=verdict.code,
        refusal_code=refusal.code if refusal else None,
        refusal_message=_summary(result) if refusal else None,
        undo_data=dict(result.undo_data) or None,
    )


def verify(
    sessions: sessionmaker[Session],
    deps: Executors,
    ran: list[Ran],
    fresh: Mapping[str, Any],
    facts: Mapping[str, Any],
) -> None:
    """Check each action that ran against the fresh snapshot; record it."""
    for item in ran:
        if (
            item.status != Outcome.SUCCEEDED.value
            or item.request is None
            or item.result is None
        ):
            continue
        verdict = _verification(deps, item, fresh, facts)
        with sessions.begin() as session:
            row = session.get_one(IncidentAction, item.row_id)
            row.verification = {
                "ok": verdict.ok,
                "message": verdict.message,
                **verdict.detail,
            }
            _event(
                session,
                row,
                deps.runtime.clock.now(),
                "action.verified",
                "system",
                verdict.message,
            )


def _verification(
    deps: Executors, item: Ran, fresh: Mapping[str, Any], facts: Mapping[str, Any]
) -> Verification:
    assert item.request is not None and item.result is not None
    spec = deps.policy.source.catalog.actions[item.planned.action]
    executor = deps.executors[spec.executor]
    own = executor.verify(item.request, item.result, fresh)
    target = _fresh_target(item.planned, fresh)
    declared = guards.verified(
        deps.policy, spec.name, {**facts, "snapshot": fresh, "target": target}
    )
    ok = own.ok and declared is not False
    note = (
        ""
        if declared is not False
        else "; the catalog's verify condition does not hold"
    )
    return Verification(ok, own.message + note, own.detail)


def _fresh_target(planned: PlannedAction, fresh: Mapping[str, Any]) -> dict[str, Any]:
    """The item acted on, as the fresh snapshot sees it (a PM2 process by name)."""
    if planned.item is None:
        return {"name": planned.target}
    for process in (fresh.get("pm2") or {}).get("processes", []):
        if process.get("name") == planned.target:
            return dict(process)
    return {"name": planned.target}


def mark_effect(
    sessions: sessionmaker[Session], ran: list[Ran], effective: bool
) -> None:
    """Record whether the round's actions made the incident stable."""
    with sessions.begin() as session:
        for item in ran:
            if item.status != Outcome.SUCCEEDED.value:
                continue
            row = session.get_one(IncidentAction, item.row_id)
            row.verification = {**(row.verification or {}), "effective": effective}


def _event(
    session: Session,
    row: IncidentAction,
    at: datetime,
    kind: str,
    actor: str,
    message: str,
) -> None:
    append_event(
        session,
        org_id=row.org_id,
        incident_id=row.incident_id,
        at=at,
        kind=kind,
        actor=actor,
        stage=row.origin,
        message=message[:2000],
        data={"action_id": row.id, "action": row.action, "target": row.target},
    )
