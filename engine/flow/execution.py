"""Running actions durably: guard, record, lock, run, record, verify.

The order is what makes "never run twice" hold across crashes. An action is
planned under a run key (the same key after a restart finds the same row).
Just before it runs, the guards are checked against the history of past
runs and the row moves from planned to running, and that is **committed
before the command starts**. A worker that dies while the command runs
leaves the row ``running``; the next worker marks it ``interrupted`` and
never starts it again. Dry runs change nothing on the host, so they skip the
"running" mark. The per-target lock keeps two incidents (or two workers)
off one target at once. Verification reads a fresh snapshot: the catalog's
``verify`` condition and the executor's own check.

The functions work on many actions at once so that a worker can guard a
batch of incidents' actions in one transaction; the guard history is read
once per batch (``GuardHistory``) and kept current as actions start.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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
from engine.flow import audit, guards
from engine.flow.outcomes import PlannedAction
from engine.policy.policy import Policy
from engine.runtime import Runtime
from engine.store import actions as action_rows
from engine.store.bulk import Rows
from engine.store.events import EventIn
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
    org_id: str
    planned: PlannedAction
    facts: Mapping[str, Any]
    incident_id: str
    automatic: bool
    actor: str
    origin: str = "stabilize"
    status: str = ActionStatus.PLANNED.value


@dataclass(frozen=True)
class Started:
    pending: Pending
    spec: ActionSpec
    verdict: guards.GuardVerdict


@dataclass(frozen=True)
class Ran:
    """One action as it ended, for the brief and for verification."""

    row_id: str
    org_id: str
    incident_id: str
    planned: PlannedAction
    status: str
    message: str
    request: ActionRequest | None = None
    result: ExecutionResult | None = None


@dataclass
class GuardHistory:
    """Past runs the guards need, read once per batch and kept current."""

    now: datetime
    last_run: dict[tuple[str, str], datetime] = field(default_factory=dict)
    hour_runs: Counter[str] = field(default_factory=Counter)
    ineffective: Counter[str] = field(default_factory=Counter)

    @classmethod
    def load(
        cls, session: Session, pending: Sequence[Pending], now: datetime
    ) -> GuardHistory:
        found = cls(now)
        actions = sorted({p.planned.action for p in pending})
        incidents = sorted({p.incident_id for p in pending})
        if not actions:
            return found
        # Host-wide: a target's cooldown holds across organizations.
        lasts = session.execute(
            select(
                IncidentAction.action,
                IncidentAction.target,
                func.max(IncidentAction.started_at),
            )
            .where(
                IncidentAction.action.in_(actions), IncidentAction.status.in_(COUNTED)
            )
            .group_by(IncidentAction.action, IncidentAction.target)
        )
        found.last_run = {(a, t): at for a, t, at in lasts if at is not None}
        hours = session.execute(
            select(IncidentAction.action, func.count())
            .where(
                IncidentAction.action.in_(actions),
                IncidentAction.started_at >= now - timedelta(hours=1),
                IncidentAction.status.in_(COUNTED),
            )
            .group_by(IncidentAction.action)
        )
        found.hour_runs = Counter({a: int(n) for a, n in hours})
        found.ineffective = ineffective_runs(session, incidents)
        return found

    def of(self, incident_id: str, planned: PlannedAction) -> guards.ActionHistory:
        return guards.ActionHistory(
            last_run_at=self.last_run.get((planned.action, planned.target)),
            runs_last_hour=self.hour_runs[planned.action],
            ineffective_runs=self.ineffective[incident_id],
        )

    def started(self, planned: PlannedAction, at: datetime) -> None:
        self.last_run[(planned.action, planned.target)] = at
        self.hour_runs[planned.action] += 1


def ineffective_runs(session: Session, incident_ids: Iterable[str]) -> Counter[str]:
    """Automatic actions per incident that ran but did not make it stable."""
    rows = session.execute(
        select(IncidentAction.incident_id, IncidentAction.verification).where(
            IncidentAction.incident_id.in_(list(incident_ids)),
            IncidentAction.status == ActionStatus.SUCCEEDED.value,
            IncidentAction.origin == "stabilize",
        )
    )
    found: Counter[str] = Counter()
    for incident_id, verification in rows:
        if isinstance(verification, dict) and verification.get("effective") is False:
            found[incident_id] += 1
    return found


def plan_row(
    rows: Rows,
    deps: Executors,
    org_id: str,
    incident_id: str,
    planned: PlannedAction,
    *,
    run_key: str,
    origin: str,
) -> str:
    """Add the planned row of a new action to ``rows``; return its id."""
    spec = deps.policy.source.catalog.actions.get(planned.action)
    row_id = deps.runtime.ids.new("act")
    rows.add(
        IncidentAction,
        id=row_id,
        org_id=org_id,
        incident_id=incident_id,
        run_key=run_key,
        action=planned.action,
        target=planned.target,
        executor=spec.executor if spec else "none",
        origin=origin,
        rule_id=planned.rule_id,
        mode=deps.mode_override or deps.policy.source.catalog.mode,
        status=ActionStatus.PLANNED.value,
        command=[],
        output_tail="",
        planned_at=deps.runtime.clock.now(),
    )
    return row_id


def start(
    session: Session,
    rows: Rows,
    events: list[EventIn],
    deps: Executors,
    history: GuardHistory,
    pending: Sequence[Pending],
    *,
    defer_real: bool,
) -> tuple[list[Started], list[Ran], list[Pending]]:
    """Guard each pending action: start it, or record the refusal.

    With ``defer_real``, an action that would really run is left planned and
    returned, so the caller starts it alone right before running it: a crash
    then interrupts at most the one action under way. Started real actions
    are marked running at once (``start_action``); the caller commits before
    running anything.
    """
    started: list[Started] = []
    refused: list[Ran] = []
    deferred: list[Pending] = []
    now = deps.runtime.clock.now()
    for item in pending:
        if item.status != ActionStatus.PLANNED.value:
            continue
        spec = deps.policy.source.catalog.actions.get(item.planned.action)
        verdict = guards.check(
            deps.policy,
            item.planned,
            item.facts,
            history.of(item.incident_id, item.planned),
            now,
            automatic=item.automatic,
            mode_override=deps.mode_override,
        )
        if spec is None or not verdict.allowed:
            refused.append(_refuse(rows, events, item, verdict, now))
            continue
        if verdict.dry_run:
            rows.change(
                IncidentAction,
                item.row_id,
                mode=verdict.mode,
                guard_verdict=verdict.code,
            )
            started.append(Started(item, spec, verdict))
            continue
        if defer_real:
            deferred.append(item)
            continue
        rows.change(
            IncidentAction, item.row_id, mode=verdict.mode, guard_verdict=verdict.code
        )
        rows.write(session)
        action_rows.start_action(session, item.row_id, now=now)
        history.started(item.planned, now)
        events.append(_event(item, now, "action.started", item.actor, verdict.message))
        started.append(Started(item, spec, verdict))
    return started, refused, deferred


def _refuse(
    rows: Rows,
    events: list[EventIn],
    item: Pending,
    verdict: guards.GuardVerdict,
    now: datetime,
) -> Ran:
    rows.change(
        IncidentAction,
        item.row_id,
        mode=verdict.mode,
        status=ActionStatus.REFUSED.value,
        guard_verdict=verdict.code,
        refusal_code=verdict.code,
        refusal_message=verdict.message,
        finished_at=now,
    )
    events.append(_event(item, now, "action.refused", item.actor, verdict.message))
    ACTIONS.labels(item.planned.action, "refused").inc()
    log.info(
        "action.refused", extra={"action": item.planned.action, "code": verdict.code}
    )
    return Ran(
        item.row_id,
        item.org_id,
        item.incident_id,
        item.planned,
        ActionStatus.REFUSED.value,
        verdict.message,
    )


def run(
    deps: Executors, started: Started
) -> tuple[ActionRequest, ExecutionResult, float]:
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
        return ExecutionResult(
            Outcome.FAILED, message=f"no executor named {spec.executor}"
        )
    # One rate-limit snippet serves every target of the entry: lock the action.
    target = "*" if spec.executor == "rate_limit" else request.target
    try:
        if deps.locks is None or dry_run:
            return executor.run(request, spec, dry_run=dry_run)
        holder = request.incident_id
        with deps.locks.acquire(
            spec.name, target, timeout_s=LOCK_TIMEOUT_S, holder=holder
        ):
            return executor.run(request, spec, dry_run=dry_run)
    except (TargetLockBusy, ActionError) as exc:
        return ExecutionResult(Outcome.FAILED, message=exc.message)


def finish(
    rows: Rows,
    events: list[EventIn],
    deps: Executors,
    done: Sequence[tuple[Started, ActionRequest, ExecutionResult, float]],
) -> list[Ran]:
    """Record how each started action ended."""
    now = deps.runtime.clock.now()
    ran: list[Ran] = []
    for started, request, result, elapsed in done:
        item = started.pending
        rows.change(
            IncidentAction,
            item.row_id,
            **_outcome_of(result, started.verdict, elapsed),
            finished_at=now,
        )
        kind = (
            "action.refused" if result.outcome is Outcome.REFUSED else "action.finished"
        )
        # The detail tells a reviewer what the action did: the files
        # deleted, the pids before and after, the snippet written.
        events.append(
            _event(item, now, kind, item.actor, summary(result), result.detail)
        )
        ACTIONS.labels(item.planned.action, result.outcome.value).inc()
        log.info(
            "action.finished",
            extra={
                "action": item.planned.action,
                "target": item.planned.target,
                "outcome": result.outcome.value,
            },
        )
        ran.append(
            Ran(
                item.row_id,
                item.org_id,
                item.incident_id,
                item.planned,
                result.outcome.value,
                summary(result),
                request,
                result,
            )
        )
    return ran


def summary(result: ExecutionResult) -> str:
    if result.refusal is not None:
        advice = (
            f" {result.refusal.recommendation}" if result.refusal.recommendation else ""
        )
        return f"{result.refusal.message}{advice}"
    return result.message or result.outcome.value


def _outcome_of(
    result: ExecutionResult, verdict: guards.GuardVerdict, elapsed: float
) -> dict[str, Any]:
    refusal = result.refusal
    last = result.steps[-1] if result.steps else None
    tail = "\n".join(step.output_tail for step in result.steps if step.output_tail)
    return {
        "status": result.outcome.value,
        "command": [list(step.argv) for step in result.steps],
        "exit_status": last.exit_status if last else None,
        "output_tail": (tail or result.message)[-action_rows.OUTPUT_TAIL_CHARS :],
        "duration_ms": int((result.duration_s or elapsed) * 1000),
        "guard_verdict": verdict.code,
        "refusal_code": refusal.code if refusal else None,
        "refusal_message": summary(result) if refusal else None,
        "undo_data": dict(result.undo_data) or None,
    }


def verifications(
    deps: Executors,
    ran: Sequence[Ran],
    fresh: Mapping[str, Any],
    facts: Mapping[str, Any],
) -> dict[str, Verification]:
    """Did each action that ran work? Read off the fresh snapshot."""
    found: dict[str, Verification] = {}
    for item in ran:
        if item.status != Outcome.SUCCEEDED.value or item.request is None:
            continue
        assert item.result is not None
        spec = deps.policy.source.catalog.actions[item.planned.action]
        own = deps.executors[spec.executor].verify(item.request, item.result, fresh)
        scoped = {
            **facts,
            "snapshot": fresh,
            "target": fresh_target(item.planned, fresh),
        }
        declared = guards.verified(deps.policy, spec.name, scoped)
        note = (
            ""
            if declared is not False
            else "; the catalog's verify condition does not hold"
        )
        ok = own.ok and declared is not False
        found[item.row_id] = Verification(ok, own.message + note, own.detail)
    return found


def record_verifications(
    rows: Rows,
    events: list[EventIn],
    ran: Sequence[Ran],
    found: Mapping[str, Verification],
    now: datetime,
    *,
    effective: Mapping[str, bool] | None = None,
) -> None:
    """Store each verification (and whether the round made things stable)."""
    for item in ran:
        verdict = found.get(item.row_id)
        if verdict is None and item.status != Outcome.SUCCEEDED.value:
            continue
        record: dict[str, Any] = {}
        if verdict is not None:
            record = {"ok": verdict.ok, "message": verdict.message, **verdict.detail}
            events.append(
                EventIn(
                    org_id=item.org_id,
                    incident_id=item.incident_id,
                    at=now,
                    kind="action.verified",
                    actor="system",
                    stage="verify",
                    message=verdict.message[:2000],
                    data={
                        "action_id": item.row_id,
                        "action": item.planned.action,
                        "target": item.planned.target,
                    },
                )
            )
        if effective is not None and item.incident_id in effective:
            record["effective"] = effective[item.incident_id]
        if record:
            rows.change(IncidentAction, item.row_id, verification=record)


def fresh_target(planned: PlannedAction, fresh: Mapping[str, Any]) -> dict[str, Any]:
    """The item acted on as the fresh snapshot sees it (a PM2 process by name)."""
    if planned.item is None:
        return {"name": planned.target}
    for process in (fresh.get("pm2") or {}).get("processes", []):
        if process.get("name") == planned.target:
            return dict(process)
    return {"name": planned.target}


def _event(
    item: Pending,
    at: datetime,
    kind: str,
    actor: str,
    message: str,
    detail: Mapping[str, Any] | None = None,
) -> EventIn:
    data: dict[str, Any] = {
        "action_id": item.row_id,
        "action": item.planned.action,
        "target": item.planned.target,
    }
    if detail:
        data["detail"] = audit.jsonable(dict(detail))
    return EventIn(
        org_id=item.org_id,
        incident_id=item.incident_id,
        at=at,
        kind=kind,
        actor=actor,
        stage=item.origin,
        message=message[:2000],
        data=data,
    )
