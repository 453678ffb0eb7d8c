"""The record of every action: planned, guarded, run, verified, undone.

An action is planned under a ``run_key`` that the flow derives from what it
plans (incident, stage, rule, action, target), and the key is unique: planning
the same action again after a restart returns the first row instead of a
second. ``start_action`` moves a row from planned to running with a
conditional update that only one caller can win, and the caller commits that
before running the command, so no action runs twice. A row found running
after a crash was interrupted mid-way; ``interrupt_stale`` records that
instead of running it again, because nobody knows how far it got.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.errors import NotFoundError
from engine.runtime import IdGenerator
from engine.store.models import ActionStatus, IncidentAction
from engine.store.types import as_utc

OUTPUT_TAIL_CHARS = 16 * 1024


@dataclass(frozen=True, slots=True)
class ActionPlan:
    run_key: str
    action: str
    target: str
    executor: str
    origin: str  # stabilize, approval, undo, recheck
    mode: str  # auto, dry_run, off
    rule_id: str | None = None
    guard_verdict: str | None = None
    undo_of: str | None = None


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """How a run ended, as ``finish_action`` records it."""

    status: str  # succeeded, failed, refused, dry_run, skipped
    command: Sequence[Sequence[str]] = ()  # the argv of each step
    exit_status: int | None = None
    output_tail: str = ""
    duration_ms: int | None = None
    guard_verdict: str | None = None
    refusal_code: str | None = None
    refusal_message: str | None = None
    verification: Mapping[str, Any] | None = None
    undo_data: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Planned:
    action: IncidentAction
    created: bool  # False: the run key was planned before


def plan_action(
    session: Session,
    plan: ActionPlan,
    *,
    ids: IdGenerator,
    org_id: str,
    incident_id: str,
    now: datetime,
) -> Planned:
    """Record a planned action once per run key."""
    existing = _by_run_key(session, plan.run_key)
    if existing is not None:
        return Planned(existing, created=False)
    row = IncidentAction(
        id=ids.new("act"),
        org_id=org_id,
        incident_id=incident_id,
        status=ActionStatus.PLANNED.value,
        command=[],
        output_tail="",
        planned_at=as_utc(now),
        **_plan_fields(plan),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Planned concurrently by another worker: theirs is the one.
        raced = _by_run_key(session, plan.run_key)
        if raced is None:
            raise
        return Planned(raced, created=False)
    return Planned(row, created=True)


def _plan_fields(plan: ActionPlan) -> dict[str, Any]:
    return {
        "run_key": plan.run_key,
        "action": plan.action,
        "target": plan.target,
        "executor": plan.executor,
        "origin": plan.origin,
        "mode": plan.mode,
        "rule_id": plan.rule_id,
        "guard_verdict": plan.guard_verdict,
        "undo_of": plan.undo_of,
    }


def _by_run_key(session: Session, run_key: str) -> IncidentAction | None:
    query = select(IncidentAction).where(IncidentAction.run_key == run_key)
    return session.scalars(query).first()


def start_action(session: Session, action_id: str, *, now: datetime) -> bool:
    """Planned to running; False if it was started (or ended) before.

    Commit right after a True, before running the command.
    """
    started = session.execute(
        update(IncidentAction)
        .where(
            IncidentAction.id == action_id,
            IncidentAction.status == ActionStatus.PLANNED.value,
        )
        .values(status=ActionStatus.RUNNING.value, started_at=as_utc(now))
        .execution_options(synchronize_session=False)
    )
    return bool(started.rowcount)  # type: ignore[attr-defined]


def finish_action(
    session: Session, action_id: str, outcome: ActionOutcome, *, now: datetime
) -> IncidentAction:
    """Record how the action ended."""
    row = session.get(IncidentAction, action_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"action {action_id} does not exist: check the id")
    row.status = outcome.status
    row.command = [list(argv) for argv in outcome.command]
    row.exit_status = outcome.exit_status
    row.output_tail = outcome.output_tail[-OUTPUT_TAIL_CHARS:]
    row.duration_ms = outcome.duration_ms
    row.guard_verdict = outcome.guard_verdict or row.guard_verdict
    row.refusal_code = outcome.refusal_code
    row.refusal_message = outcome.refusal_message
    row.verification = _maybe_dict(outcome.verification)
    row.undo_data = _maybe_dict(outcome.undo_data)
    row.finished_at = as_utc(now)
    session.flush()
    return row


def _maybe_dict(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(value)


def mark_undone(session: Session, action_id: str, *, now: datetime) -> bool:
    undone = session.execute(
        update(IncidentAction)
        .where(IncidentAction.id == action_id, IncidentAction.undone_at.is_(None))
        .values(undone_at=as_utc(now))
        .execution_options(synchronize_session=False)
    )
    return bool(undone.rowcount)  # type: ignore[attr-defined]


def interrupt_stale(
    session: Session, org_id: str, incident_id: str, *, now: datetime
) -> int:
    """Mark the incident's running actions interrupted; return how many.

    Call it when resuming an incident whose last worker died: those runs
    are not repeated, a person decides.
    """
    interrupted = session.execute(
        update(IncidentAction)
        .where(
            IncidentAction.org_id == org_id,
            IncidentAction.incident_id == incident_id,
            IncidentAction.status == ActionStatus.RUNNING.value,
        )
        .values(status=ActionStatus.INTERRUPTED.value, finished_at=as_utc(now))
        .execution_options(synchronize_session=False)
    )
    return int(interrupted.rowcount)  # type: ignore[attr-defined]


# Built once: the incident page runs it on every load.
_ACTIONS_OF = (
    select(IncidentAction)
    .where(
        IncidentAction.org_id == bindparam("org_id"),
        IncidentAction.incident_id == bindparam("incident_id"),
    )
    .order_by(IncidentAction.planned_at, IncidentAction.id)
)


def actions_of(session: Session, org_id: str, incident_id: str) -> list[IncidentAction]:
    scope = {"org_id": org_id, "incident_id": incident_id}
    return list(session.scalars(_ACTIONS_OF, scope))


def runs_since(
    session: Session, org_id: str, action: str, target: str, since: datetime
) -> list[IncidentAction]:
    """Runs of ``action`` on ``target`` started since ``since``: for the
    cooldown and budget guards."""
    query = (
        select(IncidentAction)
        .where(
            IncidentAction.org_id == org_id,
            IncidentAction.action == action,
            IncidentAction.target == target,
            IncidentAction.started_at >= as_utc(since),
        )
        .order_by(IncidentAction.started_at)
    )
    return list(session.scalars(query))
