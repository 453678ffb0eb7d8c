"""Running actions durably: guard, record, lock, run, record, verify.

The order is what makes "never run twice" hold across crashes. An action is
planned under a run key (the same key after a restart finds the same row).
Just before it runs, the guards are checked against the history in the
database and the row moves from planned to running (or to refused), and
that is **committed before the command starts**. A worker that dies while
the command runs leaves the row ``running``; the next worker marks it
``interrupted`` and never starts it again. The per-target lock keeps two
incidents (or two workers) off one target at once. Verification reads a
fresh snapshot: the catalog's ``verify`` condition and the executor's own.

The functions work on many actions at once, so a worker can start a
batch of incidents' actions in one transaction and finish them in another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
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
from engine.store.events import EventIn, append_events
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
class Pending:
    """A planned action row with what deciding and running it needs."""

    row_id: str
    planned: PlannedAction
    facts: Mapping[str, Any]
    incident_id: str
    automatic: bool
    actor: str


@dataclass(frozen=True)
class Started:
    pending: Pending
    spec: ActionSpec
    verdict: guards.GuardVerdict


@dataclass(frozen=True)
class Ran:
    """One action as it ended, for the brief and for verification."""

    row_id: str
    planned: PlannedAction
    status: str
    message: str
    request: ActionRequest | None = None
    result: ExecutionResult | None = None


def plan(
    session: Session,
    deps: Executors,
    org_id: str,
    incident_id: str,
    planned: PlannedAction,
    *,
    run_key: str,
    origin: str,
) -> IncidentAction:
    """The row of ``planned`` (created once per run key)."""
    spec = deps.policy.source.catalog.actions.get(planned.action)
    return action_rows.plan_action(
        session,
        action_rows.ActionPlan(
            run_key=run_key,
            action=planned.action,
            target=planned.target,
            executor=spec.executor if spec else "none",
            origin=origin,
            mode=deps.mode_override or deps.policy.source.catalog.mode,
            rule_id=planned.rule_id,
        ),
        ids=deps.runtime.ids,
        org_id=org_id,
        incident_id=incident_id,
        now=deps.runtime.clock.now(),
    ).action


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


def start(
    session: Session,
    deps: Executors,
    pending: Sequence[Pending],
    *,
    defer_real: bool = False,
) -> tuple[list[Started], list[Ran], list[Pending]]:
    """Guard each pending action: start it, or record the refusal.

    With ``defer_real``, an action that would really run is left planned and
    returned, so the caller starts it alone right before running it: a crash
    then interrupts at most the one action under way. Dry runs change
    nothing and start together. The caller commits before running anything.
    """
    started: list[Started] = []
    refused: list[Ran] = []
    deferred: list[Pending] = []
    events: list[EventIn] = []
    now = deps.runtime.clock.now()
    for item in pending:
        row = session.get_one(IncidentAction, item.row_id)
        if row.status != ActionStatus.PLANNED.value:
            refused.append(Ran(row.id, item.planned, row.status, row.refusal_message or ""))
            continue
        spec = deps.policy.source.catalog.actions.get(item.planned.action)
        verdict = guards.check(
            deps.policy,
            item.planned,
            item.facts,
            history(session, item.incident_id, item.planned, now),
            now,
            automatic=item.automatic,
            mode_override=deps.mode_override,
        )
        row.mode, row.guard_verdict = verdict.mode, verdict.code
        if spec is None or not verdict.allowed:
            refused.append(_refuse(session, row, item, verdict, now, events))
            continue
        if verdict.dry_run:
            # A dry run changes nothing: it needs no durable "running" mark,
            # and it must not count as a run for the guards of the others.
            started.append(Started(item, spec, verdict))
            continue
        if defer_real:
            deferred.append(item)
            continue
        action_rows.start_action(session, row.id, now=now)
        session.flush()
        events.append(_event(row, now, "action.started", item.actor, verdict.message))
        started.append(Started(item, spec, verdict))
    append_events(session, events)
    return started, refused, deferred


def _refuse(
    session: Session,
    row: IncidentAction,
    item: Pending,
    verdict: guards.GuardVerdict,
    now: datetime,
    events: list[EventIn],
) -> Ran:
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
    events.append(_event(row, now, "action.refused", item.actor, verdict.message))
    ACTIONS.labels(item.planned.action, "refused").inc()
    log.info("action.refused", extra={"action": row.action, "code": verdict.code})
    return Ran(row.id, item.planned, ActionStatus.REFUSED.value, verdict.message)


def run(deps: Executors, started: Started) -> tuple[ActionRequest, ExecutionResult, float]:
    """Run one started action under its target lock (outside any transaction)."""
    item = started.pending
    request = ActionRequest(
        item.planned.action,
        item.planned.target,
        item.incident_id,
        item.planned.rule_id,
        item.facts,
    )
    began = time.monotonic()
    result = _run_locked(deps, started.spec, request, started.verdict.dry_run)
    return request, result, time.monotonic() - began


def _run_locked(
    deps: Executors, spec: ActionSpec, request: ActionRequest, dry_run: bool
) -> ExecutionResult:
    executor = deps.executors.get(spec.executor)
    if executor is None:
        return ExecutionResult(Outcome.FAILED, message=f"no executor named {spec.executor}")
    # One rate-limit snippet serves every target of the entry: lock the action.
    target = "*" if spec.executor == "rate_limit" else request.target
    try:
        if deps.locks is None or dry_run:
            return executor.run(request, spec, dry_run=dry_run)
        holder = request.incident_id
        with deps.locks.acquire(spec.name, target, timeout_s=LOCK_TIMEOUT_S, holder=holder):
            return executor.run(request, spec, dry_run=dry_run)
    except (TargetLockBusy, ActionError) as exc:
        return ExecutionResult(Outcome.FAILED, message=exc.message)


def finish(
    session: Session,
    deps: Executors,
    done: Sequence[tuple[Started, ActionRequest, ExecutionResult, float]],
) -> list[Ran]:
    """Record how each started action ended."""
    now = deps.runtime.clock.now()
    ran: list[Ran] = []
    events: list[EventIn] = []
    for started, request, result, elapsed in done:
        item = started.pending
        row = action_rows.finish_action(
            session, item.row_id, _outcome_of(result, started.verdict, elapsed), now=now
        )
        refused = result.outcome is Outcome.REFUSED
        kind = "action.refused" if refused else "action.finished"
        events.append(_event(row, now, kind, item.actor, summary(result)))
        ACTIONS.labels(item.planned.action, result.outcome.value).inc()
        log.info(
            "action.finished",
            extra={"action": row.action, "target": row.target, "outcome": result.outcome.value},
        )
        ran.append(Ran(row.id, item.planned, result.outcome.value, summary(result), request, result))
    append_events(session, events)
    return ran


def summary(result: ExecutionResult) -> str:
    if result.refusal is not None:
        advice = f" {result.refusal.recommendation}" if result.refusal.recommendation else ""
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
        refusal_message=summary(result) if refusal else None,
        undo_data=dict(result.undo_data) or None,
    )


def run_one(
    sessions: sessionmaker[Session],
    deps: Executors,
    org_id: str,
    pending_plan: tuple[PlannedAction, Mapping[str, Any]],
    *,
    incident_id: str,
    run_key: str,
    origin: str,
    automatic: bool,
    actor: str,
) -> Ran:
    """Plan, guard, run and record a single action (approvals use this)."""
    planned, facts = pending_plan
    with sessions.begin() as session:
        row = plan(session, deps, org_id, incident_id, planned, run_key=run_key, origin=origin)
        pending = Pending(row.id, planned, facts, incident_id, automatic, actor)
        started, refused, _ = start(session, deps, [pending])
    if refused:
        return refused[0]
    request, result, elapsed = run(deps, started[0])
    with sessions.begin() as session:
        return finish(session, deps, [(started[0], request, result, elapsed)])[0]


def verifications(
    deps: Executors, ran: Sequence[Ran], fresh: Mapping[str, Any], facts: Mapping[str, Any]
) -> dict[str, Verification]:
    """Did each action that ran work? Read off the fresh snapshot."""
    found: dict[str, Verification] = {}
    for item in ran:
        if item.status != Outcome.SUCCEEDED.value or item.request is None:
            continue
        assert item.result is not None
        spec = deps.policy.source.catalog.actions[item.planned.action]
        own = deps.executors[spec.executor].verify(item.request, item.result, fresh)
        target = fresh_target(item.planned, fresh)
        scoped = {**facts, "snapshot": fresh, "target": target}
        declared = guards.verified(deps.policy, spec.name, scoped)
        note = "" if declared is not False else "; the catalog's verify condition does not hold"
        found[item.row_id] = Verification(own.ok and declared is not False, own.message + note, own.detail)
    return found


def record_verifications(
    session: Session, deps: Executors, found: Mapping[str, Verification]
) -> None:
    now = deps.runtime.clock.now()
    events = []
    for row_id, verdict in found.items():
        row = session.get_one(IncidentAction, row_id)
        row.verification = {"ok": verdict.ok, "message": verdict.message, **verdict.detail}
        events.append(_event(row, now, "action.verified", "system", verdict.message))
    append_events(session, events)


def fresh_target(planned: PlannedAction, fresh: Mapping[str, Any]) -> dict[str, Any]:
    """The item acted on as the fresh snapshot sees it (a PM2 process by name)."""
    if planned.item is None:
        return {"name": planned.target}
    for process in (fresh.get("pm2") or {}).get("processes", []):
        if process.get("name") == planned.target:
            return dict(process)
    return {"name": planned.target}


def mark_effect(session: Session, row_ids: Sequence[str], effective: bool) -> None:
    """Record whether the round's actions made the incident stable."""
    for row_id in row_ids:
        row = session.get_one(IncidentAction, row_id)
        if row.status == ActionStatus.SUCCEEDED.value:
            row.verification = {**(row.verification or {}), "effective": effective}


def _event(row: IncidentAction, at: datetime, kind: str, actor: str, message: str) -> EventIn:
    return EventIn(
        org_id=row.org_id,
        incident_id=row.incident_id,
        at=at,
        kind=kind,
        actor=actor,
        stage=row.origin,
        message=message[:2000],
        data={"action_id": row.id, "action": row.action, "target": row.target},
    )
