"""The executors by name, and a recording stand-in for the flow's tests.

``build_executors(settings, runtime)`` returns the five real executors keyed
by the name a catalog entry gives as ``executor``. ``RecordingExecutor``
follows the same protocol and touches nothing: it records every call (the
request, the spec, dry-run or not, and the argument vectors it was told a
real run would use) and answers as scripted, so the flow's guards, records
and decision points can be tested without PM2 or nginx.
``recording_executors()`` returns one per real name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.actions.base import (
    ActionRequest,
    ActionSpec,
    ExecutionResult,
    Executor,
    Outcome,
    Refusal,
    Step,
    Verification,
)
from engine.actions.nginx import NginxReload, nginx_argv
from engine.actions.pm2 import PauseJobs, Pm2Restart
from engine.actions.polling import Poll
from engine.actions.ratelimit import RateLimit
from engine.actions.temp import ClearTemp
from engine.runtime import Runtime
from engine.settings import Settings

EXECUTOR_NAMES = (
    "pm2_restart",
    "nginx_reload",
    "pause_jobs",
    "rate_limit",
    "clear_temp",
)


def build_executors(
    settings: Settings,
    runtime: Runtime,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Mapping[str, Executor]:
    poll = Poll(wait_s=10.0, interval_s=0.25, sleep=sleep)
    executors: tuple[Executor, ...] = (
        Pm2Restart(settings, runtime, poll=poll),
        NginxReload(settings, runtime, poll=poll),
        PauseJobs(settings, runtime, poll=poll),
        RateLimit(settings, runtime, poll=poll),
        ClearTemp(runtime),
    )
    return {executor.name: executor for executor in executors}


Planner = Callable[[ActionRequest, ActionSpec], Sequence[Sequence[str]]]
Method = Literal["check", "run", "verify", "undo"]


def default_planner(request: ActionRequest, spec: ActionSpec) -> list[list[str]]:
    return [[spec.executor, request.target]]


@dataclass(frozen=True, slots=True)
class RecordedCall:
    method: Method
    request: ActionRequest
    spec: ActionSpec | None = None
    dry_run: bool = False
    argv: tuple[tuple[str, ...], ...] = ()
    undo_data: Mapping[str, Any] = field(default_factory=dict)


class RecordingExecutor:
    """Records what it is asked to do and answers as scripted."""

    def __init__(
        self,
        name: str,
        *,
        refusal: Refusal | None = None,
        outcome: Outcome = Outcome.SUCCEEDED,
        verified: bool = True,
        planner: Planner = default_planner,
    ) -> None:
        self.name = name
        self.refusal = refusal
        self.outcome = outcome
        self.verified = verified
        self._planner = planner
        self._calls: list[RecordedCall] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def runs(self) -> list[RecordedCall]:
        """The calls of ``run`` that were not dry runs: what would have changed."""
        return [c for c in self.calls if c.method == "run" and not c.dry_run]

    def check(self, request: ActionRequest, spec: ActionSpec) -> Refusal | None:
        self._record(RecordedCall("check", request, spec))
        return self.refusal

    def run(
        self, request: ActionRequest, spec: ActionSpec, *, dry_run: bool
    ) -> ExecutionResult:
        argv = tuple(tuple(a) for a in self._planner(request, spec))
        self._record(RecordedCall("run", request, spec, dry_run, argv))
        steps = tuple(Step(argv=a) for a in argv)
        if self.refusal:
            return ExecutionResult(
                Outcome.REFUSED, message=self.refusal.message, refusal=self.refusal
            )
        outcome = Outcome.DRY_RUN if dry_run else self.outcome
        return ExecutionResult(
            outcome,
            steps=steps,
            message=f"Recorded {self.name} on {request.target}.",
            undo_data={"recorded": request.target},
        )

    def verify(
        self,
        request: ActionRequest,
        result: ExecutionResult,
        after: Mapping[str, Any],
    ) -> Verification:
        self._record(RecordedCall("verify", request))
        word = "worked" if self.verified else "did not work"
        return Verification(self.verified, f"Recorded {self.name}: {word}.")

    def undo(
        self, request: ActionRequest, spec: ActionSpec, undo_data: Mapping[str, Any]
    ) -> ExecutionResult:
        self._record(RecordedCall("undo", request, spec, undo_data=dict(undo_data)))
        return ExecutionResult(Outcome.SUCCEEDED, message=f"Undid {self.name}.")

    def _record(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)


def recording_executors(
    settings: Settings | None = None, **scripted: RecordingExecutor
) -> dict[str, RecordingExecutor]:
    """One recording executor per real name; pass some to script them.

    With ``settings``, each records the argument vectors the real executor
    would run on that host (``pm2 restart NAME``, ``nginx -s reload``...).
    """
    planners = real_planners(settings) if settings else {}
    found = {
        name: RecordingExecutor(name, planner=planners.get(name, default_planner))
        for name in EXECUTOR_NAMES
    }
    found.update(scripted)
    return found


def real_planners(settings: Settings) -> dict[str, Planner]:
    def pm2_restart(request: ActionRequest, spec: ActionSpec) -> list[list[str]]:
        return [[settings.pm2_bin, "restart", request.target]]

    def pause_jobs(request: ActionRequest, spec: ActionSpec) -> list[list[str]]:
        names = spec.settings.get("processes")
        listed = names if isinstance(names, list) else []
        return [[settings.pm2_bin, "stop", str(name)] for name in listed]

    def nginx_reload(request: ActionRequest, spec: ActionSpec) -> list[list[str]]:
        return [list(nginx_argv(settings, "-t")), reload(settings)]

    def rate_limit(request: ActionRequest, spec: ActionSpec) -> list[list[str]]:
        return [list(nginx_argv(settings, "-T")), reload(settings)]

    def clear_temp(request: ActionRequest, spec: ActionSpec) -> list[list[str]]:
        return []  # no command: files are deleted in-process

    return {
        "pm2_restart": pm2_restart,
        "pause_jobs": pause_jobs,
        "nginx_reload": nginx_reload,
        "rate_limit": rate_limit,
        "clear_temp": clear_temp,
    }


def reload(settings: Settings) -> list[str]:
    return list(nginx_argv(settings, "-s", "reload"))
