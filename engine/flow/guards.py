"""Guards: may this action run on this target, now?

Checked in order, the first refusal wins: the action exists in the catalog;
the effective mode (the most restrictive of the global mode, or its
``--mode`` override, and the action's own) is not ``off``; automatic runs
need ``auto: true``; the target matches the catalog's allowed globs; the
circuit breaker of the incident is closed; the cooldown per target has
passed; the hourly budget is not spent; the catalog's precondition holds on
the facts (with ``target`` set to the item acted on). The executor's live
check and the per-target lock follow in the runner. Pure: the history of
past runs comes in as data, so a verdict can be replayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from engine.actions.base import ActionSpec
from engine.flow.outcomes import PlannedAction
from engine.policy.loader import Catalog
from engine.policy.policy import Policy

RESTRICTIVENESS = ("auto", "dry_run", "off")


@dataclass(frozen=True)
class ActionHistory:
    """Past runs the time-based guards need."""

    last_run_at: datetime | None = None  # this action on this target, any incident
    runs_last_hour: int = 0  # this action, any target
    ineffective_runs: int = 0  # automatic runs for this incident that did not help


@dataclass(frozen=True)
class GuardVerdict:
    allowed: bool
    mode: str
    code: str
    message: str

    @property
    def dry_run(self) -> bool:
        return self.allowed and self.mode == "dry_run"


def effective_mode(catalog: Catalog, spec: ActionSpec, override: str | None) -> str:
    modes = (override or catalog.mode, spec.mode)
    return max(modes, key=RESTRICTIVENESS.index)


def target_facts(planned: PlannedAction) -> dict[str, Any]:
    return dict(planned.item) if planned.item else {"name": planned.target}


def check(
    policy: Policy,
    planned: PlannedAction,
    facts: Mapping[str, Any],
    history: ActionHistory,
    now: datetime,
    *,
    automatic: bool,
    mode_override: str | None = None,
) -> GuardVerdict:
    catalog = policy.source.catalog
    spec = catalog.actions.get(planned.action)
    if spec is None:
        return _refuse(
            "dry_run", "not_in_catalog", f"{planned.action} is not in actions.yaml"
        )
    mode = effective_mode(catalog, spec, mode_override)
    for refusal in _refusals(
        policy, spec, planned, facts, history, now, automatic, mode
    ):
        if refusal:
            return refusal
    return GuardVerdict(
        True, mode, "allowed", f"{planned.action} on {planned.target} allowed ({mode})"
    )


def _refusals(
    policy: Policy,
    spec: ActionSpec,
    planned: PlannedAction,
    facts: Mapping[str, Any],
    history: ActionHistory,
    now: datetime,
    automatic: bool,
    mode: str,
) -> list[GuardVerdict | None]:
    breaker = policy.source.catalog.breaker_ineffective_runs
    return [
        _mode(mode, spec),
        _auto(spec, automatic, mode),
        _target(spec, planned, mode),
        _breaker(history, breaker, automatic, mode),
        _cooldown(spec, planned, history, now, mode),
        _budget(spec, history, mode),
        _precondition(policy, spec, planned, facts, mode),
    ]


def _refuse(mode: str, code: str, message: str) -> GuardVerdict:
    return GuardVerdict(False, mode, code, message)


def _mode(mode: str, spec: ActionSpec) -> GuardVerdict | None:
    if mode == "off":
        return _refuse(mode, "mode_off", f"{spec.name} is switched off (mode: off)")
    return None


def _auto(spec: ActionSpec, automatic: bool, mode: str) -> GuardVerdict | None:
    if automatic and not spec.auto:
        return _refuse(
            mode, "needs_approval", f"{spec.name} may not run without a human approval"
        )
    return None


def _target(spec: ActionSpec, planned: PlannedAction, mode: str) -> GuardVerdict | None:
    if any(fnmatchcase(planned.target, glob) for glob in spec.targets):
        return None
    allowed = ", ".join(spec.targets) or "none configured"
    return _refuse(
        mode,
        "target_not_allowed",
        f"target {planned.target!r} is not among the allowed targets of "
        f"{spec.name} ({allowed}); add it to `targets` in actions.yaml",
    )


def _breaker(
    history: ActionHistory, limit: int, automatic: bool, mode: str
) -> GuardVerdict | None:
    if automatic and history.ineffective_runs >= limit:
        return _refuse(
            mode,
            "breaker_open",
            f"{history.ineffective_runs} automatic actions did not stabilize this "
            "incident; automatic actions are stopped and a human is asked",
        )
    return None


def _cooldown(
    spec: ActionSpec,
    planned: PlannedAction,
    history: ActionHistory,
    now: datetime,
    mode: str,
) -> GuardVerdict | None:
    if history.last_run_at is None:
        return None
    waited = (now - history.last_run_at).total_seconds()
    if waited >= spec.cooldown_s:
        return None
    return _refuse(
        mode,
        "cooldown",
        f"{spec.name} ran on {planned.target} {waited:.0f} s ago; its cooldown is "
        f"{spec.cooldown_s:.0f} s",
    )


def _budget(spec: ActionSpec, history: ActionHistory, mode: str) -> GuardVerdict | None:
    if history.runs_last_hour < spec.budget_per_hour:
        return None
    return _refuse(
        mode,
        "budget_spent",
        f"{spec.name} ran {history.runs_last_hour} times in the last hour; its "
        f"budget is {spec.budget_per_hour} per hour",
    )


def _precondition(
    policy: Policy,
    spec: ActionSpec,
    planned: PlannedAction,
    facts: Mapping[str, Any],
    mode: str,
) -> GuardVerdict | None:
    if spec.precondition is None:
        return None
    scoped = {**facts, "target": target_facts(planned)}
    evaluation = policy.evaluate("guards", scoped)
    if f"{spec.name}.precondition" in evaluation.rule_ids:
        return None
    return _refuse(
        mode,
        "precondition_failed",
        f"the precondition of {spec.name} does not hold for {planned.target} "
        "(see actions.yaml)",
    )


def verified(policy: Policy, action: str, facts: Mapping[str, Any]) -> bool | None:
    """The catalog's verify condition on a fresh snapshot; None when it has none."""
    spec = policy.source.catalog.actions.get(action)
    if spec is None or spec.verify is None:
        return None
    evaluation = policy.evaluate("guards", facts)
    return f"{action}.verify" in evaluation.rule_ids
