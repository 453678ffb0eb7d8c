"""The contract between the flow, the action catalog and the executors.

``ActionSpec`` is one entry of ``rules/actions.yaml`` as the policy loader
parsed it. An ``Executor`` turns a request into fixed argument vectors run
through the injected command runner (never a shell), with the spec's timeout.
Executors own the safety checks that need the real tool at the moment of
execution (``nginx -t`` before a reload, PM2 listing the target, a restart
loop), returned as a ``Refusal``; the flow's guards own the rest (mode,
allowed targets, cooldown, budget, locks, circuit breaker).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from engine.policy.model import Condition

Mode = Literal["auto", "dry_run", "off"]

EXECUTORS = ("pm2_restart", "nginx_reload", "pause_jobs", "rate_limit", "clear_temp")
"""The executors this service has; a catalog entry names one of them."""


@dataclass(frozen=True, slots=True)
class ActionSpec:
    name: str
    executor: str
    description: str = ""
    targets: tuple[str, ...] = ()  # glob patterns of allowed targets
    timeout_s: float = 30.0
    cooldown_s: float = 600.0
    budget_per_hour: int = 3
    auto: bool = False  # may run without a human approval
    mode: Mode = "auto"
    risk: Literal["low", "medium", "high"] = "medium"
    precondition: Condition | None = None
    verify: Condition | None = None
    undo: bool = False  # the executor can undo a run
    settings: Mapping[str, Any] = field(default_factory=dict)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    DRY_RUN = "dry_run"


@dataclass(frozen=True, slots=True)
class ActionRequest:
    action: str
    target: str
    incident_id: str = ""
    reason: str = ""  # the rule or approval that asked for it
    facts: Mapping[str, Any] = field(default_factory=dict)  # the snapshot it saw


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # stable, e.g. "nginx_config_invalid", "restart_loop"
    message: str
    recommendation: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    """One command an executor ran (or would run, in dry-run)."""

    argv: tuple[str, ...]
    exit_status: int | None = None
    output_tail: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    outcome: Outcome
    steps: Sequence[Step] = ()
    duration_s: float = 0.0
    message: str = ""
    refusal: Refusal | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)  # freed bytes, pids
    undo_data: Mapping[str, Any] = field(default_factory=dict)  # what undo needs


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class Executor(Protocol):
    name: str

    def check(self, request: ActionRequest, spec: ActionSpec) -> Refusal | None:
        """Safety checks against the live tool, just before running."""

    def run(
        self, request: ActionRequest, spec: ActionSpec, *, dry_run: bool
    ) -> ExecutionResult:
        """Run (or, in dry-run, only describe) the action."""

    def verify(
        self,
        request: ActionRequest,
        result: ExecutionResult,
        after: Mapping[str, Any],
    ) -> Verification:
        """Did it work? ``after`` is the fresh snapshot section dict."""

    def undo(
        self, request: ActionRequest, spec: ActionSpec, undo_data: Mapping[str, Any]
    ) -> ExecutionResult:
        """Reverse a run; executors without an undo return FAILED."""
